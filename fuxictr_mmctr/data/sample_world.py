"""The latent item world of the sample, its sizes, and what a variant of it provides.

Items have latent vectors ``v_i`` (dim 16) around cluster (category) centres, a Zipf
popularity over a random rank order that mildly favours good items, a quality score, and
likes/views levels. :class:`ItemWorld` holds that hidden state and draws items from it (by
popularity, or by popularity within a cluster); :func:`build_items` makes it from a preset and
a seed.

A *variant* is a user and row process over that world: :mod:`.sample_static` (a fixed taste
match) and :mod:`.dynamics` (clicks depend on the order of the history). Both implement the
small :class:`Variant` protocol that the writers (:mod:`.sample_files`) and
:func:`~fuxictr_mmctr.data.sample.make_sample` use.

Randomness: every stage draws from its own ``np.random.SeedSequence(seed, spawn_key=(stream,
chunk))`` (:func:`stream_rng`), so output does not depend on the order of the stages. Stream ids:
0 items (here); 1-6, 11, 12 the static variant; 7-10, 13 the item-side files; 20-26 the
dynamic variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Protocol

import numpy as np
import pyarrow as pa

from ..errors import ConfigError

N_ITEM_TAGS = 5  # item_tags list length in item_info
LEVELS = 10  # likes_level / views_level take 1..LEVELS
ROW_CHUNK = 500_000  # rows per generated chunk and per parquet row group
TARGET_POSITIVE_RATE = 0.25  # the label offset of every variant is calibrated to this

S_ITEMS = 0  # the stream of build_items


def n_generic_tags(n_tags: int) -> int:
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
        per_cluster = (self.n_tags - 1 - n_generic_tags(self.n_tags)) // max(self.n_clusters, 1)
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


# ============================================================================ helpers

def stream_rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    """An independent generator per (stage, chunk), so output does not depend on call order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, chunk)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def fixed_list(matrix: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """A ``(N, W)`` array as a ``list<value_type>`` column of N lists of length W (no copy of
    the row structure through Python)."""
    n, width = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix).reshape(-1), type=value_type)
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(value_type))


def left_pad(lengths: np.ndarray, flat: np.ndarray, width: int) -> np.ndarray:
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


def lognormal_lengths(gen: np.random.Generator, n: int, median: float, sigma: float,
                      low: int, high: int) -> np.ndarray:
    """``(n,)`` int64 lengths ``median * exp(sigma * N(0, 1))``, rounded, in ``[low, high]``."""
    return np.clip(np.rint(median * np.exp(sigma * gen.standard_normal(n))), low,
                   high).astype(np.int64)


def levels(score: np.ndarray) -> np.ndarray:
    """Decile of ``score`` as 1..LEVELS (ties broken by position)."""
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    return (ranks * LEVELS // len(score) + 1).astype(np.int64)


def jitter_levels(gen: np.random.Generator, item_levels: np.ndarray,
                  p: float = 0.3) -> np.ndarray:
    """Per-row levels: the item's level moved by +-1 with probability ``p``, kept in 1..LEVELS."""
    step = np.where(gen.random(len(item_levels)) < p,
                    gen.choice([-1, 1], size=len(item_levels)), 0)
    return np.clip(item_levels + step, 1, LEVELS).astype(np.int64)


def pad_row(a: np.ndarray) -> np.ndarray:
    """``a`` with a zero row 0 prepended: ``(n, ...)`` -> ``(n + 1, ...)``."""
    return np.concatenate([np.zeros((1,) + a.shape[1:], dtype=a.dtype), a])


def calibrate_offset(z: np.ndarray, rate: float = TARGET_POSITIVE_RATE) -> float:
    """The offset ``o`` with ``mean(sigmoid(z + o)) == rate`` (bisection on [-20, 20])."""
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if sigmoid(z + mid).mean() > rate:
            high = mid
        else:
            low = mid
    return 0.5 * (low + high)


# ============================================================================ the item world

@dataclass
class ItemWorld:
    """The hidden item state every file is drawn from. Arrays have ``n_items + 1`` rows (row
    0 = padding).

    Attributes:
        preset: the sizes the items were built with.
        seed: the sample's seed.
        centers: ``(K, d)`` cluster centres.
        item_cluster: ``(n+1,)`` cluster of each item.
        item_latent: ``(n+1, d)`` float32 latent vectors, row 0 zeros.
        item_pop: ``(n+1,)`` popularity weights, row 0 = 0.
        item_quality: ``(n+1,)`` quality scores.
        item_likes: ``(n+1,)`` likes level 1..10.
        item_views: ``(n+1,)`` views level 1..10.
        cluster_weights: ``(K,)`` popularity mass of each cluster (how often it is in a taste).
        cluster_order: ``(n,)`` item ids sorted by cluster.
        cluster_keys: ``(n,)`` cluster + within-cluster popularity CDF, in ``(k, k+1]``.
        pop_cdf: ``(n,)`` popularity CDF over item ids 1..n.
    """

    preset: SamplePreset
    seed: int
    centers: np.ndarray
    item_cluster: np.ndarray
    item_latent: np.ndarray
    item_pop: np.ndarray
    item_quality: np.ndarray
    item_likes: np.ndarray
    item_views: np.ndarray
    cluster_weights: np.ndarray
    cluster_order: np.ndarray
    cluster_keys: np.ndarray
    pop_cdf: np.ndarray

    def popular_items(self, gen: np.random.Generator, n: int) -> np.ndarray:
        """``(n,)`` item ids drawn from the Zipf popularity law."""
        idx = np.searchsorted(self.pop_cdf, gen.random(n), side="right")
        return np.minimum(idx, len(self.pop_cdf) - 1) + 1

    def cluster_items(self, gen: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        """One item per entry of ``clusters``, by popularity within the cluster."""
        u = 1.0 - gen.random(len(clusters))  # (0, 1]
        idx = np.searchsorted(self.cluster_keys, clusters + u, side="left")
        return self.cluster_order[np.minimum(idx, len(self.cluster_order) - 1)]


def build_items(preset: SamplePreset, seed: int) -> ItemWorld:
    """The items of a sample: clusters, latent vectors, popularity, quality, levels."""
    gen = stream_rng(seed, S_ITEMS)
    n, k, d = preset.n_items, preset.n_clusters, preset.latent_dim
    centers = gen.standard_normal((k, d))
    # Uneven cluster sizes; every cluster holds at least one item.
    sizes = gen.dirichlet(np.full(k, 2.0))
    cluster = np.concatenate([np.arange(k), gen.choice(k, size=n - k, p=sizes)])
    gen.shuffle(cluster)
    latent = centers[cluster] + 0.6 * gen.standard_normal((n, d))
    quality = gen.standard_normal(n)
    # Zipf popularity over a random rank order, mildly favouring good items.
    rank_score = gen.standard_normal(n) + 0.5 * quality
    rank = np.argsort(np.argsort(-rank_score)) + 1
    pop = rank.astype(np.float64) ** -preset.zipf_exponent
    likes = levels(np.log(pop) + 0.8 * quality + 0.3 * gen.standard_normal(n))
    views = levels(np.log(pop) + 0.3 * gen.standard_normal(n))
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
    return ItemWorld(
        preset=preset, seed=seed, centers=centers,
        item_cluster=pad_row(cluster), item_latent=pad_row(latent).astype(np.float32),
        item_pop=pad_row(pop), item_quality=pad_row(quality), item_likes=pad_row(likes),
        item_views=pad_row(views),
        cluster_weights=cluster_mass / cluster_mass.sum(),
        cluster_order=order + 1, cluster_keys=sorted_cluster + within, pop_cdf=pop_cdf)


# ============================================================================ the protocol

@dataclass
class Rows:
    """A batch of generated split rows.

    Attributes:
        users: ``(n,)`` user indexes (``user_id - 1``).
        history: ``(n, L)`` item ids, left-padded with 0, most recent last.
        likes: ``(n,)`` likes_level 1..10.
        views: ``(n,)`` views_level 1..10.
        items: ``(n,)`` target item ids.
        prob: ``(n,)`` the true click probability.
    """

    users: np.ndarray
    history: np.ndarray
    likes: np.ndarray
    views: np.ndarray
    items: np.ndarray
    prob: np.ndarray


class Variant(Protocol):
    """What a sample variant gives the writers: its item world, its rows and sequences.

    Attributes:
        name: the variant's name (``static``, ``dynamic``), written to the manifest.
        world: the item world (``world.preset`` is the manifest's ``preset_sizes``).
        split_streams: split name -> stream id of that split's chunks.
        seq_stream: stream id of item_seq.parquet (its owners, then one chunk each).
        view_noise: scale of the noise of the multimodal views (item embeddings, text and
            image vectors).
    """

    name: str
    world: ItemWorld
    split_streams: Dict[str, int]
    seq_stream: int
    view_noise: float

    def knobs(self) -> Dict[str, float]:
        """The variant's knobs, as written to the manifest (empty when it has none)."""

    def view_latent(self) -> Optional[np.ndarray]:
        """``(n, d')`` what the multimodal views see of items 1..n; None: the item latent."""

    def draw(self, gen: np.random.Generator, n: int) -> Rows:
        """``n`` split rows with their true click probability."""

    def sequences(self, gen: np.random.Generator, owners: np.ndarray,
                  lengths: np.ndarray) -> np.ndarray:
        """``(n, L)`` left-padded item_seq rows of ``owners`` (indexes into a pool of
        ``2 * n_users`` users: the CTR users first) with real lengths ``lengths``."""
