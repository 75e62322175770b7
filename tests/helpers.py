"""Shared test helpers: hand-made MicroLens-shaped files small enough to reason about row by row,
config copies pointed at test data, models built from a config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
# The sweeps' datasets in config/mmctr_config/dataset_config.yaml: the bench preset's samples
# and the item-side worlds' sweep seeds. No expid trains them and their data is not shipped
# (made by bench/models.py and mmctr make-sample).
SWEEP_DATASET_PREFIXES = ("MicroLens_bench_", "MicroLens_world_")
# Two CPU processes on this machine (gloo): the launch every torchrun test uses.
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` in ``cwd`` with the checkout on the
    path; output captured as text."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([*TORCHRUN, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


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


def point_config_at(config_dir: Path, data_root: Path) -> Path:
    """Rewrite the sample datasets of a copied config/ to read from ``data_root``, and read the
    given vector as stored (``normalize_vectors: none``).

    The tests train one or two optimizer steps on samples of a few hundred rows, where only the
    raw scale of the given vector (mean L2 norm ~36) carries signal through the freshly
    initialised projection; the shipped ``mean_norm`` (norm 1) pays off over more steps (the
    demo's 147: valid AUC 0.830 against 0.822 as stored) and is tested on its own
    (``tests/unit/test_vector_norms.py``, and the pipeline's e2e tests train with it)."""
    from fuxictr_mmctr.resources import point_at_sample

    out = point_at_sample(Path(config_dir) / "mmctr_config", data_root)
    datasets = out / "dataset_config.yaml"
    datasets.write_text(datasets.read_text().replace("normalize_vectors: mean_norm",
                                                     "normalize_vectors: none"))
    return out


def set_sample_feature(config_dir: Path, column: str, **keys) -> None:
    """Set ``keys`` on feature ``column`` of ``MicroLens_sample`` in a copied config's
    ``dataset_config.yaml`` (``config_dir`` is its ``mmctr_config``)."""
    path = Path(config_dir) / "dataset_config.yaml"
    data = yaml.safe_load(path.read_text())
    for col in data["MicroLens_sample"]["feature_cols"]:
        if col["name"] == column:
            col.update(keys)
    path.write_text(yaml.safe_dump(data))


FAST = {"epochs": 2, "batch_size": 512, "verbose": 0}


def fast_config(repo_config, data_root, expids=("DIN_sample",), **overrides):
    """The shipped config pointed at ``data_root``, with a short training budget."""
    config_dir = point_config_at(repo_config, data_root)
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    for expid in expids:
        config[expid].update(FAST, **overrides)
    path.write_text(yaml.safe_dump(config))
    return config_dir


def build_model(config_dir, expid, **overrides):
    """``(params, feature_map, model)`` of ``expid``, built as run_expid.py would (no training)."""
    from fuxictr_mmctr.train import experiment

    params = experiment.load_params(config_dir, expid)
    params.update(verbose=0, batch_size=16, epochs=1, **overrides)
    feature_map = experiment.build_feature_map(params)
    return params, feature_map, experiment.build_model(feature_map, params)


def pretrained_layer(model):
    """FuxiCTR's ``PretrainedEmbedding`` of ``item_id`` inside a model."""
    return model.embedding_layer.embedding_layer.embedding_layers["item_id"]


def linear_views(n=300, p=24, d=8, seed=0):
    from fuxictr_mmctr.embeddings.vectors import l2_normalize

    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n + 1, p)).astype(np.float32)
    t = l2_normalize(s @ rng.normal(size=(p, d)).astype(np.float32))
    s[0] = t[0] = 0
    mask = np.ones(n + 1, bool)
    mask[0] = False
    return s, t, mask


def write_images(folder: Path, n: int, seed: int = 0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


def item_texts(n):
    return [""] + [f"item {i} title" for i in range(1, n + 1)]


def build_embeddings_cli(*argv):
    """``mmctr build-embeddings ARGV`` through the one error handler of the command line."""
    from fuxictr_mmctr import cli

    return cli.main(["build-embeddings", *[str(a) for a in argv]])


def feature_map_for(item_dim=128, user_as_feature=False):
    from fuxictr.features import FeatureMap

    fm = FeatureMap("handmade", "/nonexistent")
    fm.labels = ["label"]
    fm.features = {
        "user_id": ({"type": "categorical", "source": "user", "vocab_size": 30}
                    if user_as_feature else {"type": "meta"}),
        "item_seq": {"type": "meta"},
        "likes_level": {"type": "categorical", "source": "", "vocab_size": 11},
        "views_level": {"type": "categorical", "source": "", "vocab_size": 11},
        "item_id": {"type": "categorical", "source": "item", "vocab_size": 13},
        "item_tags": {"type": "sequence", "source": "item", "vocab_size": 15, "max_len": 5,
                      "feature_encoder": "layers.MaskedAveragePooling()"},
        "item_emb_d128": {"type": "embedding", "source": "item", "embedding_dim": item_dim},
    }
    return fm


# Each model at a size that builds and runs in milliseconds (the rest: its signature's defaults).
TINY_MODELS = {
    "DIN": dict(dnn_hidden_units=[16, 8], attention_hidden_units=[8]),
    "DCNv2": dict(parallel_dnn_hidden_units=[16, 8], stacked_dnn_hidden_units=[16, 8],
                  num_cross_layers=2),
    "TransformerDCN": dict(dcn_hidden_units=[16, 8], mlp_hidden_units=[8], dcn_cross_layers=2,
                           transformer_layers=1, dim_feedforward=16, first_k_cols=2),
    "DIN_DCN": dict(parallel_dnn_hidden_units=[16, 8], attention_hidden_units=[8],
                    num_cross_layers=2),
    "FiBiNET": dict(dnn_hidden_units=[16, 8]),
    "QIN": dict(num_layers=2, num_row=2, attention_dim=16),  # QIN_sample: 16 heads of 1
}


def padded_history(batch: int, seq_len: int, dim: int, seed: int = 0):
    """Random ``(target (B, D), history (B, L, D), mask (B, L))``: row 0 left-padded by 3,
    row 1 without any history item (its history values are left random: padding must not
    count)."""
    import torch

    torch.manual_seed(seed)
    mask = torch.ones(batch, seq_len)
    mask[0, :3] = 0
    mask[1, :] = 0
    return torch.randn(batch, dim), torch.randn(batch, seq_len, dim), mask


def tiny_model(name, model_root, seed=None, feature_map=None, **overrides):
    """Model ``name`` built on :func:`feature_map_for` (or ``feature_map``) at the size of
    :data:`TINY_MODELS`, embedding 4, learning rate 1e-2; ``overrides`` win. ``seed`` seeds
    torch first (two builds with one seed start from the same weights)."""
    import torch

    from fuxictr_mmctr.models import get_model

    if seed is not None:
        torch.manual_seed(seed)
    params = dict(model_root=str(model_root), metrics=["AUC", "logloss"], verbose=0,
                  optimizer="adam", loss="binary_crossentropy", embedding_dim=4,
                  learning_rate=1.0e-2, **TINY_MODELS.get(name, {}))
    params.update(overrides)
    return get_model(name)(feature_map if feature_map is not None else feature_map_for(),
                           **params)


def within(seconds: float, job):
    """Run ``job()`` in a thread and return its result; fail (instead of hanging the suite)
    when it has not finished after ``seconds``. Exceptions of ``job`` are re-raised."""
    import threading

    outcome = {}

    def target():
        try:
            outcome["value"] = job()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="test-within", daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    if thread.is_alive():
        raise AssertionError(f"{getattr(job, '__name__', job)} did not finish within "
                             f"{seconds} s (hung)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def build_tiny_qwen_vl(out_dir, texts, seed: int = 0):
    """A tiny random Qwen2.5-VL (the Task-1 winner's family: windowed vision tower, multimodal
    rotary positions) saved with save_pretrained with its tokenizer and PIL image processor.
    No processor: in transformers 5 Qwen2-VL processors need torchvision (their video
    processor), so a test composes the processor's inputs itself. -> (folder, image tokens of a
    60 x 80 image)."""
    import torch
    import transformers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig,
                              Qwen2_5_VLForConditionalGeneration)

    from fuxictr_mmctr.embeddings.tiny import bpe_tokenizer

    out_dir = Path(out_dir)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = bpe_tokenizer(texts, specials, 300)
    ids = {s: tok.token_to_id(s) for s in specials}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=0, eos_token_id=2,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=32, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, fullatt_block_indexes=[1], window_size=112),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).eval().save_pretrained(out_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                            pad_token="<|endoftext|>").save_pretrained(out_dir)
    image_processor = (getattr(transformers, "Qwen2VLImageProcessorPil", None)
                       or transformers.Qwen2VLImageProcessor)
    image_processor(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14,
                    merge_size=2).save_pretrained(out_dir)
    return out_dir
