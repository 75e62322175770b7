"""Shared fixtures; the helpers they use are in helpers.py. Tests under e2e/ are marked slow."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import (ITEM_TYPES, ROOT, feature_map_for, make_item_info_columns, make_split_columns,
                     point_config_at, write_table)


@pytest.fixture(autouse=True)
def _drop_fuxictr_log_handlers():
    """FuxiCTR's ``set_logger`` (run by in-process training) replaces the root logger's handlers
    with a file and a stream handler bound to this test's captured streams; drop them after the
    test so later tests do not log into closed files."""
    import logging

    from _pytest.logging import LogCaptureHandler

    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before and not isinstance(handler, LogCaptureHandler):
            root.removeHandler(handler)
            handler.close()


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ trains a model or spawns a process: mark it ``slow``."""
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if e2e in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def handmade_batch(handmade):
    """The first batch (16 rows, history 6) of :func:`handmade`'s train split."""
    from fuxictr_mmctr.data.loader import MMCTRDataLoader

    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=16, max_len=6)
    return next(iter(loader))


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


@pytest.fixture
def handmade_config(repo_config, handmade, monkeypatch):
    """config/ pointed at :func:`handmade`, run from its folder (checkpoints land in tmp)."""
    monkeypatch.chdir(handmade.parent)
    return point_config_at(repo_config, handmade.parent)


@pytest.fixture(scope="module")
def smoke_config(tiny_sample, tmp_path_factory):
    """config/ copied once per module, its sample datasets pointed at the tiny sample."""
    dst = tmp_path_factory.mktemp("smoke") / "config"
    shutil.copytree(ROOT / "config", dst)
    return point_config_at(dst, tiny_sample)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_TEXTS = ["red cat video", "blue dog clip", "funny cooking show", "tags: tag_1 tag_2"] * 5


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny random CLIP saved with save_pretrained, loaded back with from_pretrained."""
    folder = tmp_path_factory.mktemp("clip")
    from fuxictr_mmctr.embeddings.tiny import build_tiny_clip

    build_tiny_clip(folder, TINY_TEXTS, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """One tiny random model of each family the student loads, saved with save_pretrained:
    ``siglip``, ``bert``, ``st`` (a sentence-transformers folder, CLS pooling), ``vit``,
    ``vlm`` (LLaVA-style: CLIP vision + Qwen2 text). Name -> folder."""
    from fuxictr_mmctr.embeddings import tiny

    root = tmp_path_factory.mktemp("tiny_models")
    return {"siglip": tiny.build_tiny_siglip(root / "siglip", TINY_TEXTS),
            "bert": tiny.build_tiny_bert(root / "bert", TINY_TEXTS),
            "st": tiny.build_tiny_bert(root / "st", TINY_TEXTS, sentence_transformers=True,
                                       pooling="cls"),
            "vit": tiny.build_tiny_vit(root / "vit"),
            "vlm": tiny.build_tiny_vlm(root / "vlm", TINY_TEXTS)}


@pytest.fixture(scope="module")
def image_sample(tmp_path_factory):
    """The tiny MicroLens-shaped sample (400 items with images), made once per module."""
    from fuxictr_mmctr.data.sample import make_sample

    root = tmp_path_factory.mktemp("sample")
    make_sample(root, preset="tiny", seed=2025, images=True, item_vectors=False)
    return root


@pytest.fixture
def sample_copy(image_sample, tmp_path):
    """A private copy of :func:`image_sample` a test may change."""
    dst = tmp_path / "data"
    shutil.copytree(image_sample, dst)
    return dst


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster started once per test session (``ray start --head --block``); yields
    its address. Stopped by terminating that one process, which stops what it started."""
    pytest.importorskip("ray", reason="pip install 'fuxictr_mmctr[ray]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    log = Path(temp) / "ray-start.log"
    ray_bin = Path(sys.executable).with_name("ray")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp,
             "--object-store-memory", str(100 * 1024 * 1024)],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    try:
        deadline = time.monotonic() + 120
        while "block forever" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)
