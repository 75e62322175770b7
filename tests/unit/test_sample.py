"""The sample generator: files, schema, padding, determinism, reuse, and a real signal.

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

from fuxictr_mmctr.data.sample import (DATASET_DIR, MANIFEST_NAME, PRESETS, SampleExistsError,
                                  SampleInfo, SamplePreset, make_sample)

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
