"""Semantic IDs: residual k-means codes of item vectors, and what to say about them.

Residual quantisation (as in RQ-VAE's semantic IDs, and the 1st place's quantized
Transformer-DCN of the MM-CTR challenge, with k-means in place of a trained codebook): level 1
clusters the item vectors into ``codebook`` centroids; level ``l`` clusters what the levels
before it left unexplained, the residual ``x - c_1 - ... - c_{l-1}``. An item's semantic ID is
its ``levels`` cluster indices: items with close vectors share their first codes, and a model
that embeds each code as a categorical feature learns one embedding per cluster, shared by
every item in it (rare items borrow from their cluster).

The k-means is scikit-learn's :class:`~sklearn.cluster.KMeans` (full-batch Lloyd, k-means++
initialisation, seeded). Not ``MiniBatchKMeans``: the item side is small (91,717 items on the
real data: about a minute of Lloyd per level of 64 codes on one busy core), where full batches
reach a lower error and do not depend on a batch order. It runs on one OpenMP thread:
scikit-learn sums the threads' partial centroids in whatever order the threads finish, so more
threads change the last bits of the centroids from run to run and, through them, an occasional
tied assignment; with one thread the same seed gives the same codes, byte for byte.

Everything here is arrays in, arrays out; :mod:`fuxictr_mmctr.data.item_side` reads and
writes the item tables.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from ..errors import ConfigError

logger = logging.getLogger(__name__)

# Bump when a change here gives other codes for the same inputs and settings:
# tables written before (whose reports record the version) are then written again.
METHOD_VERSION = 1


@dataclass(frozen=True)
class QuantizerConfig:
    """Settings of :func:`residual_quantize`.

    Args:
        levels: number of code levels L (the ID's length). Default: 3.
        codebook: centroids per level K; codes are ``0..K-1`` (written as ``1..K``, 0 being
            the padding item's). Default: 64.
        seed: seeds every level's k-means++ initialisation (level ``l`` uses ``seed + l``).
            Default: 2024.
        normalize: L2-normalise the vectors before quantising (cosine geometry). Default:
            False (the vectors as given; Task 1's are unit norm already).
        max_iter: Lloyd iterations per level at most. Default: 300.
        n_init: k-means++ restarts per level; the lowest inertia is kept. Default: 1.
    """

    levels: int = 3
    codebook: int = 64
    seed: int = 2024
    normalize: bool = False
    max_iter: int = 300
    n_init: int = 1

    def check(self, n_items: int) -> None:
        """Raise :class:`ConfigError` naming the option for values that cannot work."""
        if self.levels < 1:
            raise ConfigError(f"levels={self.levels}: at least 1", option="--levels")
        if self.codebook < 2:
            raise ConfigError(f"codebook={self.codebook}: at least 2", option="--codebook")
        if self.codebook > n_items:
            raise ConfigError(f"codebook={self.codebook} is more centroids than the {n_items} "
                              "items to cluster", option="--codebook")
        if self.max_iter < 1 or self.n_init < 1:
            raise ConfigError("max_iter and n_init must be >= 1")


@dataclass
class LevelStats:
    """What one level of codes looks like.

    Attributes:
        level: 1-based level.
        used_codes: distinct codes the items use (at most the codebook size).
        perplexity: ``exp`` of the entropy of code usage: the effective number of codes
            (``used_codes`` when every used code has as many items).
        largest_code_share: share of the items in the most used code.
        mse: mean squared L2 norm of the residual left after this level (the reconstruction
            error of the first ``level`` codes).
        unexplained: ``mse`` over the total variance of the vectors (the mean squared distance
            to their mean): 1.0 is no better than the mean vector, 0.0 is exact.
    """

    level: int
    used_codes: int
    perplexity: float
    largest_code_share: float
    mse: float
    unexplained: float


@dataclass
class Quantized:
    """What :func:`residual_quantize` returns.

    Attributes:
        codes: ``(N, L)`` int, code of each vector at each level, ``0..K-1``.
        centroids: ``L`` arrays ``(K, D)`` float64, the codebooks.
        levels: one :class:`LevelStats` per level.
        config: the settings used.
        scale: ``(N, 1)`` norms divided out before quantising (``normalize``), else None.
    """

    codes: np.ndarray
    centroids: List[np.ndarray]
    levels: List[LevelStats]
    config: QuantizerConfig
    scale: np.ndarray = field(default=None, repr=False)

    def reconstruct(self, levels: int = None) -> np.ndarray:
        """``(N, D)`` the sum of the first ``levels`` codes' centroids (default: all), times
        the divided-out norm when the vectors were normalised."""
        levels = len(self.centroids) if levels is None else int(levels)
        out = np.zeros((self.codes.shape[0], self.centroids[0].shape[1]))
        for level in range(levels):
            out += self.centroids[level][self.codes[:, level]]
        return out if self.scale is None else out * self.scale

    def collisions(self) -> Dict[str, int]:
        """How unique the full IDs are: see :func:`collision_stats`."""
        return collision_stats(self.codes)

    def report(self) -> dict:
        """The figures of a report: settings, per-level usage and error, collisions."""
        return dict(items=int(self.codes.shape[0]), dim=int(self.centroids[0].shape[1]),
                    levels=self.config.levels, codebook=self.config.codebook,
                    seed=self.config.seed, normalize=self.config.normalize,
                    kmeans="sklearn.cluster.KMeans(algorithm='lloyd', init='k-means++', "
                           f"n_init={self.config.n_init}, max_iter={self.config.max_iter}), "
                           "one thread",
                    per_level=[vars(s).copy() for s in self.levels], **self.collisions())


def collision_stats(codes: np.ndarray) -> Dict[str, int]:
    """Items that share their whole ID.

    Args:
        codes: ``(N, L)`` codes, one row per item.

    Returns:
        ``distinct_full_codes`` (distinct rows), ``colliding_items`` (items whose row another
        item shares too), ``collision_groups`` (rows held by more than one item) and
        ``largest_collision_group`` (items holding the most shared row; 1 when all differ).
    """
    _, counts = np.unique(np.asarray(codes), axis=0, return_counts=True)
    shared = counts > 1
    return dict(distinct_full_codes=int(counts.size),
                colliding_items=int(counts[shared].sum()),
                collision_groups=int(shared.sum()),
                largest_collision_group=int(counts.max(initial=0)))


def _usage(codes: np.ndarray, codebook: int):
    counts = np.bincount(codes, minlength=codebook)
    p = counts[counts > 0] / codes.size
    return int((counts > 0).sum()), float(np.exp(-(p * np.log(p)).sum())), float(p.max())


def residual_quantize(vectors: np.ndarray, config: QuantizerConfig = QuantizerConfig()
                      ) -> Quantized:
    """Residual k-means codes of ``vectors``.

    Args:
        vectors: ``(N, D)`` finite floats, one row per item (no padding row).
        config: levels, codebook size, seed (:class:`QuantizerConfig`).

    Returns:
        A :class:`Quantized`: codes ``(N, L)`` in ``0..K-1``, the codebooks, per-level stats.

    Raises:
        ConfigError: a codebook larger than the number of vectors, levels < 1, ...
    """
    from sklearn.cluster import KMeans  # scikit-learn imports in about a second: only here
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConfigError(f"expected (items, dim) vectors, got shape {x.shape}")
    config.check(x.shape[0])
    scale = None
    if config.normalize:
        scale = np.linalg.norm(x, axis=1, keepdims=True)
        scale[scale == 0] = 1.0
        x = x / scale
    total = float(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()) or 1.0
    residual = x.copy()
    codes = np.zeros((x.shape[0], config.levels), dtype=np.int64)
    centroids, stats = [], []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # a deep level of few distinct residuals finds fewer clusters than asked: the report
        # says so (used_codes) instead of a warning per level
        warnings.simplefilter("ignore", ConvergenceWarning)
        for level in range(config.levels):
            km = KMeans(n_clusters=config.codebook, init="k-means++", n_init=config.n_init,
                        max_iter=config.max_iter, random_state=config.seed + level,
                        algorithm="lloyd")
            labels = km.fit_predict(residual)
            centre = km.cluster_centers_.astype(np.float64)
            residual -= centre[labels]
            codes[:, level] = labels
            centroids.append(centre)
            used, perplexity, top = _usage(labels, config.codebook)
            mse = float((residual ** 2).sum(axis=1).mean())
            stats.append(LevelStats(level=level + 1, used_codes=used,
                                    perplexity=round(perplexity, 4),
                                    largest_code_share=round(top, 6), mse=mse,
                                    unexplained=round(mse / total, 6)))
            logger.info("semantic ids level %d/%d: %d of %d codes used (perplexity %.1f), "
                        "unexplained variance %.4f", level + 1, config.levels, used,
                        config.codebook, perplexity, mse / total)
    return Quantized(codes=codes, centroids=centroids, levels=stats, config=config, scale=scale)
