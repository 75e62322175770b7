"""Item tables from parts (``mmctr item-side``, ``mmctr semantic-ids``): the codes written as
item-side columns, the report's figures, same bytes twice, validation, joins, the candidate
item sides, and the codes reaching every model as item-side categorical features."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from helpers import ITEM_TYPES, TINY_MODELS, build_model, make_item_info_columns, write_table

from fuxictr_mmctr import cli
from fuxictr_mmctr.data import loader
from fuxictr_mmctr.data.item_side import (CANDIDATES, ItemSideSpec, VectorSource,
                                          build_candidates, build_item_side, code_columns)
from fuxictr_mmctr.data.semantic_ids import QuantizerConfig
from fuxictr_mmctr.errors import ConfigError, DataValidationError
from fuxictr_mmctr.models import MODELS
from fuxictr_mmctr.train import experiment

Q = QuantizerConfig(levels=3, codebook=4, seed=0)
SID = code_columns(3)


@pytest.fixture(autouse=True)
def _fresh_item_cache():
    loader._ITEM_CACHE.clear()
    yield
    loader._ITEM_CACHE.clear()


def codes_spec(handmade, out="item_info_codes.parquet", **kw):
    return ItemSideSpec(base=handmade / "item_info.parquet", out=handmade / out,
                        codes_of="item_emb_d128", quantizer=kw.pop("quantizer", Q), **kw)


def vectors_of(path, column="item_emb_d128"):
    table = pq.read_table(path)
    return np.asarray(table.column(column).to_pylist(), dtype=np.float64)


def test_codes_are_written_as_item_columns_and_the_report_is_right(handmade):
    result = build_item_side(codes_spec(handmade))
    base = pq.read_table(handmade / "item_info.parquet")
    table = pq.read_table(result.out)
    assert table.column_names == base.column_names + SID
    for name in base.column_names:  # the base's columns and rows as they were
        assert table.column(name).equals(base.column(name))
    codes = np.stack([table.column(c).to_numpy() for c in SID], axis=1)
    assert (codes[0] == 0).all() and codes[1:].min() >= 1 and codes[1:].max() <= 4

    # the report's figures, recomputed from the file alone: k-means centroids are the means
    # of their items' residuals
    rep = json.loads(result.report_path.read_text())["semantic_ids"]
    x = vectors_of(handmade / "item_info.parquet")[1:]
    residual, total = x.copy(), ((x - x.mean(0)) ** 2).sum(1).mean()
    for level, stats in enumerate(rep["per_level"]):
        c = codes[1:, level]
        means = {k: residual[c == k].mean(0) for k in np.unique(c)}
        residual -= np.stack([means[k] for k in c])
        assert stats["used_codes"] == len(means)
        assert stats["largest_code_share"] == pytest.approx(np.bincount(c).max() / len(c))
        assert stats["mse"] == pytest.approx((residual ** 2).sum(1).mean(), rel=1e-6)
        assert stats["unexplained"] == pytest.approx(stats["mse"] / total, abs=1e-6)
    full = {tuple(r) for r in codes[1:]}
    shared = sum(n for n in np.unique(codes[1:], axis=0, return_counts=True)[1] if n > 1)
    assert rep["distinct_full_codes"] == len(full) and rep["colliding_items"] == shared
    assert rep["items"] == 12 and rep["column"] == "item_emb_d128" and rep["columns"] == SID


def test_same_inputs_same_bytes_and_an_up_to_date_table_is_left_alone(handmade):
    a = build_item_side(codes_spec(handmade, "a.parquet"))
    b = build_item_side(codes_spec(handmade, "b.parquet"))
    assert a.out.read_bytes() == b.out.read_bytes()
    mtime = a.out.stat().st_mtime_ns
    again = build_item_side(codes_spec(handmade, "a.parquet"))
    assert not again.written and a.out.stat().st_mtime_ns == mtime
    assert build_item_side(codes_spec(handmade, "a.parquet"), force=True).written
    other_seed = build_item_side(codes_spec(handmade, "a.parquet",
                                            quantizer=QuantizerConfig(3, 4, seed=1)))
    assert other_seed.written
    a.out.write_bytes(b.out.read_bytes()[:-10])  # a damaged table is written again
    assert build_item_side(codes_spec(handmade, "a.parquet",
                                      quantizer=QuantizerConfig(3, 4, seed=1))).written


def _broken_item_info(handmade, what):
    cols = make_item_info_columns(12)
    if what == "nan":
        cols["item_emb_d128"][5][7] = float("nan")
    elif what == "ragged":
        cols["item_emb_d128"][3] = cols["item_emb_d128"][3][:100]
    elif what == "order":
        cols["item_id"] = np.array([0, 1, 2, 4, 3, 5, 6, 7, 8, 9, 10, 11, 12])
    write_table(handmade / "item_info.parquet", cols, ITEM_TYPES)


@pytest.mark.parametrize("what, match", [
    ("nan", "item_emb_d128', row 5: NaN"),
    ("ragged", "item_emb_d128', row 3: list length 100"),
    ("order", "item_id', row 3: item_id 4 at row 3"),
])
def test_a_malformed_input_is_refused_naming_file_column_row(handmade, what, match):
    _broken_item_info(handmade, what)
    with pytest.raises(DataValidationError, match=match) as info:
        build_item_side(codes_spec(handmade))
    assert "item_info.parquet" in str(info.value)
    assert not (handmade / "item_info_codes.parquet").exists()


@pytest.mark.parametrize("column", ["item_emb_v9", "item_tags"])
def test_quantising_a_column_that_is_no_vector_is_refused(handmade, column):
    spec = ItemSideSpec(base=handmade / "item_info.parquet", out=handmade / "o.parquet",
                        codes_of=column, quantizer=Q)
    with pytest.raises(DataValidationError, match=f"column '{column}'.*list<float>"):
        build_item_side(spec)


def test_out_is_the_input_only_when_asked(handmade):
    base = handmade / "item_info.parquet"
    with pytest.raises(ConfigError, match="--overwrite-input"):
        build_item_side(ItemSideSpec(base=base, out=base, codes_of="item_emb_d128", quantizer=Q))
    build_item_side(ItemSideSpec(base=base, out=base, codes_of="item_emb_d128", quantizer=Q,
                                 overwrite_input=True))
    assert pq.read_table(base).column_names[-3:] == SID
    with pytest.raises(ConfigError, match="'sid_1' is already in"):  # codes on codes
        build_item_side(codes_spec(handmade))


def test_a_keyed_table_is_joined_by_item_id(handmade):
    rng = np.random.default_rng(0)
    other = rng.normal(size=(12, 16)).astype(np.float32)       # items 1..12, no padding row
    order = rng.permutation(12)
    write_table(handmade / "item_emb.parquet",
                {"item_id": order + 1, "v3": [list(other[i]) for i in order]},
                {"v3": pa.list_(pa.float32())})
    spec = ItemSideSpec(base=handmade / "item_info.parquet", out=handmade / "joined.parquet",
                        add=(VectorSource.parse(f"{handmade}/item_emb.parquet:v3:item_emb_v3"),),
                        codes_of="item_emb_v3", quantizer=Q)
    result = build_item_side(spec)
    got = vectors_of(result.out, "item_emb_v3")
    np.testing.assert_array_equal(got[1:], other)
    assert (got[0] == 0).all()
    assert result.report["semantic_ids"]["column"] == "item_emb_v3"

    short = {"item_id": np.arange(1, 12), "v3": [list(other[i]) for i in range(11)]}
    write_table(handmade / "item_emb.parquet", short, {"v3": pa.list_(pa.float32())})
    with pytest.raises(DataValidationError, match="1 item id.*no embedding, first 12"):
        build_item_side(spec)
    clash = ItemSideSpec(base=handmade / "item_info.parquet", out=handmade / "o.parquet",
                         add=(VectorSource(handmade / "item_info.parquet"),))
    with pytest.raises(ConfigError, match="'item_emb_d128' is already in"):
        build_item_side(clash)


def _task1_table(folder):
    cols = make_item_info_columns(12, seed=5)  # other vectors, same items and tags
    cols["item_tags"] = pq.read_table(folder / "item_info.parquet").column("item_tags").to_pylist()
    write_table(folder / "item_info_task1.parquet", cols, ITEM_TYPES)


def test_candidates_of_a_data_folder(handmade):
    made = build_candidates(handmade, quantizer=Q)
    assert list(made) == ["given", "given_codes"]  # no Task 1 table yet
    with pytest.raises(DataValidationError, match="item_info_task1.parquet.*build-embeddings"):
        build_candidates(handmade, names=["both"], quantizer=Q)
    _task1_table(handmade)
    made = build_candidates(handmade, quantizer=Q)
    assert list(made) == [c for c in CANDIDATES if not c.startswith("content")]
    with pytest.raises(DataValidationError, match="item_info_content.parquet.*--fusion pca"):
        build_candidates(handmade, names=["content_codes"], quantizer=Q)
    content = handmade / "content" / "item_info_content.parquet"
    content.parent.mkdir()
    (handmade / "item_info_task1.parquet").rename(content)   # any item table will do
    _task1_table(handmade)
    made = build_candidates(handmade, quantizer=Q, content=content)
    assert list(made) == list(CANDIDATES)
    assert made["content"] == content
    np.testing.assert_array_equal(vectors_of(made["content_codes"]), vectors_of(content))
    given = vectors_of(handmade / "item_info.parquet")
    task1 = vectors_of(handmade / "item_info_task1.parquet")
    for name, path in made.items():
        assert path.name == CANDIDATES[name].file
        names = pq.read_table(path).column_names
        assert ("item_emb_task1" in names) == CANDIDATES[name].add_task1
        assert (names[-3:] == SID) == name.endswith("codes")
    np.testing.assert_array_equal(vectors_of(made["both"], "item_emb_task1"), task1)
    np.testing.assert_array_equal(vectors_of(made["both"]), given)
    np.testing.assert_array_equal(vectors_of(made["content_task1"]), vectors_of(content))
    np.testing.assert_array_equal(vectors_of(made["content_task1"], "item_emb_task1"), task1)
    np.testing.assert_array_equal(vectors_of(made["task1_codes"]), task1)
    # both_codes and content_task1_codes quantise Task 1's vector: the codes of task1_codes
    codes = {n: pq.read_table(made[n], columns=SID)
             for n in ("task1_codes", "both_codes", "content_task1_codes")}
    assert codes["task1_codes"].equals(codes["both_codes"])
    assert codes["task1_codes"].equals(codes["content_task1_codes"])
    with pytest.raises(ConfigError, match="unknown candidate"):
        build_candidates(handmade, names=["given_code"])


def test_cli_semantic_ids(handmade, capsys):
    src = handmade / "item_info.parquet"
    assert cli.main(["semantic-ids", "--item-info", str(src), "--levels", "2",
                     "--codebook", "3"]) == 0
    out = handmade / "item_info_codes.parquet"
    assert pq.read_table(out).column_names[-2:] == ["sid_1", "sid_2"]
    assert "item_info_codes.parquet: 2 levels x 3 codes of item_emb_d128" in capsys.readouterr().out
    assert cli.main(["semantic-ids", "--item-info", str(src), "--codebook", "50",
                     "--out", str(handmade / "x.parquet")]) == 2
    assert "option --codebook: codebook=50 is more centroids than the 12 items" in \
        capsys.readouterr().err
    assert cli.main(["item-side", "--data-dir", str(handmade.parent), "--base", str(src)]) == 2


# ------------------------------------------------------------------ the codes in the models
def test_sid_columns_are_checked_against_a_declared_vocabulary(handmade):
    build_item_side(codes_spec(handmade))
    path = handmade / "item_info_codes.parquet"
    from fuxictr_mmctr.data.schema import read_item_info

    table = read_item_info(path, columns=SID, vocab_sizes={"sid_1": 5})
    assert table.columns["sid_1"].shape == (13,)
    with pytest.raises(DataValidationError, match="sid_1.*vocabulary of size 3"):
        read_item_info(path, columns=SID, vocab_sizes={"sid_1": 3})
    data = pq.read_table(path)
    bad = data.set_column(data.column_names.index("sid_2"), "sid_2",
                          pa.array([7] + [1] * 12, pa.int32()))
    pq.write_table(bad, path)
    with pytest.raises(DataValidationError, match="sid_2', row 0: padding row 0 must be 0"):
        read_item_info(path, columns=SID)


@pytest.mark.parametrize("name, route", [(n, "column") for n in sorted(MODELS)]
                         + [("DIN", "pretrained")])
def test_every_model_embeds_the_codes_of_history_and_target(name, route, handmade,
                                                              handmade_config, tmp_path):
    build_item_side(codes_spec(handmade))
    suffix = "_pretrained" if route == "pretrained" else ""
    expid = f"{name}_sample_given_codes{suffix}"  # <Model>_sample's settings on the codes side
    path = handmade_config / "model_config" / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    config[expid] = dict(config[f"{name}_sample{suffix}"],
                         dataset_id=f"MicroLens_sample_given_codes{suffix}")
    path.write_text(yaml.safe_dump(config))
    params, feature_map, model = build_model(handmade_config, expid, embedding_dim=4, max_len=6,
                                             model_root=str(tmp_path), **TINY_MODELS.get(name, {}))
    codes = pq.read_table(handmade / "item_info_codes.parquet", columns=SID)
    for c in SID:  # vocabulary read from the table
        assert feature_map.features[c]["vocab_size"] == max(codes.column(c).to_pylist()) + 1
    train_gen, _ = experiment.make_loaders(params, feature_map, "train")
    batch = next(iter(train_gen))
    model.train()
    row_emb, target_emb, history_emb, mask = model.embed_batch(batch)
    # id, tags (and the vector on the column route: on the pretrained route it is item_id's),
    # then the three codes, 4 wide each
    assert model.item_features[-3:] == SID
    assert history_emb.shape[-1] == model.item_info_dim == 4 * len(model.item_features)
    ids = batch[1]["item_id"].view(mask.shape[0], -1).long()     # (B, L+1)
    tables = model.embedding_layer.embedding_layer.embedding_layers
    for c in SID:  # every item's slot of a code holds the embedding of its code
        code = torch.from_numpy(codes.column(c).to_numpy().astype(np.int64))[ids]
        want = tables[c].weight[code]                               # (B, L+1, 4)
        lo = model.item_features.index(c) * 4
        torch.testing.assert_close(history_emb[..., lo:lo + 4], want[:, :-1])
        torch.testing.assert_close(target_emb[..., lo:lo + 4], want[:, -1])
    loss = model.compute_loss(model(batch), model.get_labels(batch))
    loss.backward()
    assert tables["sid_1"].weight.grad.abs().sum() > 0
