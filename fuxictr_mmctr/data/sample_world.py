"""The latent item world of the sample, its sizes, and what a variant of it provides.

Items have latent vectors ``v_i`` (dim 16) around cluster (category) centres, a Zipf
popularity over a random rank order that mildly favours good items, a quality score, and
likes/views levels. :class:`ItemWorld` holds that hidden state and draws items from it (by
popularity, or by popularity within a cluster); :func:`build_items` makes it from a preset and
a seed.

The *item view* (:class:`ItemView`, a third axis beside the variants) decides how much of what
drives clicks the item's content shows. Without one (the classic sample) the content sees the
whole latent vector. With one, each item also belongs to an audience (a community cutting
across the categories) that drives clicks and shows only in what users watch together, and the
content features see a noisy view of the category part alone (:func:`build_items`).

A *variant* is a user and row process over that world: :mod:`.sample_static` (a fixed taste
match) and :mod:`.dynamics` (clicks depend on the order of the history). Both implement the
small :class:`Variant` protocol that the writers (:mod:`.sample_files`) and
:func:`~fuxictr_mmctr.data.sample.make_sample` use.

Randomness: every stage draws from its own ``np.random.SeedSequence(seed, spawn_key=(stream,
chunk))`` (:func:`stream_rng`), so output does not depend on the order of the stages. Stream ids:
0 and 14 items (here); 1-6, 11, 12 the static variant; 7-10, 13 the item-side files; 20-26
the dynamic variant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Protocol, Tuple

import numpy as np
import pyarrow as pa

from ..errors import ConfigError

N_ITEM_TAGS = 5  # item_tags list length in item_info
LEVELS = 10  # likes_level / views_level take 1..LEVELS
ROW_CHUNK = 500_000  # rows per generated chunk and per parquet row group
TARGET_POSITIVE_RATE = 0.25  # the label offset of every variant is calibrated to this

S_ITEMS = 0  # the stream of build_items
S_ITEMS_VIEW = 14  # the stream of build_items with an item view


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
    # For the item-side bench (bench/worlds.py, with --world): the real data's shape at a size
    # where DIN trains 3 epochs of batch 256 in a few minutes on one CPU thread: many items per
    # row and a steeper popularity tail (most items are seen a few times; real: 3.6M rows over
    # 91,717 items), item_seq 1.67 times the train rows (real: 6M sequences), 10,000 valid
    # and test rows (bench/pipeline.py scores the blend on the test split's hidden labels: on
    # 2,000 rows an AUC's standard error was ~0.009, too coarse for a fraction of the oracle).
    "longtail": SamplePreset(n_items=8_000, n_users=20_000, n_train=80_000, n_valid=10_000,
                             n_test=10_000, n_seq=130_000, n_tags=1_000, n_clusters=20,
                             image_size=32, zipf_exponent=0.8),
}


@dataclass(frozen=True)
class ItemView:
    """How much of what drives clicks the item's content shows (the sample's third axis).

    On the real data the given ``item_emb_d128`` is a PCA of text and image features: it shows
    what an item *is* (its topic and look), not who watches it, while the 6M sequences of
    ``item_seq`` show what users watch together. With an item view, item ``i`` has a category
    ``k_i`` (its tags, title words, text and image) and an audience ``m_i``, one of
    ``communities`` that cut across the categories, and its click-driving latent vector is::

        v_i = [sqrt(content_share) t_i ; sqrt(1 - content_share) h_i]
        t_i = C[k_i] + 0.6 N(0, 1)   (content: category centre + offset, d dims)
        h_i = G[m_i] + 0.6 N(0, 1)   (audience: community centre + offset, d dims)

    so a user's taste match ``<u, v_i>`` weighs the content part by ``content_share`` and the
    audience part by ``1 - content_share``. Users' tastes, histories and item_seq are drawn
    from (category, audience) niches, so co-watching reveals both parts; the content features
    (``txt_emb_BERT``, ``img_emb_CLIPRN50``, the cover images) see ``t_i + content_noise *
    N(0, 1)`` only, and ``item_emb_d128`` is the PCA of the text and image vectors to 128, as
    on the real data.

    Attributes:
        content_share: weight of the content part in the taste match, in [0, 1]; 1: the
            content shows everything that drives clicks but quality.
        content_noise: per-dimension noise of the content part as the content features see
            it, in units of the category centres' spread (the offsets' spread is 0.6).
        communities: number of audiences (at least 1).
        topic_impressions: share of the impressions (split targets) a content-based
            retrieval shows: an item of one of the user's categories, whatever its audience
            (:meth:`ItemWorld.topic_impressions`); the variant's own process draws the rest.
            The content alone cannot tell these from the taste's; co-watching can.
    """

    content_share: float = 1.0
    content_noise: float = 0.0
    communities: int = 8
    topic_impressions: float = 1.0 / 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.content_share) <= 1.0:
            raise ConfigError(f"content_share={self.content_share!r}: expected a number in "
                              "[0, 1]", option="--content-share")
        if not np.isfinite(self.content_noise) or self.content_noise < 0:
            raise ConfigError(f"content_noise={self.content_noise!r}: expected a finite number "
                              ">= 0", option="--content-noise")
        if int(self.communities) != self.communities or self.communities < 1:
            raise ConfigError(f"communities={self.communities!r}: expected an integer >= 1",
                              option="--communities")
        if not 0.0 <= float(self.topic_impressions) <= 1.0:
            raise ConfigError(f"topic_impressions={self.topic_impressions!r}: expected a "
                              "number in [0, 1]", option="--topic-impressions")

    def to_dict(self) -> Dict[str, float]:
        return {"content_share": float(self.content_share),
                "content_noise": float(self.content_noise),
                "communities": int(self.communities),
                "topic_impressions": float(self.topic_impressions)}


# Named item views (``mmctr make-sample --world NAME``); ``classic`` is no view at all.
WORLDS: Dict[str, Optional[ItemView]] = {
    "classic": None,
    # The given embedding is a good view: the content part carries nearly all of the taste
    # match and its features see it with little noise.
    "good": ItemView(content_share=0.9, content_noise=0.2, communities=8),
    # A partial view, as on the real data: half of the taste match is the audience, which only
    # co-watching shows, and the content features are noisy.
    "partial": ItemView(content_share=0.5, content_noise=0.6, communities=8),
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
        view: the item view (None: the classic sample, where the clusters are the categories
            and the content is the latent vector).
        item_category: ``(n+1,)`` category of each item (its tags and title words).
        category_centers: ``(K, d)`` category centres (what the text vector leans on).
        content: ``(n+1, d)`` float32 what the content features see of each item.
        category_order, category_keys: ``cluster_order`` and ``cluster_keys`` of the
            categories.
        cluster_category: ``(K,)`` the category of each cluster.
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
    view: Optional[ItemView] = None
    item_category: Optional[np.ndarray] = None
    category_centers: Optional[np.ndarray] = None
    content: Optional[np.ndarray] = None
    category_order: Optional[np.ndarray] = None
    category_keys: Optional[np.ndarray] = None
    cluster_category: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.item_category is None:
            self.item_category = self.item_cluster
        if self.category_centers is None:
            self.category_centers = self.centers
        if self.content is None:
            self.content = self.item_latent
        if self.category_order is None:
            self.category_order, self.category_keys = self.cluster_order, self.cluster_keys
        if self.cluster_category is None:
            self.cluster_category = np.arange(len(self.centers))

    def popular_items(self, gen: np.random.Generator, n: int) -> np.ndarray:
        """``(n,)`` item ids drawn from the Zipf popularity law."""
        idx = np.searchsorted(self.pop_cdf, gen.random(n), side="right")
        return np.minimum(idx, len(self.pop_cdf) - 1) + 1

    def taste_clusters(self, gen: np.random.Generator, n: int, slots: int) -> np.ndarray:
        """``(n, slots)`` clusters of ``n`` users' tastes, each drawn by popularity mass.

        With an item view a user belongs to one audience: each slot is one of the user's
        categories (drawn by mass) within that audience (a niche of the audience drawn by mass
        where the category has no item of it), so co-watching links a user's categories through
        the audience."""
        k = len(self.cluster_weights)
        if self.view is None:
            return np.minimum(np.searchsorted(np.cumsum(self.cluster_weights),
                                              gen.random((n, slots)), side="right"), k - 1)
        m = int(self.view.communities)
        mass = self.cluster_weights.reshape(-1, m)  # (K categories, M audiences)
        audience = _draw(gen, mass.sum(axis=0), n)  # (n,)
        category = _draw(gen, mass.sum(axis=1), n * slots).reshape(n, slots)
        niche = category * m + audience[:, None]
        empty = mass.reshape(-1)[niche] == 0
        if empty.any():
            rows = mass[category[empty]]  # (e, M) the audiences of each category
            cdf = np.cumsum(rows / rows.sum(axis=1, keepdims=True), axis=1)
            pick = np.minimum((gen.random(len(cdf))[:, None] > cdf).sum(axis=1), m - 1)
            niche[empty] = category[empty] * m + pick
        return niche

    def topic_impressions(self, gen: np.random.Generator, items: np.ndarray,
                          clusters: np.ndarray, cumw: np.ndarray) -> None:
        """With an item view, replace a share ``view.topic_impressions`` of the targets
        ``items`` ``(n,)`` (in place) by what a content-based retrieval shows: an item of one
        of the user's categories (a slot of ``clusters`` ``(n, S)`` drawn by the cumulative
        weights ``cumw`` ``(n, S)``), by popularity within the category, whatever its
        audience. Without a view nothing changes and nothing is drawn."""
        if self.view is None or self.view.topic_impressions == 0:
            return
        topic = np.flatnonzero(gen.random(len(items)) < self.view.topic_impressions)
        w = cumw[topic]
        slot = np.minimum((gen.random(len(topic))[:, None] > w).sum(axis=1), w.shape[1] - 1)
        chosen = clusters[topic, slot]
        items[topic] = self.category_items(gen, self.cluster_category[chosen])

    def cluster_items(self, gen: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        """One item per entry of ``clusters``, by popularity within the cluster."""
        return _draw_within(gen, clusters, self.cluster_order, self.cluster_keys)

    def category_items(self, gen: np.random.Generator, categories: np.ndarray) -> np.ndarray:
        """One item per entry of ``categories``, by popularity within the category."""
        return _draw_within(gen, categories, self.category_order, self.category_keys)


def _draw(gen: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` indexes drawn with probabilities proportional to ``weights``."""
    cdf = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cdf, gen.random(n), side="right"), len(weights) - 1)


def _draw_within(gen: np.random.Generator, groups: np.ndarray, order: np.ndarray,
                 keys: np.ndarray) -> np.ndarray:
    """One item per entry of ``groups`` from a :func:`_popularity_index`."""
    u = 1.0 - gen.random(len(groups))  # (0, 1]
    idx = np.searchsorted(keys, groups + u, side="left")
    return order[np.minimum(idx, len(order) - 1)]


def _popularity_index(group: np.ndarray, pop: np.ndarray, k: int
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """``(order, keys)``: item ids 1..n sorted by group, and group + the within-group
    popularity CDF of each, in ``(g, g+1]``; ``k`` groups, some possibly empty."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    cum = np.cumsum(pop[order])
    starts = np.searchsorted(sorted_group, np.arange(k), side="left")
    ends = np.searchsorted(sorted_group, np.arange(k), side="right")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)[sorted_group]
    total = (cum[ends - 1] - np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0))
    within = (cum - before) / total[sorted_group]
    within[ends - 1] = 1.0
    return order + 1, sorted_group + within


def build_items(preset: SamplePreset, seed: int, view: Optional[ItemView] = None) -> ItemWorld:
    """The items of a sample: clusters, latent vectors, popularity, quality, levels.

    Without ``view`` the clusters are the preset's categories and the content is the latent
    vector. With one, the clusters are (category, audience) niches, ``n_clusters *
    view.communities`` of them, and the latent and content are :class:`ItemView`'s."""
    if view is not None:
        return _build_view_items(preset, seed, view)
    gen = stream_rng(seed, S_ITEMS)
    n, k, d = preset.n_items, preset.n_clusters, preset.latent_dim
    centers = gen.standard_normal((k, d))
    # Uneven cluster sizes; every cluster holds at least one item.
    sizes = gen.dirichlet(np.full(k, 2.0))
    cluster = np.concatenate([np.arange(k), gen.choice(k, size=n - k, p=sizes)])
    gen.shuffle(cluster)
    latent = centers[cluster] + 0.6 * gen.standard_normal((n, d))
    return _item_world(preset, seed, gen, centers, cluster, latent)


def _build_view_items(preset: SamplePreset, seed: int, view: ItemView) -> ItemWorld:
    gen = stream_rng(seed, S_ITEMS_VIEW)
    n, k, d, m = preset.n_items, preset.n_clusters, preset.latent_dim, int(view.communities)
    cat_centers = gen.standard_normal((k, d))
    com_centers = gen.standard_normal((m, d))
    sizes = gen.dirichlet(np.full(k, 2.0))
    category = np.concatenate([np.arange(k), gen.choice(k, size=n - k, p=sizes)])
    gen.shuffle(category)
    community = gen.integers(0, m, size=n)
    t = cat_centers[category] + 0.6 * gen.standard_normal((n, d))
    h = com_centers[community] + 0.6 * gen.standard_normal((n, d))
    content = t + view.content_noise * gen.standard_normal((n, d))
    a, b = np.sqrt(view.content_share), np.sqrt(1.0 - view.content_share)
    niche_cat, niche_com = np.divmod(np.arange(k * m), m)
    centers = np.c_[a * cat_centers[niche_cat], b * com_centers[niche_com]]  # (K*M, 2d)
    world = _item_world(preset, seed, gen, centers, category * m + community, np.c_[a * t, b * h])
    world.view = view
    world.item_category = pad_row(category)
    world.category_order, world.category_keys = _popularity_index(category, world.item_pop[1:],
                                                                  k)
    world.cluster_category = niche_cat
    world.category_centers = cat_centers
    world.content = pad_row(content).astype(np.float32)
    return world


def _item_world(preset: SamplePreset, seed: int, gen: np.random.Generator, centers: np.ndarray,
                cluster: np.ndarray, latent: np.ndarray) -> ItemWorld:
    """Quality, popularity and levels drawn from ``gen``, and the cluster index."""
    n, k = preset.n_items, len(centers)
    quality = gen.standard_normal(n)
    # Zipf popularity over a random rank order, mildly favouring good items.
    rank_score = gen.standard_normal(n) + 0.5 * quality
    rank = np.argsort(np.argsort(-rank_score)) + 1
    pop = rank.astype(np.float64) ** -preset.zipf_exponent
    likes = levels(np.log(pop) + 0.8 * quality + 0.3 * gen.standard_normal(n))
    views = levels(np.log(pop) + 0.3 * gen.standard_normal(n))
    order, keys = _popularity_index(cluster, pop, k)
    pop_cdf = np.cumsum(pop) / pop.sum()
    pop_cdf[-1] = 1.0
    cluster_mass = np.bincount(cluster, weights=pop, minlength=k)
    return ItemWorld(
        preset=preset, seed=seed, centers=centers,
        item_cluster=pad_row(cluster), item_latent=pad_row(latent).astype(np.float32),
        item_pop=pad_row(pop), item_quality=pad_row(quality), item_likes=pad_row(likes),
        item_views=pad_row(views),
        cluster_weights=cluster_mass / cluster_mass.sum(),
        cluster_order=order, cluster_keys=keys, pop_cdf=pop_cdf)


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
