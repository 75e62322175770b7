"""Shared fixtures: hand-made MicroLens-shaped files small enough to reason about row by row."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def write_table(path: Path, columns: dict, types: dict | None = None) -> Path:
    """Write ``columns`` (name -> list/array) as parquet with optional explicit arrow types."""
    types = types or {}
    arrays = {k: pa.array(list(v) if isinstance(v, np.ndarray) and v.ndim > 1 else v,
                          type=types.get(k)) for k, v in columns.items()}
    pq.write_table(pa.table(arrays), path)
    return path


def make_split_columns(n_rows: int, n_items: int, seq_len: int, seed: int, label=True) -> dict:
    """Columns of a valid split: left-padded histories, ids in range, 0/1 labels."""
    rng = np.random.default_rng(seed)
    seqs = np.zeros((n_rows, seq_len), dtype=np.int64)
    for r in range(n_rows):
        k = rng.integers(0, seq_len + 1)
        if k:
            seqs[r, seq_len - k:] = rng.integers(1, n_items + 1, size=k)
    cols = {
        "user_id": rng.integers(0, 30, size=n_rows),
        "item_seq": [list(s) for s in seqs],
        "likes_level": rng.integers(1, 11, size=n_rows),
        "views_level": rng.integers(1, 11, size=n_rows),
        "item_id": rng.integers(1, n_items + 1, size=n_rows),
    }
    if label:
        cols["label"] = rng.integers(0, 2, size=n_rows)
    return cols


def make_item_info_columns(n_items: int, emb_dim: int = 128, n_tags: int = 15, seed: int = 0):
    rng = np.random.default_rng(seed)
    tags = rng.integers(1, n_tags, size=(n_items + 1, 5))
    tags[:, :2] = 0  # left padding
    tags[0] = 0
    emb = rng.normal(size=(n_items + 1, emb_dim)).astype(np.float32)
    emb[0] = 0
    return {"item_id": np.arange(n_items + 1), "item_tags": [list(t) for t in tags],
            "item_emb_d128": [list(e) for e in emb]}


ITEM_TYPES = {"item_emb_d128": pa.list_(pa.float32())}


@pytest.fixture
def handmade(tmp_path):
    """A tiny valid MicroLens_1M_x1 folder: 12 items, 40/20/20 rows, history length 6."""
    d = tmp_path / "MicroLens_1M_x1"
    d.mkdir()
    write_table(d / "item_info.parquet", make_item_info_columns(12), ITEM_TYPES)
    write_table(d / "train.parquet", make_split_columns(40, 12, 6, seed=1))
    write_table(d / "valid.parquet", make_split_columns(20, 12, 6, seed=2))
    write_table(d / "test.parquet", make_split_columns(20, 12, 6, seed=3, label=False))
    return d


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory):
    """The generator's tiny preset, made once per test session."""
    from fuxictr_mmctr.data.sample import make_sample

    out = tmp_path_factory.mktemp("sample")
    make_sample(out, preset="tiny", seed=7)
    return out


@pytest.fixture
def repo_config(tmp_path):
    """A copy of config/ whose sample paths point at a tmp data root (set by the test)."""
    dst = tmp_path / "config"
    shutil.copytree(ROOT / "config", dst)
    return dst


def point_config_at(config_dir: Path, data_root: Path) -> Path:
    """Rewrite the sample datasets of a copied config/ to read from ``data_root``."""
    path = Path(config_dir) / "mmctr_config" / "dataset_config.yaml"
    path.write_text(path.read_text().replace("./data/sample/", f"{data_root}/"))
    return Path(config_dir) / "mmctr_config"
