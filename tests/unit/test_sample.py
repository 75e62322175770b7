"""The sample generator: files, schema, padding, determinism, reuse, a real signal, and the
item views (worlds): a given embedding that is the PCA of the content vectors, a view-quality
knob, co-watching that shows what the content misses, topic impressions.

The structure tests use the session-wide ``tiny_sample`` fixture (conftest.py: preset tiny,
seed 7); the determinism and reuse tests generate their own copies.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from fuxictr_mmctr.data.sample import (DATASET_DIR, MANIFEST_NAME, PRESETS, WORLDS, ItemView,
                                       SampleExistsError, SampleInfo, SamplePreset, make_sample)
from fuxictr_mmctr.data.sample_world import build_items

TINY = PRESETS["tiny"]
SEED = 7  # the seed of conftest's tiny_sample
PARQUET_FILES = [f"{DATASET_DIR}/{name}.parquet" for name in ("train", "valid", "test",
                                                              "item_info")] + [
    "item_feature.parquet", "item_emb.parquet", "item_seq.parquet", "_truth/test_labels.parquet"]


# --------------------------------------------------------------------------- helpers

def read(root: Path, rel: str) -> pa.Table:
    return pq.read_table(root / rel)


def list_matrix(table: pa.Table, name: str) -> np.ndarray:
    """A list column as a ``(N, W)`` array; fails if the lists are ragged."""
    col = table.column(name).combine_chunks()
    lengths = np.diff(col.offsets.to_numpy())
    assert len(set(lengths.tolist())) == 1, f"{name}: ragged lists {set(lengths.tolist())}"
    return col.flatten().to_numpy().reshape(len(col), int(lengths[0]))


# --------------------------------------------------------------------------- files and schema

def test_every_file_exists(tiny_sample):
    for rel in PARQUET_FILES + [MANIFEST_NAME]:
        assert (tiny_sample / rel).is_file(), rel
    assert len(list((tiny_sample / "item_images").glob("*.jpg"))) == TINY.n_items
    assert not list(tiny_sample.parent.glob(f".{tiny_sample.name}.staging-*"))
    manifest = json.loads((tiny_sample / MANIFEST_NAME).read_text())
    assert manifest["preset"] == "tiny" and manifest["seed"] == SEED and manifest["images"]


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_split_schema(tiny_sample, split):
    table = read(tiny_sample, f"{DATASET_DIR}/{split}.parquet")
    names = ["user_id", "item_seq", "likes_level", "views_level", "item_id"]
    if split != "test":
        names.append("label")
    assert table.column_names == names
    for name in names:
        want = pa.list_(pa.int64()) if name == "item_seq" else pa.int64()
        assert table.schema.field(name).type.equals(want), name
    assert table.num_rows == getattr(TINY, f"n_{split}")
    seq = list_matrix(table, "item_seq")
    assert seq.shape[1] == TINY.seq_len == 100
    filled = seq != 0
    # Left padding: once an item appears, every later position holds one.
    assert not (filled[:, :-1] & ~filled[:, 1:]).any()
    assert filled.sum(axis=1).min() >= 3 and filled[:, -1].all()
    assert seq.min() >= 0 and seq.max() <= TINY.n_items
    items = table.column("item_id").to_numpy()
    assert items.min() >= 1 and items.max() <= TINY.n_items
    for name in ("likes_level", "views_level"):
        levels = table.column(name).to_numpy()
        assert levels.min() >= 1 and levels.max() <= 10
    users = table.column("user_id").to_numpy()
    assert users.min() >= 1 and users.max() <= TINY.n_users
    if split != "test":
        labels = table.column("label").to_numpy()
        assert set(np.unique(labels).tolist()) <= {0, 1}
        assert 0.15 <= labels.mean() <= 0.35


def test_history_is_fixed_per_user_and_lengths_vary(tiny_sample):
    train = read(tiny_sample, f"{DATASET_DIR}/train.parquet")
    valid = read(tiny_sample, f"{DATASET_DIR}/valid.parquet")
    seq = np.concatenate([list_matrix(train, "item_seq"), list_matrix(valid, "item_seq")])
    users = np.concatenate([train.column("user_id").to_numpy(),
                            valid.column("user_id").to_numpy()])
    first = {}
    for user, row in zip(users, seq):
        first.setdefault(int(user), row)
        assert np.array_equal(first[int(user)], row)
    lengths = (seq != 0).sum(axis=1)
    assert 15 <= np.median(lengths) <= 40 and lengths.max() > 60


def test_item_info(tiny_sample):
    table = read(tiny_sample, f"{DATASET_DIR}/item_info.parquet")
    assert table.column_names == ["item_id", "item_tags", "item_emb_d128"]
    assert table.schema.field("item_id").type == pa.int64()
    assert table.schema.field("item_tags").type.equals(pa.list_(pa.int64()))
    assert table.schema.field("item_emb_d128").type.equals(pa.list_(pa.float32()))
    assert np.array_equal(table.column("item_id").to_numpy(), np.arange(TINY.n_items + 1))
    tags = list_matrix(table, "item_tags")
    emb = list_matrix(table, "item_emb_d128")
    assert tags.shape == (TINY.n_items + 1, 5) and emb.shape == (TINY.n_items + 1, 128)
    assert not tags[0].any() and not emb[0].any()
    filled = tags[1:] != 0
    assert not (filled[:, :-1] & ~filled[:, 1:]).any() and filled[:, -1].all()
    assert tags.max() <= TINY.n_tags - 1
    assert len(np.unique(tags[1:][filled])) > 20
    norms = np.linalg.norm(emb[1:], axis=1)
    assert np.isfinite(emb).all() and norms.std() > 0.01 and abs(norms.mean() - 1) > 0.05


def test_item_feature(tiny_sample):
    table = read(tiny_sample, "item_feature.parquet")
    want = {"item_id": pa.int64(), "item_title": pa.string(), "item_tags": pa.string(),
            "likes_level": pa.int64(), "views_level": pa.int64(),
            "txt_emb_BERT": pa.list_(pa.float32()), "img_emb_CLIPRN50": pa.list_(pa.float32())}
    assert table.column_names == list(want)
    for name, typ in want.items():
        assert table.schema.field(name).type.equals(typ), name
    assert np.array_equal(table.column("item_id").to_numpy(), np.arange(1, TINY.n_items + 1))
    assert list_matrix(table, "txt_emb_BERT").shape == (TINY.n_items, 768)
    assert list_matrix(table, "img_emb_CLIPRN50").shape == (TINY.n_items, 1024)
    titles = table.column("item_title").to_pylist()
    assert sum(t == "" for t in titles) < 0.05 * len(titles)
    assert np.mean([len(t.split()) for t in titles if t]) >= 3
    # The tag words name the same tag ids as item_info.
    info_tags = list_matrix(read(tiny_sample, f"{DATASET_DIR}/item_info.parquet"), "item_tags")
    for item_id, text in zip(range(1, 11), table.column("item_tags").to_pylist()[:10]):
        assert text == ",".join(f"tag_{t}" for t in info_tags[item_id] if t)


def test_item_emb(tiny_sample):
    table = read(tiny_sample, "item_emb.parquet")
    names = ["item_emb_d128_v1", "item_emb_d128_v2", "item_emb_d128_v3", "item_emb_d128_e4"]
    assert table.column_names == ["item_id"] + names
    assert np.array_equal(table.column("item_id").to_numpy(), np.arange(TINY.n_items + 1))
    for name in names:
        assert table.schema.field(name).type.equals(pa.list_(pa.float32()))
        emb = list_matrix(table, name)
        assert emb.shape == (TINY.n_items + 1, 128) and not emb[0].any()


def test_item_seq(tiny_sample):
    table = read(tiny_sample, "item_seq.parquet")
    assert table.column_names == ["user_id", "item_seq"]
    assert table.schema.field("user_id").type == pa.int64()
    assert table.schema.field("item_seq").type.equals(pa.list_(pa.int64()))
    assert table.num_rows == TINY.n_seq > TINY.n_users
    seq = list_matrix(table, "item_seq")
    filled = seq != 0
    assert seq.shape[1] == 100 and not (filled[:, :-1] & ~filled[:, 1:]).any()
    lengths = filled.sum(axis=1)
    assert lengths.min() >= 3 and 4 <= np.median(lengths) <= 9 and lengths.max() <= 100
    assert seq.max() <= TINY.n_items


def test_hidden_test_labels(tiny_sample):
    table = read(tiny_sample, "_truth/test_labels.parquet")
    assert table.column_names == ["label"] and table.schema.field("label").type == pa.int64()
    labels = table.column("label").to_numpy()
    assert len(labels) == TINY.n_test and 0.15 <= labels.mean() <= 0.35


def test_images(tiny_sample):
    from PIL import Image

    folder = tiny_sample / "item_images"
    names = {p.name for p in folder.iterdir()}
    assert names == {f"{i}.jpg" for i in range(1, TINY.n_items + 1)}
    for item_id in (1, 2, TINY.n_items):
        with Image.open(folder / f"{item_id}.jpg") as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.size == (TINY.image_size, TINY.image_size)


def test_the_schema_reader_accepts_the_sample(tiny_sample):
    from fuxictr_mmctr.data.schema import validate_data_dir

    counts = validate_data_dir(tiny_sample / DATASET_DIR, seq_len=100)
    assert counts == {"item_info": TINY.n_items, "train": TINY.n_train,
                      "valid": TINY.n_valid, "test": TINY.n_test}


# --------------------------------------------------------------------------- determinism, reuse

def test_same_seed_same_bytes_other_seed_other_data(tiny_sample, tmp_path):
    again = make_sample(tmp_path / "again", preset="tiny", seed=SEED, images=False)
    for rel in PARQUET_FILES:
        assert (again.out_dir / rel).read_bytes() == (tiny_sample / rel).read_bytes(), rel
    other = make_sample(tmp_path / "other", preset="tiny", seed=SEED + 1, images=False)
    for rel in (f"{DATASET_DIR}/train.parquet", f"{DATASET_DIR}/item_info.parquet"):
        assert not read(other.out_dir, rel).equals(read(tiny_sample, rel)), rel
    assert not (other.out_dir / "item_images").exists()


def test_reuse_mismatch_and_force(tmp_path):
    out = tmp_path / "s"
    first = make_sample(out, preset="tiny", seed=1, images=False)
    assert isinstance(first, SampleInfo) and first.created
    assert first.counts["train"] == TINY.n_train and first.images_dir is None
    stamp = (out / DATASET_DIR / "train.parquet").stat().st_mtime_ns
    again = make_sample(out, preset="tiny", seed=1, images=False)
    assert not again.created and again.paths == first.paths
    assert (out / DATASET_DIR / "train.parquet").stat().st_mtime_ns == stamp
    # made when the preset had other sizes (a preset's sizes changed since): made again
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["counts"]["test"] = TINY.n_test - 1
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    remade = make_sample(out, preset="tiny", seed=1, images=False)
    assert remade.created and remade.counts["test"] == TINY.n_test
    with pytest.raises(SampleExistsError, match="seed=1"):
        make_sample(out, preset="tiny", seed=2, images=False)
    with pytest.raises(SampleExistsError, match="without images"):
        make_sample(out, preset="tiny", seed=1, images=True)
    forced = make_sample(out, preset="tiny", seed=2, images=False, force=True)
    assert forced.created and forced.seed == 2
    assert json.loads((out / MANIFEST_NAME).read_text())["seed"] == 2
    # A data directory that make_sample did not write is never overwritten silently.
    (out / MANIFEST_NAME).unlink()
    with pytest.raises(SampleExistsError, match="no _SUCCESS"):
        make_sample(out, preset="tiny", seed=2, images=False)
    assert not list(tmp_path.glob(".s.staging-*"))


def test_bad_preset_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown preset"):
        make_sample(tmp_path / "x", preset="huge")
    with pytest.raises(ValueError):
        SamplePreset(n_items=50, n_users=10, n_train=10, n_valid=10, n_test=10, n_seq=10,
                     n_tags=20, n_clusters=8, image_size=32)
    from fuxictr_mmctr.cli import main

    out = tmp_path / "cli"
    assert main(["make-sample", "--out", str(out), "--preset", "tiny", "--seed", "3",
                 "--no-images"]) == 0
    assert "Sample written" in capsys.readouterr().out
    assert main(["make-sample", "--out", str(out), "--preset", "tiny", "--seed", "4",
                 "--no-images"]) == 2


# --------------------------------------------------------------------------- signal

def _history_features(root: Path, split: str, emb: np.ndarray, shuffle_rng=None):
    table = read(root, f"{DATASET_DIR}/{split}.parquet")
    seq = list_matrix(table, "item_seq")
    if shuffle_rng is not None:  # control: every row gets another row's history
        seq = seq[shuffle_rng.permutation(len(seq))]
    items = table.column("item_id").to_numpy()
    labels = table.column("label").to_numpy()
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
    hist = unit[seq].sum(axis=1)  # padding rows of unit are 0
    hist /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-8)
    return items, labels, np.einsum("nd,nd->n", hist, unit[items])


def _item_ctr(items: np.ndarray, labels: np.ndarray, n_items: int, prior: float = 10.0):
    clicks = np.bincount(items, weights=labels, minlength=n_items + 1)
    shows = np.bincount(items, minlength=n_items + 1)
    ctr = (clicks + prior * labels.mean()) / (shows + prior)
    return np.log(ctr / (1 - ctr))


@pytest.mark.parametrize("shuffle", [False, True], ids=["real-history", "shuffled-history"])
def test_history_carries_signal_beyond_item_popularity(tiny_sample, shuffle):
    """A logistic model on history-target similarity plus per-item CTR clearly beats the
    per-item CTR alone; with the histories shuffled across rows the gain disappears."""
    emb = list_matrix(read(tiny_sample, f"{DATASET_DIR}/item_info.parquet"), "item_emb_d128")
    rng = np.random.default_rng(0) if shuffle else None
    tr_items, tr_y, tr_sim = _history_features(tiny_sample, "train", emb, rng)
    va_items, va_y, va_sim = _history_features(tiny_sample, "valid", emb, rng)
    item_logit = _item_ctr(tr_items, tr_y, TINY.n_items)
    item_only = roc_auc_score(va_y, item_logit[va_items])
    model = LogisticRegression(C=1000.0, solver="newton-cholesky").fit(np.c_[tr_sim, item_logit[tr_items]], tr_y)
    with_history = roc_auc_score(va_y, model.decision_function(np.c_[va_sim,
                                                                      item_logit[va_items]]))
    if shuffle:
        # (The similarity alone keeps a little signal: any history leans to popular clusters.)
        assert with_history < item_only + 0.02
    else:
        assert item_only > 0.6  # popularity and quality are part of the signal
        assert with_history > item_only + 0.05
        assert roc_auc_score(va_y, va_sim) > 0.7


def test_item_side_reveals_the_category(tiny_sample):
    """Items sharing a tag are closer in image colour and in text/image vectors than random
    pairs: the modalities carry the latent category."""
    from PIL import Image

    tags = list_matrix(read(tiny_sample, f"{DATASET_DIR}/item_info.parquet"), "item_tags")
    feature = read(tiny_sample, "item_feature.parquet")
    colour = np.stack([np.asarray(Image.open(tiny_sample / "item_images" / f"{i}.jpg"),
                                  dtype=np.float64).mean(axis=(0, 1))
                       for i in range(1, TINY.n_items + 1)])
    views = {"image colour": colour,
             "txt_emb_BERT": list_matrix(feature, "txt_emb_BERT"),
             "img_emb_CLIPRN50": list_matrix(feature, "img_emb_CLIPRN50")}
    # Pairs of items sharing their last (never padding) tag, and random pairs.
    last = tags[1:, -1]
    rng = np.random.default_rng(0)
    pairs = []
    for tag in np.unique(last):
        members = np.flatnonzero(last == tag)
        a, b = np.triu_indices(len(members), k=1)
        pairs.append(np.c_[members[a], members[b]])
    same = np.concatenate(pairs)
    assert len(same) > 100
    same = same[rng.permutation(len(same))[:3000]]
    rand = rng.integers(0, TINY.n_items, size=(3000, 2))
    for name, x in views.items():
        x = x - x.mean(axis=0)
        d_same = np.linalg.norm(x[same[:, 0]] - x[same[:, 1]], axis=1).mean()
        d_rand = np.linalg.norm(x[rand[:, 0]] - x[rand[:, 1]], axis=1).mean()
        assert d_same < 0.8 * d_rand, name


# --------------------------------------------------------------------------- item views (worlds)

@pytest.fixture(scope="module")
def world_samples(tmp_path_factory):
    """The tiny preset (seed 7) in the good and the partial world, without images."""
    out = {}
    for name in ("good", "partial"):
        root = tmp_path_factory.mktemp(name)
        make_sample(root, preset="tiny", seed=SEED, world=name, images=False)
        out[name] = root
    return out


def test_world_sample_schema_manifest_and_determinism(world_samples, tiny_sample, tmp_path):
    from fuxictr_mmctr.data.schema import validate_data_dir

    root = world_samples["partial"]
    assert validate_data_dir(root / DATASET_DIR, seq_len=100) == {
        "item_info": TINY.n_items, "train": TINY.n_train, "valid": TINY.n_valid,
        "test": TINY.n_test}
    for rel in PARQUET_FILES:
        assert read(root, rel).schema.equals(read(tiny_sample, rel).schema), rel
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["world"] == {"name": "partial", **WORLDS["partial"].to_dict()}
    assert 0.75 < manifest["oracle"]["valid"]["AUC"] < 0.97
    exposure = manifest["item_exposure"]
    counts = np.bincount(read(root, f"{DATASET_DIR}/train.parquet").column("item_id").to_numpy(),
                         minlength=TINY.n_items + 1)[1:]
    assert exposure["train_rows_per_item_median"] == np.median(counts)
    assert exposure["items_in_at_most_5_train_rows"] == pytest.approx((counts <= 5).mean(),
                                                                      abs=1e-4)
    # The classic manifest has no world; the same seed gives the same bytes.
    assert "world" not in json.loads((tiny_sample / MANIFEST_NAME).read_text())
    again = make_sample(tmp_path / "again", preset="tiny", seed=SEED, world="partial",
                        images=False)
    for rel in PARQUET_FILES:
        assert (again.out_dir / rel).read_bytes() == (root / rel).read_bytes(), rel
    assert again.world["name"] == "partial" and again.item_exposure == exposure


def test_given_embedding_is_the_pca_of_the_text_and_image_vectors(world_samples):
    """As on the real data: item_emb_d128's columns are the principal components of the text
    and image vectors (each block scaled to unit mean square), largest first."""
    root = world_samples["good"]
    feature = read(root, "item_feature.parquet")
    txt = list_matrix(feature, "txt_emb_BERT").astype(np.float64)
    img = list_matrix(feature, "img_emb_CLIPRN50").astype(np.float64)
    x = np.c_[txt / np.sqrt(np.mean(txt ** 2)), img / np.sqrt(np.mean(img ** 2))]
    x -= x.mean(axis=0)
    top = np.linalg.eigvalsh(x @ x.T / len(x))[::-1][:128]
    emb = list_matrix(read(root, f"{DATASET_DIR}/item_info.parquet"), "item_emb_d128")[1:]
    cov = np.cov(emb.astype(np.float64), rowvar=False, bias=True)
    np.testing.assert_allclose(np.diag(cov), top, rtol=1e-3)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 1e-3 * top[0]


def _latent(name: str) -> np.ndarray:
    """The true click-driving item vectors of the tiny sample (seed 7) of world ``name``."""
    return build_items(TINY, SEED, WORLDS[name]).item_latent[1:].astype(np.float64)


def test_the_view_quality_knob_covers_both_ends(world_samples):
    """How much of the click-driving item vector a linear map of the given embedding recovers
    on held-out items: most of it in the good world, a minority in the partial one."""
    r2 = {}
    for name, root in world_samples.items():
        emb = list_matrix(read(root, f"{DATASET_DIR}/item_info.parquet"), "item_emb_d128")
        x = np.c_[emb[1:, :32], np.ones(TINY.n_items)]
        v = _latent(name)
        half = TINY.n_items // 2
        coef, *_ = np.linalg.lstsq(x[:half], v[:half], rcond=None)
        res = v[half:] - x[half:] @ coef
        r2[name] = 1 - (res ** 2).sum() / ((v[half:] - v[half:].mean(axis=0)) ** 2).sum()
    assert r2["good"] > 0.65 and r2["partial"] < 0.45, r2


def test_co_watching_shows_the_audience_the_content_misses(world_samples):
    """Across categories, items of the same audience are watched together in item_seq far more
    often than items of different audiences, while the given embedding cannot tell them
    apart."""
    root = world_samples["partial"]
    world = build_items(TINY, SEED, WORLDS["partial"])
    audience = world.item_cluster[1:] % WORLDS["partial"].communities
    category = world.item_category[1:]
    seq = list_matrix(read(root, "item_seq.parquet"), "item_seq")
    together = np.zeros((TINY.n_items + 1, TINY.n_items + 1))
    for row in seq:
        items = np.unique(row[row > 0])
        together[np.ix_(items, items)] += 1
    together = together[1:, 1:]
    other_category = category[:, None] != category[None, :]
    same = other_category & (audience[:, None] == audience[None, :])
    other = other_category & (audience[:, None] != audience[None, :])
    assert together[same].mean() > 4 * together[other].mean()
    emb = list_matrix(read(root, f"{DATASET_DIR}/item_info.parquet"), "item_emb_d128")[1:]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = unit @ unit.T
    assert abs(cos[same].mean() - cos[other].mean()) < 0.02


def test_topic_impressions_show_the_user_s_categories_in_other_audiences():
    """A share ``topic_impressions`` of the targets comes from one of the user's categories,
    whatever its audience: targets in a category of the user's but outside the user's niches
    are few at 0 (popularity draws that land there by chance) and about half at 0.5."""
    from dataclasses import replace

    from fuxictr_mmctr.data.sample_static import StaticVariant

    shares = {}
    for knob in (0.0, 0.5):
        view = replace(WORLDS["partial"], topic_impressions=knob)
        variant = StaticVariant.build(TINY, SEED, view)
        rows = variant.draw(np.random.default_rng(0), 4000)
        world, users = variant.world, variant.users
        niches = users.clusters[rows.users]  # (n, 3) the user's niches (unused slots: -1)
        used = np.diff(np.c_[np.zeros(len(niches)), users.cumw[rows.users]], axis=1) > 0
        niches = np.where(used, niches, -1)
        target = world.item_cluster[rows.items]
        in_taste = (niches == target[:, None]).any(axis=1)
        same_category = (used & (world.cluster_category[niches]
                                 == world.item_category[rows.items][:, None])).any(axis=1)
        shares[knob] = float((same_category & ~in_taste).mean())
    # expected at 0.5: 0.5 * (about 7/8) + 0.5 * the share at 0
    assert shares[0.0] < 0.2 and 0.3 < shares[0.5] - 0.5 * shares[0.0] < 0.5, shares


def test_world_knobs_on_the_command_line(tmp_path, capsys):
    from fuxictr_mmctr.cli import main

    out = tmp_path / "w"
    assert main(["make-sample", "--out", str(out), "--preset", "tiny", "--seed", "3",
                 "--world", "good", "--content-noise", "0.5", "--no-images",
                 "--no-item-vectors"]) == 0
    assert "good world" not in capsys.readouterr().out  # overridden: a custom view
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["world"] == {**WORLDS["good"].to_dict(), "content_noise": 0.5,
                                 "name": "custom"}
    # the same folder with another world needs --force; knobs need a view
    assert main(["make-sample", "--out", str(out), "--preset", "tiny", "--seed", "3",
                 "--world", "good", "--no-images", "--no-item-vectors"]) == 2
    assert "world='custom'" in capsys.readouterr().err
    assert main(["make-sample", "--out", str(tmp_path / "c"), "--preset", "tiny",
                 "--world", "classic", "--content-share", "0.5", "--no-images"]) == 2
    with pytest.raises(ValueError, match="content_share"):
        ItemView(content_share=1.5)
    with pytest.raises(ValueError, match="unknown world"):
        make_sample(tmp_path / "x", preset="tiny", world="noisy")
