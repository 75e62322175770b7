"""A MicroLens-shaped sample dataset with a real (latent-factor) signal, made from a seed.

The sample has the same files, columns, dtypes, list lengths and padding as the
MicroLens_1M_x1 distribution of the WWW 2025 MM-CTR challenge, so every reader, loader,
model and script of the package runs on it unchanged::

    OUT/MicroLens_1M_x1/train.parquet    user_id, item_seq (L=100), likes_level, views_level,
                                         item_id, label
    OUT/MicroLens_1M_x1/valid.parquet    same columns
    OUT/MicroLens_1M_x1/test.parquet     same columns without label (ID = row order)
    OUT/MicroLens_1M_x1/item_info.parquet item_id 0..n, item_tags (5), item_emb_d128 (128)
    OUT/item_feature.parquet             item_id, item_title, item_tags, likes_level, views_level,
                                         txt_emb_BERT (768), img_emb_CLIPRN50 (1024)
    OUT/item_emb.parquet                 item_id 0..n, item_emb_d128_{v1,v2,v3,e4} (128 each)
    OUT/item_seq.parquet                 user_id, item_seq (L=100) for embedding learning
    OUT/item_images/<item_id>.jpg        one cover image per item
    OUT/_truth/test_labels.parquet       hidden test labels (not part of the real distribution)
    OUT/truth/{train,valid,test}.parquet item_id, click_prob (the true click probability), label
                                         per row, in split order (never read by training code)
    OUT/_SUCCESS                         manifest (JSON), written last, with the variant, its
                                         knobs and the oracle's AUC / logloss per split

How the data is generated (nothing here is tuned to a particular model):

* Items have latent vectors ``v_i`` (dim 16) around cluster (category) centres. Each cluster
  owns a block of tag ids and a title vocabulary; the image colours and stripes are a
  deterministic function of ``v_i`` plus pixel noise; the item embeddings are noisy linear
  projections of ``v_i``. Popularity follows a Zipf law; each item also has a quality score.
* Users have a taste (a mixture of 1-3 clusters) ``u`` and a bias ``b_u``. Each CTR user has one
  fixed history drawn from the taste (length 3..100); the taste itself is never written.
* A row is a (user, target) pair, the target drawn from the taste or from the popularity law.
  ``label ~ Bernoulli(sigmoid(1.6 z(<u, v_i>) + 0.6 q_i + 0.6 b_u + 0.25 z(likes) + offset))``
  with the offset calibrated to about 25% positives. A model has to infer the taste from the
  history (and the item side) to get beyond the popularity/quality part of the signal.

That is the ``static`` variant. The ``dynamic`` variant (:mod:`fuxictr_mmctr.data.dynamics`)
keeps the item world but gives every row its own history from a session process (multi-interest
users, session drift, repeats, popularity skew, noisy multimodal views) and a label that depends
on the order of that history; each mechanism has a strength knob.

Everything is drawn from ``np.random.SeedSequence(seed)`` streams, so the same seed gives
byte-identical parquet files. Files are built in a staging directory beside ``OUT`` and moved
into place before the manifest is written; a sample without manifest is incomplete.

Command line::

    mmctr make-sample --out data/sample --preset default [--seed 2025] [--no-images] [--force]
        [--variant static|dynamic] [--recency S] [--repeat S] [--session S] [--multi-interest S]
        [--popularity S] [--multimodal-noise S]
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import ConfigError, MMCTRError
from ..io import PathLike, atomic_path
from . import dynamics
from .dynamics import VARIANTS, Dynamics

logger = logging.getLogger(__name__)


DATASET_DIR = "MicroLens_1M_x1"
MANIFEST_NAME = "_SUCCESS"
FORMAT_VERSION = 2  # 2: truth/<split>.parquet, oracle metrics and the variant in the manifest
SPLIT_COLUMNS = ("user_id", "item_seq", "likes_level", "views_level", "item_id", "label")
N_ITEM_TAGS = 5  # item_tags list length in item_info
EMB_DIM = 128  # item_emb_d128 and the item_emb.parquet views
TXT_DIM = 768  # txt_emb_BERT
IMG_DIM = 1024  # img_emb_CLIPRN50
LEVELS = 10  # likes_level / views_level take 1..LEVELS

# Label model: logit = A * z(<u, v>) + B * quality + C * user_bias + D * z(likes_level) + offset
_A_TASTE, _B_QUALITY, _C_USER, _D_LIKES = 1.6, 0.6, 0.6, 0.25
_TARGET_POSITIVE_RATE = 0.25
_P_TARGET_FROM_TASTE = 0.5  # CTR targets: from the user's taste, else from the popularity law
_P_EXPLORE = 0.1  # history / sequence items drawn from the popularity law instead of the taste
_CALIBRATION_ROWS = 200_000
_ROW_CHUNK = 500_000  # rows per generated chunk and per parquet row group
_ITEM_CHUNK = 16_384  # items per chunk for the wide item_feature vectors
_IMAGE_CHUNK = 512  # images rendered at once (float arrays of B x S x S x 3)

# Stream ids of the SeedSequence spawn keys: one independent stream per generation stage.
_S_ITEMS, _S_USERS, _S_HIST, _S_CALIB, _S_TRAIN, _S_VALID, _S_TEST = range(7)
_S_TAGS, _S_TITLES, _S_ITEM_EMB, _S_FEATURE, _S_SEQ, _S_SEQ_USERS, _S_IMAGES = range(7, 14)


class SampleExistsError(MMCTRError, FileExistsError):
    """``out_dir`` already holds data that ``make_sample`` will not overwrite without ``force``."""


def _n_generic_tags(n_tags: int) -> int:
    """Tags shared by all clusters (the rest are split into one block per cluster)."""
    return max(1, (n_tags - 1) // 10)


@dataclass(frozen=True)
class SamplePreset:
    """Sizes of one sample.

    Attributes:
        n_items: number of items (ids 1..n_items; item_info has n_items + 1 rows).
        n_users: number of CTR users (ids 1..n_users) shared by train/valid/test.
        n_train: rows of train.parquet.
        n_valid: rows of valid.parquet.
        n_test: rows of test.parquet.
        n_seq: rows of item_seq.parquet (sequences for embedding learning).
        n_tags: tag vocabulary size; tag ids are 1..n_tags-1 (0 = padding).
        n_clusters: item categories of the latent model.
        image_size: side of the square JPEG covers, in pixels.
        seq_len: fixed length of every ``item_seq`` list (left-padded with 0).
        latent_dim: dimension of the item / user latent factors.
        hist_median: median real (unpadded) length of a CTR user's history.
        seq_median: median real length of an item_seq.parquet sequence.
        zipf_exponent: popularity of the item of rank r is proportional to r ** -zipf_exponent.
    """

    n_items: int
    n_users: int
    n_train: int
    n_valid: int
    n_test: int
    n_seq: int
    n_tags: int
    n_clusters: int
    image_size: int
    seq_len: int = 100
    latent_dim: int = 16
    hist_median: float = 25.0
    seq_median: float = 6.0
    zipf_exponent: float = 0.9

    def __post_init__(self) -> None:
        per_cluster = (self.n_tags - 1 - _n_generic_tags(self.n_tags)) // max(self.n_clusters, 1)
        if per_cluster < N_ITEM_TAGS:
            raise ConfigError(f"n_tags={self.n_tags} leaves {per_cluster} tags per cluster for "
                             f"{self.n_clusters} clusters; need at least {N_ITEM_TAGS}")
        if self.n_items < self.n_clusters:
            raise ConfigError("need at least one item per cluster")
        if min(self.n_items, self.n_users, self.n_train, self.n_valid, self.n_test,
               self.n_seq) < 1:
            raise ConfigError(f"every count must be positive: {self}")
        if self.seq_len < 3:
            raise ConfigError("seq_len must be at least 3")


PRESETS: Dict[str, SamplePreset] = {
    # For tests: a few seconds including images.
    "tiny": SamplePreset(n_items=400, n_users=300, n_train=6_000, n_valid=1_000, n_test=1_000,
                         n_seq=900, n_tags=200, n_clusters=8, image_size=32),
    # For the demo: DIN trains a few epochs on 2 CPU cores in minutes.
    "default": SamplePreset(n_items=5_000, n_users=8_000, n_train=150_000, n_valid=10_000,
                            n_test=10_000, n_seq=24_000, n_tags=1_500, n_clusters=40,
                            image_size=64),
    # The real vocabulary sizes (91,717 items, tag vocabulary 11,740) on a few hundred rows:
    # the real-data configs (MicroLens_1M_x1, _pretrained) run on it unchanged (tests/e2e).
    "vocab": SamplePreset(n_items=91_717, n_users=300, n_train=600, n_valid=300, n_test=300,
                          n_seq=300, n_tags=11_740, n_clusters=300, image_size=32),
    # The real sizes of MicroLens_1M_x1, for load and memory tests.
    "full": SamplePreset(n_items=91_717, n_users=1_000_000, n_train=3_600_000, n_valid=10_000,
                         n_test=379_142, n_seq=6_000_000, n_tags=11_740, n_clusters=300,
                         image_size=64),
    # For bench/models.py and the sweeps: every model trains 3 epochs of batch 256 in a few
    # minutes on one CPU core, and 5,000 valid rows still separate them.
    "bench": SamplePreset(n_items=2_000, n_users=2_500, n_train=40_000, n_valid=5_000,
                          n_test=2_000, n_seq=5_000, n_tags=600, n_clusters=20, image_size=32),
}


@dataclass
class SampleInfo:
    """Where a sample lies and what it holds.

    Attributes:
        out_dir: the sample root (``OUT``).
        data_dir: ``OUT/MicroLens_1M_x1``.
        preset: preset name.
        seed: the seed it was made from.
        paths: file name -> path (``train``, ``valid``, ``test``, ``item_info``,
            ``item_feature``, ``item_emb``, ``item_seq``, ``test_labels``, ``truth_train``,
            ``truth_valid``, ``truth_test``, ``manifest``, and ``item_images`` when images were
            written).
        counts: row counts per file plus ``images`` (0 without images).
        positive_rate: share of positive labels in train.
        images: whether item images were written.
        item_vectors: whether item_feature holds the 768/1024-d vectors.
        created: False when an existing complete sample was reused.
        seconds: generation time (0 when reused).
        variant: ``static`` or ``dynamic``.
        dynamics: the knobs of the dynamic variant (empty for static).
        oracle: per split, the AUC / logloss / positive rate of the true click probability.
    """

    out_dir: Path
    data_dir: Path
    preset: str
    seed: int
    paths: Dict[str, Path]
    counts: Dict[str, int]
    positive_rate: float
    images: bool = True
    item_vectors: bool = True
    created: bool = True
    seconds: float = 0.0
    variant: str = "static"
    dynamics: Dict[str, float] = field(default_factory=dict)
    oracle: Dict[str, Dict[str, float]] = field(default_factory=dict)

    @property
    def images_dir(self) -> Optional[Path]:
        return self.paths.get("item_images")


# ============================================================================ helpers

def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    """An independent generator per (stage, chunk), so output does not depend on call order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, chunk)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fixed_list(matrix: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """A ``(N, W)`` array as a ``list<value_type>`` column of N lists of length W (no copy of
    the row structure through Python)."""
    n, width = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix).reshape(-1), type=value_type)
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(value_type))


def _left_pad(lengths: np.ndarray, flat: np.ndarray, width: int) -> np.ndarray:
    """Rows of ``lengths[r]`` consecutive values of ``flat`` right-aligned in a zero matrix.

    Args:
        lengths: ``(N,)`` real lengths, each in ``[0, width]``.
        flat: ``(lengths.sum(),)`` values, row after row, most recent last.
        width: padded length L.

    Returns:
        ``(N, L)`` int64, left-padded with 0.
    """
    out = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.arange(width)[None, :] >= (width - lengths)[:, None]
    out[mask] = flat
    return out


def _lognormal_lengths(rng: np.random.Generator, n: int, median: float, sigma: float,
                       low: int, high: int) -> np.ndarray:
    return np.clip(np.rint(median * np.exp(sigma * rng.standard_normal(n))), low,
                   high).astype(np.int64)


def _levels(score: np.ndarray) -> np.ndarray:
    """Decile of ``score`` as 1..LEVELS (ties broken by position)."""
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    return (ranks * LEVELS // len(score) + 1).astype(np.int64)


def _jitter_levels(rng: np.random.Generator, levels: np.ndarray, p: float = 0.3) -> np.ndarray:
    """Per-row levels: the item's level moved by +-1 with probability ``p``, kept in 1..LEVELS."""
    step = np.where(rng.random(len(levels)) < p, rng.choice([-1, 1], size=len(levels)), 0)
    return np.clip(levels + step, 1, LEVELS).astype(np.int64)


def _pseudo_words(rng: np.random.Generator, n: int) -> List[str]:
    """``n`` distinct pronounceable words (2-3 syllables)."""
    consonants = list("bcdfghjklmnprstvwz")
    vowels = list("aeiou")
    words: List[str] = []
    seen = set()
    while len(words) < n:
        k = int(rng.integers(2, 4))
        word = "".join(consonants[rng.integers(len(consonants))] + vowels[rng.integers(5)]
                       for _ in range(k))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


# ============================================================================ the latent world

@dataclass
class _World:
    """The hidden state everything is drawn from. Item arrays have ``n_items + 1`` rows
    (row 0 = padding); user arrays are indexed by ``user_id - 1``."""

    preset: SamplePreset
    seed: int
    centers: np.ndarray  # (K, d)
    item_cluster: np.ndarray  # (n+1,)
    item_latent: np.ndarray  # (n+1, d) float32, row 0 zeros
    item_pop: np.ndarray  # (n+1,) popularity weights, row 0 = 0
    item_quality: np.ndarray  # (n+1,)
    item_likes: np.ndarray  # (n+1,) 1..10
    item_views: np.ndarray  # (n+1,) 1..10
    cluster_weights: np.ndarray  # (K,) how often a cluster is in a taste
    cluster_order: np.ndarray  # (n,) item ids sorted by cluster
    cluster_keys: np.ndarray  # (n,) cluster + within-cluster popularity CDF, in (k, k+1]
    pop_cdf: np.ndarray  # (n,) popularity CDF over item ids 1..n
    # Filled by _build_users:
    user_clusters: Optional[np.ndarray] = None  # (U, 3)
    user_cumw: Optional[np.ndarray] = None  # (U, 3) cumulative mixture weights
    user_taste: Optional[np.ndarray] = None  # (U, d) float32
    user_bias: Optional[np.ndarray] = None  # (U,)
    user_activity_cdf: Optional[np.ndarray] = None  # (U,)
    history: Optional[np.ndarray] = None  # (U, L) int32, left-padded
    dot_mean: float = 0.0
    dot_std: float = 1.0
    offset: float = 0.0

    # ----------------------------------------------------------------- samplers
    def popular_items(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n,)`` item ids drawn from the Zipf popularity law."""
        idx = np.searchsorted(self.pop_cdf, rng.random(n), side="right")
        return np.minimum(idx, len(self.pop_cdf) - 1) + 1

    def cluster_items(self, rng: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        """One item per entry of ``clusters``, by popularity within the cluster."""
        u = 1.0 - rng.random(len(clusters))  # (0, 1]
        idx = np.searchsorted(self.cluster_keys, clusters + u, side="left")
        return self.cluster_order[np.minimum(idx, len(self.cluster_order) - 1)]

    def taste_items(self, rng: np.random.Generator, clusters: np.ndarray, cumw: np.ndarray,
                    explore: float) -> np.ndarray:
        """One item per row of a taste mixture.

        Args:
            clusters: ``(N, 3)`` cluster ids of each row's taste.
            cumw: ``(N, 3)`` cumulative mixture weights (last column 1).
            explore: probability of a popularity draw instead of a taste draw.

        Returns:
            ``(N,)`` item ids.
        """
        n = len(clusters)
        comp = np.minimum((rng.random(n)[:, None] > cumw).sum(axis=1), cumw.shape[1] - 1)
        items = self.cluster_items(rng, clusters[np.arange(n), comp])
        wander = rng.random(n) < explore
        items[wander] = self.popular_items(rng, int(wander.sum()))
        return items

    def sequences(self, rng: np.random.Generator, clusters: np.ndarray, cumw: np.ndarray,
                  lengths: np.ndarray) -> np.ndarray:
        """``(N, L)`` left-padded sequences, row r holding ``lengths[r]`` taste draws."""
        rows = np.repeat(np.arange(len(lengths)), lengths)
        flat = self.taste_items(rng, clusters[rows], cumw[rows], explore=_P_EXPLORE)
        return _left_pad(lengths, flat, self.preset.seq_len)


def _pad_row(a: np.ndarray) -> np.ndarray:
    """``a`` with a zero row 0 prepended: ``(n, ...)`` -> ``(n + 1, ...)``."""
    return np.concatenate([np.zeros((1,) + a.shape[1:], dtype=a.dtype), a])


def _tastes(rng: np.random.Generator, n: int, cluster_weights: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray]:
    """Taste mixtures of ``n`` users: ``(n, 3)`` cluster ids and cumulative weights."""
    k = len(cluster_weights)
    clusters = np.searchsorted(np.cumsum(cluster_weights), rng.random((n, 3)), side="right")
    clusters = np.minimum(clusters, k - 1)
    n_comp = rng.choice([1, 2, 3], size=n, p=[0.4, 0.4, 0.2])
    weights = rng.gamma(2.0, size=(n, 3)) * (np.arange(3)[None, :] < n_comp[:, None])
    cumw = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cumw[:, -1] = 1.0
    return clusters, cumw


def _build_items(preset: SamplePreset, seed: int) -> _World:
    rng = _rng(seed, _S_ITEMS)
    n, k, d = preset.n_items, preset.n_clusters, preset.latent_dim
    centers = rng.standard_normal((k, d))
    # Uneven cluster sizes; every cluster holds at least one item.
    sizes = rng.dirichlet(np.full(k, 2.0))
    cluster = np.concatenate([np.arange(k), rng.choice(k, size=n - k, p=sizes)])
    rng.shuffle(cluster)
    latent = centers[cluster] + 0.6 * rng.standard_normal((n, d))
    quality = rng.standard_normal(n)
    # Zipf popularity over a random rank order, mildly favouring good items.
    rank_score = rng.standard_normal(n) + 0.5 * quality
    rank = np.argsort(np.argsort(-rank_score)) + 1
    pop = rank.astype(np.float64) ** -preset.zipf_exponent
    likes = _levels(np.log(pop) + 0.8 * quality + 0.3 * rng.standard_normal(n))
    views = _levels(np.log(pop) + 0.3 * rng.standard_normal(n))
    order = np.argsort(cluster, kind="stable")
    sorted_cluster = cluster[order]
    sorted_pop = pop[order]
    cum = np.cumsum(sorted_pop)
    starts = np.searchsorted(sorted_cluster, np.arange(k), side="left")
    ends = np.searchsorted(sorted_cluster, np.arange(k), side="right")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)[sorted_cluster]
    total = (cum[ends - 1] - np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0))
    within = (cum - before) / total[sorted_cluster]
    within[ends - 1] = 1.0
    pop_cdf = np.cumsum(pop) / pop.sum()
    pop_cdf[-1] = 1.0
    cluster_mass = np.bincount(cluster, weights=pop, minlength=k)
    return _World(
        preset=preset, seed=seed, centers=centers,
        item_cluster=_pad_row(cluster), item_latent=_pad_row(latent).astype(np.float32),
        item_pop=_pad_row(pop), item_quality=_pad_row(quality), item_likes=_pad_row(likes),
        item_views=_pad_row(views),
        cluster_weights=cluster_mass / cluster_mass.sum(),
        cluster_order=order + 1, cluster_keys=sorted_cluster + within, pop_cdf=pop_cdf)


def _build_users(world: _World) -> None:
    """CTR users: tastes, biases, activity and one fixed history each."""
    p = world.preset
    rng = _rng(world.seed, _S_USERS)
    clusters, cumw = _tastes(rng, p.n_users, world.cluster_weights)
    weights = np.diff(np.concatenate([np.zeros((p.n_users, 1)), cumw], axis=1), axis=1)
    taste = np.einsum("uc,ucd->ud", weights, world.centers[clusters])
    taste += 0.3 * rng.standard_normal(taste.shape)
    world.user_clusters, world.user_cumw = clusters, cumw
    world.user_taste = taste.astype(np.float32)
    world.user_bias = rng.standard_normal(p.n_users)
    activity = np.exp(0.8 * rng.standard_normal(p.n_users))
    world.user_activity_cdf = np.cumsum(activity) / activity.sum()
    world.user_activity_cdf[-1] = 1.0
    history = np.zeros((p.n_users, p.seq_len), dtype=np.int32)
    for c, start in enumerate(range(0, p.n_users, _ROW_CHUNK)):
        stop = min(start + _ROW_CHUNK, p.n_users)
        hrng = _rng(world.seed, _S_HIST, c)
        lengths = _lognormal_lengths(hrng, stop - start, p.hist_median, 0.7, 3, p.seq_len)
        history[start:stop] = world.sequences(hrng, clusters[start:stop], cumw[start:stop],
                                              lengths)
    world.history = history


def _draw_rows(world: _World, rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
    """``n`` (user, target) rows with their features and the label logit without offset."""
    users = np.minimum(np.searchsorted(world.user_activity_cdf, rng.random(n), side="right"),
                       world.preset.n_users - 1)
    from_taste = rng.random(n) < _P_TARGET_FROM_TASTE
    items = world.popular_items(rng, n)
    items[from_taste] = world.taste_items(rng, world.user_clusters[users[from_taste]],
                                          world.user_cumw[users[from_taste]], explore=0.0)
    likes = _jitter_levels(rng, world.item_likes[items])
    views = _jitter_levels(rng, world.item_views[items])
    dot = np.einsum("nd,nd->n", world.user_taste[users], world.item_latent[items])
    return {"users": users, "items": items, "likes": likes, "views": views, "dot": dot}


def _logit(world: _World, rows: Dict[str, np.ndarray]) -> np.ndarray:
    return (_A_TASTE * (rows["dot"] - world.dot_mean) / world.dot_std
            + _B_QUALITY * world.item_quality[rows["items"]]
            + _C_USER * world.user_bias[rows["users"]]
            + _D_LIKES * (rows["likes"] - 5.5) / 2.87)


def _calibrate(world: _World) -> None:
    """Fix the taste standardisation and the offset giving ~25% positives."""
    rows = _draw_rows(world, _rng(world.seed, _S_CALIB), _CALIBRATION_ROWS)
    world.dot_mean = float(rows["dot"].mean())
    world.dot_std = float(rows["dot"].std()) or 1.0
    z = _logit(world, rows)
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if _sigmoid(z + mid).mean() > _TARGET_POSITIVE_RATE:
            high = mid
        else:
            low = mid
    world.offset = 0.5 * (low + high)
    logger.debug("calibration: dot mean %.3f std %.3f, offset %.3f", world.dot_mean,
                 world.dot_std, world.offset)


# ============================================================================ writers

_SPLIT_SCHEMA = pa.schema([
    ("user_id", pa.int64()), ("item_seq", pa.list_(pa.int64())), ("likes_level", pa.int64()),
    ("views_level", pa.int64()), ("item_id", pa.int64()), ("label", pa.int64()),
])


def _write_split(world: _World, path: Path, n_rows: int, stream: int, with_label: bool,
                 truth_path: Optional[Path] = None,
                 oracle_path: Optional[Path] = None) -> Tuple[int, int]:
    """Write one split in row groups of ``_ROW_CHUNK``; return (rows, positives).

    ``truth_path`` gets the hidden labels (test); ``oracle_path`` the true click probability
    of every row (:func:`~fuxictr_mmctr.data.dynamics.write_truth`)."""
    schema = _SPLIT_SCHEMA
    if not with_label:
        schema = schema.remove(schema.get_field_index("label"))
    positives = 0
    truth: List[np.ndarray] = []
    probs: List[np.ndarray] = []
    row_labels: List[np.ndarray] = []
    items: List[np.ndarray] = []
    bar = tqdm(total=n_rows, desc=f"sample {path.stem}", unit="row", unit_scale=True)
    with pq.ParquetWriter(path, schema) as writer, bar:
        for c, start in enumerate(range(0, n_rows, _ROW_CHUNK)):
            m = min(_ROW_CHUNK, n_rows - start)
            rng = _rng(world.seed, stream, c)
            rows = _draw_rows(world, rng, m)
            prob = _sigmoid(_logit(world, rows) + world.offset)
            label = (rng.random(m) < prob).astype(np.int64)
            positives += int(label.sum())
            probs.append(prob)
            row_labels.append(label)
            items.append(rows["items"])
            seq = world.history[rows["users"]].astype(np.int64)  # (m, L)
            arrays = [pa.array(rows["users"] + 1, type=pa.int64()), _fixed_list(seq, pa.int64()),
                      pa.array(rows["likes"], type=pa.int64()),
                      pa.array(rows["views"], type=pa.int64()),
                      pa.array(rows["items"], type=pa.int64())]
            if with_label:
                arrays.append(pa.array(label, type=pa.int64()))
            else:
                truth.append(label)
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema),
                               row_group_size=_ROW_CHUNK)
            del seq, arrays
            bar.update(m)
    if truth_path is not None:
        labels = np.concatenate(truth) if truth else np.zeros(0, np.int64)
        pq.write_table(pa.table({"label": pa.array(labels, type=pa.int64())}), truth_path)
    if oracle_path is not None:
        dynamics.write_truth(oracle_path, np.concatenate(items), np.concatenate(probs),
                             np.concatenate(row_labels))
    return n_rows, positives


def _item_tags(world: _World) -> np.ndarray:
    """``(n+1, 5)`` left-padded tag ids: mostly from the item's cluster block, some generic."""
    p = world.preset
    rng = _rng(world.seed, _S_TAGS)
    n_generic = _n_generic_tags(p.n_tags)
    block = (p.n_tags - 1 - n_generic) // p.n_clusters
    n = p.n_items
    # Popular tags within a block are used more (Zipf); sampling without replacement by
    # Gumbel-top-k over the block.
    log_w = -1.0 * np.log(np.arange(1, block + 1))
    keys = log_w[None, :] - np.log(-np.log(rng.random((n, block)) + 1e-300) + 1e-300)
    top = np.argsort(-keys, axis=1)[:, :N_ITEM_TAGS]  # (n, 5) positions in the block
    del keys
    cluster = world.item_cluster[1:]
    tags = 1 + n_generic + cluster[:, None] * block + top
    generic = rng.random((n, N_ITEM_TAGS)) < 0.15
    tags[generic] = 1 + rng.integers(0, n_generic, size=int(generic.sum()))
    # Keep tags unique within an item: a generic tag repeated is dropped (moved to padding).
    tags.sort(axis=1)
    dup = np.zeros_like(tags, dtype=bool)
    dup[:, 1:] = tags[:, 1:] == tags[:, :-1]
    count = rng.choice(np.arange(1, N_ITEM_TAGS + 1), size=n, p=[0.1, 0.2, 0.3, 0.25, 0.15])
    keep = (np.arange(N_ITEM_TAGS)[None, :] < count[:, None]) & ~dup
    perm = np.argsort(rng.random((n, N_ITEM_TAGS)), axis=1)  # random order within an item
    tags = np.take_along_axis(tags, perm, axis=1)
    keep = np.take_along_axis(keep, perm, axis=1)
    lengths = keep.sum(axis=1)
    out = np.zeros((n + 1, N_ITEM_TAGS), dtype=np.int64)
    out[1:] = _left_pad(lengths, tags[keep], N_ITEM_TAGS)
    return out


def _titles(world: _World) -> List[str]:
    """One title per item 1..n: words from its cluster's vocabulary and a common one."""
    p = world.preset
    rng = _rng(world.seed, _S_TITLES)
    per_cluster, n_common = 30, 200
    words = _pseudo_words(rng, p.n_clusters * per_cluster + n_common)
    vocab = np.array(words, dtype=object)
    n, width = p.n_items, 10
    zipf = np.arange(1, per_cluster + 1) ** -1.0
    local = np.searchsorted(np.cumsum(zipf) / zipf.sum(), rng.random((n, width)), side="right")
    local = np.minimum(local, per_cluster - 1) + world.item_cluster[1:, None] * per_cluster
    common = p.n_clusters * per_cluster + rng.integers(0, n_common, size=(n, width))
    idx = np.where(rng.random((n, width)) < 0.7, local, common)
    lengths = rng.integers(3, width + 1, size=n)
    empty = rng.random(n) < 0.01
    table = vocab[idx]
    return ["" if e else " ".join(row[:k]) for row, k, e in zip(table, lengths, empty)]


def _projection(rng: np.random.Generator, d: int, out_dim: int) -> np.ndarray:
    return (rng.standard_normal((d, out_dim)) / np.sqrt(d)).astype(np.float32)


def _noisy_view(rng: np.random.Generator, latent: np.ndarray, proj: np.ndarray, noise: float,
                scale: np.ndarray) -> np.ndarray:
    """``(n, D)`` float32: ``scale * (latent @ proj + noise * N(0, 1))``, unnormalised."""
    out = latent @ proj
    out += noise * rng.standard_normal(out.shape, dtype=np.float32)
    out *= scale[:, None]
    return out


def _item_embeddings(world: _World, latent: Optional[np.ndarray] = None,
                     noise_scale: float = 1.0) -> Dict[str, np.ndarray]:
    """``item_emb_d128`` (item_info) and the four item_emb.parquet views, each ``(n+1, 128)``
    float32 with a zero padding row. Noise levels differ, so do the views' quality.

    ``latent`` ``(n, d')`` replaces the item latent vectors as what the views see (the dynamic
    variant adds the item quality); ``noise_scale`` multiplies every view's noise."""
    rng = _rng(world.seed, _S_ITEM_EMB)
    latent = world.item_latent[1:] if latent is None else latent
    d = latent.shape[1]
    # Popular items have larger norms (as with embeddings trained on clicks).
    scale = (0.5 + 0.1 * np.log1p(world.item_pop[1:] * world.preset.n_items)).astype(np.float32)
    out = {}
    for name, noise in (("item_emb_d128", 0.5), ("item_emb_d128_v1", 0.4),
                        ("item_emb_d128_v2", 0.8), ("item_emb_d128_v3", 1.5),
                        ("item_emb_d128_e4", 0.25)):
        emb = np.zeros((len(latent) + 1, EMB_DIM), dtype=np.float32)
        emb[1:] = _noisy_view(rng, latent, _projection(rng, d, EMB_DIM), noise * noise_scale,
                              scale)
        out[name] = emb
    return out


def _write_item_info(world: _World, path: Path, tags: np.ndarray, emb: np.ndarray) -> None:
    n = world.preset.n_items
    table = pa.Table.from_arrays(
        [pa.array(np.arange(n + 1), type=pa.int64()), _fixed_list(tags, pa.int64()),
         _fixed_list(emb, pa.float32())],
        schema=pa.schema([("item_id", pa.int64()), ("item_tags", pa.list_(pa.int64())),
                          ("item_emb_d128", pa.list_(pa.float32()))]))
    pq.write_table(table, path)


def _write_item_emb(path: Path, embs: Dict[str, np.ndarray]) -> None:
    names = ["item_emb_d128_v1", "item_emb_d128_v2", "item_emb_d128_v3", "item_emb_d128_e4"]
    n1 = len(embs[names[0]])
    table = pa.Table.from_arrays(
        [pa.array(np.arange(n1), type=pa.int64())] + [_fixed_list(embs[k], pa.float32())
                                                      for k in names],
        schema=pa.schema([("item_id", pa.int64())]
                         + [(k, pa.list_(pa.float32())) for k in names]))
    pq.write_table(table, path)


def _write_item_feature(world: _World, path: Path, tags: np.ndarray, titles: List[str],
                        item_vectors: bool, latent: Optional[np.ndarray] = None,
                        noise_scale: float = 1.0) -> None:
    """item_feature.parquet, in chunks of items so the 768/1024-d vectors stay small in memory.

    ``latent`` ``(n, d')`` (rows = items 1..n) replaces the item latent the image vector sees
    and ``noise_scale`` multiplies the vectors' noise (the dynamic variant)."""
    n = world.preset.n_items
    fields = [("item_id", pa.int64()), ("item_title", pa.string()), ("item_tags", pa.string()),
              ("likes_level", pa.int64()), ("views_level", pa.int64())]
    if item_vectors:
        fields += [("txt_emb_BERT", pa.list_(pa.float32())),
                   ("img_emb_CLIPRN50", pa.list_(pa.float32()))]
    schema = pa.schema(fields)
    prng = _rng(world.seed, _S_FEATURE)
    d = world.preset.latent_dim
    img_latent = world.item_latent if latent is None else _pad_row(latent)
    p_txt = _projection(prng, d, TXT_DIM)
    p_img = _projection(prng, img_latent.shape[1], IMG_DIM)
    # The text vector leans on the cluster (category words), the image one on the latent.
    centers = world.centers.astype(np.float32)
    with pq.ParquetWriter(path, schema) as writer:
        for c, start in enumerate(range(1, n + 1, _ITEM_CHUNK)):
            ids = np.arange(start, min(start + _ITEM_CHUNK, n + 1))
            tag_str = [",".join(f"tag_{t}" for t in row if t) for row in tags[ids]]
            arrays = [pa.array(ids, type=pa.int64()),
                      pa.array([titles[i - 1] for i in ids], type=pa.string()),
                      pa.array(tag_str, type=pa.string()),
                      pa.array(world.item_likes[ids], type=pa.int64()),
                      pa.array(world.item_views[ids], type=pa.int64())]
            if item_vectors:
                rng = _rng(world.seed, _S_FEATURE, c + 1)
                ones = np.ones(len(ids), dtype=np.float32)
                txt_in = 0.7 * centers[world.item_cluster[ids]] + 0.3 * world.item_latent[ids]
                arrays.append(_fixed_list(_noisy_view(rng, txt_in, p_txt, 0.6 * noise_scale,
                                                      ones), pa.float32()))
                arrays.append(_fixed_list(_noisy_view(rng, img_latent[ids], p_img,
                                                      0.8 * noise_scale, ones), pa.float32()))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def _write_item_seq(world: _World, path: Path) -> int:
    """item_seq.parquet: sequences of the CTR users and of as many other users (own tastes)."""
    p = world.preset
    n_pool = 2 * p.n_users
    extra_clusters, extra_cumw = _tastes(_rng(world.seed, _S_SEQ_USERS), p.n_users,
                                         world.cluster_weights)
    clusters = np.concatenate([world.user_clusters, extra_clusters])
    cumw = np.concatenate([world.user_cumw, extra_cumw])
    schema = pa.schema([("user_id", pa.int64()), ("item_seq", pa.list_(pa.int64()))])
    urng = _rng(world.seed, _S_SEQ)
    owners = np.sort(urng.integers(0, n_pool, size=p.n_seq))
    bar = tqdm(total=p.n_seq, desc="sample item_seq", unit="row", unit_scale=True)
    with pq.ParquetWriter(path, schema) as writer, bar:
        for c, start in enumerate(range(0, p.n_seq, _ROW_CHUNK)):
            users = owners[start:start + _ROW_CHUNK]
            rng = _rng(world.seed, _S_SEQ, c + 1)
            lengths = _lognormal_lengths(rng, len(users), p.seq_median, 0.6, 3, p.seq_len)
            seq = world.sequences(rng, clusters[users], cumw[users], lengths)
            writer.write_table(pa.Table.from_arrays(
                [pa.array(users + 1, type=pa.int64()), _fixed_list(seq, pa.int64())],
                schema=schema), row_group_size=_ROW_CHUNK)
            bar.update(len(users))
    return p.n_seq


def _render_images(world: _World, rng: np.random.Generator, params: Dict[str, np.ndarray],
                   ids: np.ndarray) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 covers: two colours in stripes plus a disc, all set by the item's
    latent vector (orientation and palette mostly by its cluster), plus pixel noise."""
    s = world.preset.image_size
    v = world.item_latent[ids]  # (B, d)
    c1 = 255.0 * _sigmoid(v @ params["c1"])  # (B, 3)
    c2 = 255.0 * _sigmoid(v @ params["c2"])
    c3 = 255.0 * _sigmoid(v @ params["c3"])
    theta = np.pi * _sigmoid(v @ params["theta"])  # (B,)
    freq = 1.0 + 5.0 * _sigmoid(v @ params["freq"])  # stripes per image
    cx = 0.25 + 0.5 * _sigmoid(v @ params["cx"])
    cy = 0.25 + 0.5 * _sigmoid(v @ params["cy"])
    radius = 0.12 + 0.18 * _sigmoid(v @ params["radius"])
    phase = rng.uniform(0.0, 2.0 * np.pi, size=len(ids))
    grid = (np.arange(s, dtype=np.float32) + 0.5) / s
    yy, xx = np.meshgrid(grid, grid, indexing="ij")  # (S, S)
    proj = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    m = 0.5 + 0.5 * np.sin(2 * np.pi * freq[:, None, None] * proj + phase[:, None, None])
    img = c1[:, None, None, :] * (1 - m[..., None]) + c2[:, None, None, :] * m[..., None]
    disc = (xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2 \
        < radius[:, None, None] ** 2  # (B, S, S)
    img = np.where(disc[..., None], c3[:, None, None, :], img)
    img += rng.normal(0.0, 12.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _write_images(world: _World, folder: Path) -> int:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    prng = _rng(world.seed, _S_IMAGES)
    d = world.preset.latent_dim
    params = {name: rng_out for name, rng_out in (
        ("c1", prng.standard_normal((d, 3)) * 0.5), ("c2", prng.standard_normal((d, 3)) * 0.5),
        ("c3", prng.standard_normal((d, 3)) * 0.5), ("theta", prng.standard_normal(d) * 0.4),
        ("freq", prng.standard_normal(d) * 0.4), ("cx", prng.standard_normal(d) * 0.4),
        ("cy", prng.standard_normal(d) * 0.4), ("radius", prng.standard_normal(d) * 0.4))}
    n = world.preset.n_items
    bar = tqdm(total=n, desc="sample images", unit="img", unit_scale=True)
    for c, start in enumerate(range(1, n + 1, _IMAGE_CHUNK)):
        ids = np.arange(start, min(start + _IMAGE_CHUNK, n + 1))
        pixels = _render_images(world, _rng(world.seed, _S_IMAGES, c + 1), params, ids)
        for item_id, arr in zip(ids, pixels):
            Image.fromarray(arr, mode="RGB").save(folder / f"{item_id}.jpg", format="JPEG",
                                                   quality=90)
        bar.update(len(ids))
    bar.close()
    return n


# ============================================================================ orchestration

def _relative_paths(images: bool) -> Dict[str, str]:
    paths = {
        "train": f"{DATASET_DIR}/train.parquet", "valid": f"{DATASET_DIR}/valid.parquet",
        "test": f"{DATASET_DIR}/test.parquet", "item_info": f"{DATASET_DIR}/item_info.parquet",
        "item_feature": "item_feature.parquet", "item_emb": "item_emb.parquet",
        "item_seq": "item_seq.parquet", "test_labels": "_truth/test_labels.parquet",
        "truth_train": "truth/train.parquet", "truth_valid": "truth/valid.parquet",
        "truth_test": "truth/test.parquet",
    }
    if images:
        paths["item_images"] = "item_images"
    return paths


def _read_manifest(out_dir: Path) -> Optional[dict]:
    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _info_from_manifest(out_dir: Path, manifest: dict, created: bool,
                        seconds: float) -> SampleInfo:
    rel = manifest["paths"]
    paths = {k: out_dir / v for k, v in rel.items()}
    paths["manifest"] = out_dir / MANIFEST_NAME
    return SampleInfo(out_dir=out_dir, data_dir=out_dir / DATASET_DIR,
                      preset=manifest["preset"], seed=int(manifest["seed"]), paths=paths,
                      counts=dict(manifest["counts"]),
                      positive_rate=float(manifest["positive_rate"]),
                      images=bool(manifest["images"]),
                      item_vectors=bool(manifest["item_vectors"]), created=created,
                      seconds=seconds, variant=manifest.get("variant", "static"),
                      dynamics=dict(manifest.get("dynamics") or {}),
                      oracle=dict(manifest.get("oracle") or {}))


def _existing(out_dir: Path, preset: str, seed: int, images: bool,
              item_vectors: bool, variant: str = "static",
              knobs: Optional[Dict[str, float]] = None) -> Optional[SampleInfo]:
    """The complete existing sample if it matches the request; raise if something else is
    there; None when there is nothing (or only an incomplete or older-format sample written by
    make_sample) to keep."""
    manifest = _read_manifest(out_dir)
    if manifest is None:
        if (out_dir / DATASET_DIR / "train.parquet").exists():
            raise SampleExistsError(
                f"{out_dir} already holds {DATASET_DIR}/train.parquet but no {MANIFEST_NAME} "
                "manifest: an incomplete sample or data not written by make_sample; pass "
                "force=True (--force) to overwrite it")
        return None
    want = {"preset": preset, "seed": seed, "variant": variant, "dynamics": knobs or {}}
    have = {"preset": manifest.get("preset"), "seed": manifest.get("seed"),
            "variant": manifest.get("variant", "static"),
            "dynamics": manifest.get("dynamics") or {}}
    lacking = [name for name, asked in (("images", images), ("item_vectors", item_vectors))
               if asked and not manifest.get(name)]
    if have != want or lacking:
        extra = f", without {' and '.join(lacking)}" if lacking else ""
        knob_text = "".join(f", {k}={v}" for k, v in sorted(have["dynamics"].items()))
        raise SampleExistsError(
            f"{out_dir} holds a sample made with preset={have['preset']!r}, "
            f"seed={have['seed']}, variant={have['variant']!r}{knob_text}{extra}; asked for "
            f"preset={preset!r}, seed={seed}, variant={variant!r}: pass force=True (--force) "
            "to regenerate it, or choose another output directory")
    if manifest.get("format_version") != FORMAT_VERSION:
        logger.warning("%s: a sample of format %s (now %d); regenerating", out_dir,
                       manifest.get("format_version"), FORMAT_VERSION)
        return None
    missing = [v for v in manifest["paths"].values() if not (out_dir / v).exists()]
    if missing:
        logger.warning("%s: manifest present but %s missing; regenerating", out_dir, missing)
        return None
    return _info_from_manifest(out_dir, manifest, created=False, seconds=0.0)


@contextlib.contextmanager
def _staging_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside ``out_dir`` (same file system), removed afterwards."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(staging: Path, out_dir: Path, rel_paths: Dict[str, str]) -> None:
    """Move every generated file (and the image folder) from staging onto its final name.

    The old manifest is removed first, so an interruption leaves a sample that reads as
    incomplete; each file arrives by one ``os.replace`` and is never half-written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out_dir / MANIFEST_NAME).unlink()
    for rel in rel_paths.values():
        src, dst = staging / rel, out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            if dst.exists():
                trash = staging / f".old-{dst.name}"
                os.replace(dst, trash)
            os.replace(src, dst)
        else:
            os.replace(src, dst)
    if "item_images" not in rel_paths and (out_dir / "item_images").is_dir():
        # A regenerated sample without images must not keep the previous sample's covers.
        os.replace(out_dir / "item_images", staging / ".old-item_images")


def make_sample(out_dir: PathLike, preset: str = "default", seed: int = 2025,
                images: bool = True, force: bool = False,
                item_vectors: bool = True, variant: str = "static",
                dynamics_knobs: Optional[Dynamics] = None) -> SampleInfo:
    """Write a MicroLens-shaped sample dataset under ``out_dir`` (see the module docstring).

    Args:
        out_dir: the sample root; ``MicroLens_1M_x1/`` and the item-side files go under it.
        preset: a key of :data:`PRESETS` (``tiny``, ``default``, ``bench``, ``full``).
            Default: default.
        seed: seed of every random draw; the same seed gives identical parquet bytes.
            Default: 2025.
        images: write ``item_images/<item_id>.jpg``. Default: True.
        force: regenerate even when a complete sample is present, and overwrite a sample made
            with another preset/seed. Default: False.
        item_vectors: include ``txt_emb_BERT`` (768) and ``img_emb_CLIPRN50`` (1024) in
            item_feature.parquet (about 650 MB in memory-chunks for ``full``). Default: True.
        variant: ``static`` (a fixed taste match; the history mean is sufficient) or
            ``dynamic`` (clicks depend on the order of the history:
            :mod:`fuxictr_mmctr.data.dynamics`). Default: static.
        dynamics_knobs: strengths of the dynamic mechanisms (``dynamic`` only). Default:
            ``Dynamics()``.

    Returns:
        SampleInfo with the paths, counts and oracle metrics; ``created`` is False when a
        complete sample made with the same settings was already there (nothing is written).

    Raises:
        ConfigError: unknown preset or variant, knobs given for the static variant.
        SampleExistsError: ``out_dir`` holds a different sample, or a train split without a
            manifest, and ``force`` is False.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; available: {list(VARIANTS)}",
                          option="--variant")
    if variant == "static" and dynamics_knobs is not None:
        raise ConfigError("dynamics knobs apply to the dynamic variant only",
                          option="--variant")
    dyn = (dynamics_knobs or Dynamics()) if variant == "dynamic" else None
    knobs = dyn.to_dict() if dyn is not None else {}
    seed = int(seed)
    out_dir = Path(out_dir)
    if not force:
        existing = _existing(out_dir, preset, seed, images, item_vectors, variant, knobs)
        if existing is not None:
            logger.info("Sample %s (preset %s, seed %d, %s) already complete; nothing to do "
                        "(force=True regenerates)", out_dir, preset, seed, variant)
            return existing
    p = PRESETS[preset]
    t0 = time.perf_counter()
    logger.info("Making the %s %s sample (seed %d) in %s: %d items, %d users, %d/%d/%d rows",
                variant, preset, seed, out_dir, p.n_items, p.n_users, p.n_train, p.n_valid,
                p.n_test)
    if dyn is None:
        world = _build_items(p, seed)
        _build_users(world)
        _calibrate(world)
        dworld = None
        mm_latent, mm_noise = None, 1.0
    else:
        dworld = dynamics.build(p, seed, dyn)
        world = dworld.world
        mm_latent, mm_noise = dynamics.multimodal_latent(dworld), dyn.multimodal_noise
    rel = _relative_paths(images)
    counts: Dict[str, int] = {}
    with _staging_dir(out_dir) as stage:
        (stage / DATASET_DIR).mkdir()
        (stage / "_truth").mkdir()
        (stage / "truth").mkdir()
        embs = _item_embeddings(world, mm_latent, mm_noise)
        tags = _item_tags(world)
        _write_item_info(world, stage / rel["item_info"], tags, embs.pop("item_emb_d128"))
        _write_item_emb(stage / rel["item_emb"], embs)
        del embs
        _write_item_feature(world, stage / rel["item_feature"], tags, _titles(world),
                            item_vectors, mm_latent, mm_noise)
        counts["items"] = p.n_items
        logger.info("item side written (%.1fs)", time.perf_counter() - t0)
        positives = {}
        for split, n_rows, stream in (("train", p.n_train, _S_TRAIN),
                                      ("valid", p.n_valid, _S_VALID),
                                      ("test", p.n_test, _S_TEST)):
            labels_path = stage / rel["test_labels"] if split == "test" else None
            if dworld is None:
                counts[split], positives[split] = _write_split(
                    world, stage / rel[split], n_rows, stream, with_label=split != "test",
                    truth_path=labels_path, oracle_path=stage / rel[f"truth_{split}"])
            else:
                counts[split], positives[split] = dynamics.write_split(
                    dworld, stage / rel[split], n_rows, split, with_label=split != "test",
                    truth_path=stage / rel[f"truth_{split}"], labels_path=labels_path)
        pos = positives["train"]
        oracle = {split: dynamics.oracle_metrics(*dynamics.read_truth(stage, split))
                  for split in ("train", "valid", "test")}
        logger.info("splits written (%.1fs), train positive rate %.3f, oracle valid AUC %.4f",
                    time.perf_counter() - t0, pos / max(p.n_train, 1), oracle["valid"]["AUC"])
        if dworld is None:
            counts["item_seq"] = _write_item_seq(world, stage / rel["item_seq"])
        else:
            counts["item_seq"] = dynamics.write_item_seq(dworld, stage / rel["item_seq"])
        counts["users"] = p.n_users
        logger.info("item_seq written (%.1fs)", time.perf_counter() - t0)
        counts["images"] = _write_images(world, stage / rel["item_images"]) if images else 0
        if images:
            logger.info("%d images written (%.1fs)", counts["images"], time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        manifest = {"format_version": FORMAT_VERSION, "preset": preset, "seed": seed,
                    "variant": variant, "dynamics": knobs, "oracle": oracle,
                    "images": images, "item_vectors": item_vectors,
                    "preset_sizes": asdict(dynamics.items_preset(p, dyn) if dyn else p),
                    "counts": counts,
                    "positive_rate": round(pos / max(p.n_train, 1), 6), "paths": rel}
        _move_into_place(stage, out_dir, rel)
        with atomic_path(out_dir / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the sample is meant to be shared
    logger.info("Sample %s complete in %.1fs", out_dir, seconds)
    return _info_from_manifest(out_dir, manifest, created=True, seconds=seconds)
