"""The ``static`` variant of the sample: a fixed taste match.

Users have a taste (a mixture of 1-3 clusters) ``u`` and a bias ``b_u``. Each CTR user has one
fixed history drawn from the taste (length 3..100); the taste itself is never written. A row is
a (user, target) pair, the target drawn from the taste or from the popularity law::

    label ~ Bernoulli(sigmoid(1.6 z(<u, v_i>) + 0.6 q_i + 0.6 b_u + 0.25 z(likes) + offset))

with the offset calibrated to about 25% positives. A model has to infer the taste from the
history (and the item side) to get beyond the popularity/quality part of the signal; the
history's mean is a sufficient statistic. With an item view, a share of the targets are topic
impressions (:meth:`~fuxictr_mmctr.data.sample_world.ItemWorld.topic_impressions`).
item_seq.parquet holds sequences drawn the same way for the CTR users and as many others.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .sample_world import (ROW_CHUNK, ItemView, ItemWorld, Rows, SamplePreset,
                           build_items, calibrate_offset, jitter_levels, left_pad,
                           lognormal_lengths, sigmoid, stream_rng)

logger = logging.getLogger(__name__)

# Label model: logit = A * z(<u, v>) + B * quality + C * user_bias + D * z(likes_level) + offset
_A_TASTE, _B_QUALITY, _C_USER, _D_LIKES = 1.6, 0.6, 0.6, 0.25
_P_TARGET_FROM_TASTE = 0.5  # CTR targets: from the user's taste, else from the popularity law
_P_EXPLORE = 0.1  # history / sequence items drawn from the popularity law instead of the taste
_CALIBRATION_ROWS = 200_000

# Stream ids (sample_world's table): users, histories, calibration, the splits, item_seq.
_S_USERS, _S_HIST, _S_CALIB, _S_TRAIN, _S_VALID, _S_TEST = range(1, 7)
_S_SEQ, _S_SEQ_USERS = 11, 12


def tastes(gen: np.random.Generator, n: int, world: ItemWorld
           ) -> Tuple[np.ndarray, np.ndarray]:
    """Taste mixtures of ``n`` users: ``(n, 3)`` cluster ids and cumulative weights."""
    clusters = world.taste_clusters(gen, n, 3)
    n_comp = gen.choice([1, 2, 3], size=n, p=[0.4, 0.4, 0.2])
    weights = gen.gamma(2.0, size=(n, 3)) * (np.arange(3)[None, :] < n_comp[:, None])
    cumw = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cumw[:, -1] = 1.0
    return clusters, cumw


def taste_items(world: ItemWorld, gen: np.random.Generator, clusters: np.ndarray,
                cumw: np.ndarray, explore: float) -> np.ndarray:
    """One item per row of a taste mixture.

    Args:
        clusters: ``(N, 3)`` cluster ids of each row's taste.
        cumw: ``(N, 3)`` cumulative mixture weights (last column 1).
        explore: probability of a popularity draw instead of a taste draw.

    Returns:
        ``(N,)`` item ids.
    """
    n = len(clusters)
    comp = np.minimum((gen.random(n)[:, None] > cumw).sum(axis=1), cumw.shape[1] - 1)
    items = world.cluster_items(gen, clusters[np.arange(n), comp])
    wander = gen.random(n) < explore
    items[wander] = world.popular_items(gen, int(wander.sum()))
    return items


def taste_sequences(world: ItemWorld, gen: np.random.Generator, clusters: np.ndarray,
                    cumw: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(N, L)`` left-padded sequences, row r holding ``lengths[r]`` taste draws."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    flat = taste_items(world, gen, clusters[rows], cumw[rows], explore=_P_EXPLORE)
    return left_pad(lengths, flat, world.preset.seq_len)


@dataclass
class StaticUsers:
    """The CTR users of the static variant (indexed by ``user_id - 1``).

    Attributes:
        clusters: ``(U, 3)`` taste clusters.
        cumw: ``(U, 3)`` cumulative mixture weights.
        taste: ``(U, d)`` float32 taste vectors.
        bias: ``(U,)`` click bias.
        activity_cdf: ``(U,)`` CDF of how often each user appears in a split.
        history: ``(U, L)`` int32 fixed history, left-padded.
    """

    clusters: np.ndarray
    cumw: np.ndarray
    taste: np.ndarray
    bias: np.ndarray
    activity_cdf: np.ndarray
    history: np.ndarray


def build_users(world: ItemWorld) -> StaticUsers:
    """CTR users: tastes, biases, activity and one fixed history each."""
    p = world.preset
    gen = stream_rng(world.seed, _S_USERS)
    clusters, cumw = tastes(gen, p.n_users, world)
    weights = np.diff(np.concatenate([np.zeros((p.n_users, 1)), cumw], axis=1), axis=1)
    taste = np.einsum("uc,ucd->ud", weights, world.centers[clusters])
    taste += 0.3 * gen.standard_normal(taste.shape)
    bias = gen.standard_normal(p.n_users)
    activity = np.exp(0.8 * gen.standard_normal(p.n_users))
    activity_cdf = np.cumsum(activity) / activity.sum()
    activity_cdf[-1] = 1.0
    history = np.zeros((p.n_users, p.seq_len), dtype=np.int32)
    for c, start in enumerate(range(0, p.n_users, ROW_CHUNK)):
        stop = min(start + ROW_CHUNK, p.n_users)
        hrng = stream_rng(world.seed, _S_HIST, c)
        lengths = lognormal_lengths(hrng, stop - start, p.hist_median, 0.7, 3, p.seq_len)
        history[start:stop] = taste_sequences(world, hrng, clusters[start:stop],
                                              cumw[start:stop], lengths)
    return StaticUsers(clusters=clusters, cumw=cumw, taste=taste.astype(np.float32), bias=bias,
                       activity_cdf=activity_cdf, history=history)


@dataclass
class StaticLabels:
    """Standardisation of the taste match and the offset, fixed by calibration."""

    dot_mean: float = 0.0
    dot_std: float = 1.0
    offset: float = 0.0


class StaticVariant:
    """The static variant (:class:`~fuxictr_mmctr.data.sample_world.Variant`).

    Args:
        world: the item world.
        users: its CTR users.
        labels: the calibrated label model.
    """

    name = "static"
    split_streams = {"train": _S_TRAIN, "valid": _S_VALID, "test": _S_TEST}
    seq_stream = _S_SEQ
    view_noise = 1.0

    def __init__(self, world: ItemWorld, users: StaticUsers, labels: StaticLabels):
        self.world = world
        self.users = users
        self.labels = labels
        self._pool: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @classmethod
    def build(cls, preset: SamplePreset, seed: int,
              view: Optional[ItemView] = None) -> "StaticVariant":
        """Items (seen through ``view``, if any), users and the calibrated label model."""
        world = build_items(preset, seed, view)
        variant = cls(world, build_users(world), StaticLabels())
        variant._calibrate()
        return variant

    def knobs(self) -> Dict[str, float]:
        return {}

    def view_latent(self) -> Optional[np.ndarray]:
        return None

    def _draw(self, gen: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
        """``n`` (user, target) rows with their features and the taste match."""
        world, users = self.world, self.users
        rows = np.minimum(np.searchsorted(users.activity_cdf, gen.random(n), side="right"),
                          world.preset.n_users - 1)
        from_taste = gen.random(n) < _P_TARGET_FROM_TASTE
        items = world.popular_items(gen, n)
        items[from_taste] = taste_items(world, gen, users.clusters[rows[from_taste]],
                                        users.cumw[rows[from_taste]], explore=0.0)
        world.topic_impressions(gen, items, users.clusters[rows], users.cumw[rows])
        likes = jitter_levels(gen, world.item_likes[items])
        views = jitter_levels(gen, world.item_views[items])
        dot = np.einsum("nd,nd->n", users.taste[rows], world.item_latent[items])
        return {"users": rows, "items": items, "likes": likes, "views": views, "dot": dot}

    def _logit(self, rows: Dict[str, np.ndarray]) -> np.ndarray:
        """The click logit without the offset."""
        lab = self.labels
        return (_A_TASTE * (rows["dot"] - lab.dot_mean) / lab.dot_std
                + _B_QUALITY * self.world.item_quality[rows["items"]]
                + _C_USER * self.users.bias[rows["users"]]
                + _D_LIKES * (rows["likes"] - 5.5) / 2.87)

    def _calibrate(self) -> None:
        """Fix the taste standardisation and the offset giving ~25% positives."""
        rows = self._draw(stream_rng(self.world.seed, _S_CALIB), _CALIBRATION_ROWS)
        self.labels.dot_mean = float(rows["dot"].mean())
        self.labels.dot_std = float(rows["dot"].std()) or 1.0
        self.labels.offset = calibrate_offset(self._logit(rows))
        logger.debug("calibration: %s", self.labels)

    def draw(self, gen: np.random.Generator, n: int) -> Rows:
        rows = self._draw(gen, n)
        prob = sigmoid(self._logit(rows) + self.labels.offset)
        return Rows(users=rows["users"], history=self.users.history[rows["users"]],
                    likes=rows["likes"], views=rows["views"], items=rows["items"], prob=prob)

    def sequences(self, gen: np.random.Generator, owners: np.ndarray,
                  lengths: np.ndarray) -> np.ndarray:
        """Taste draws of the CTR users and of as many other users (own tastes)."""
        if self._pool is None:
            extra_clusters, extra_cumw = tastes(stream_rng(self.world.seed, _S_SEQ_USERS),
                                                self.world.preset.n_users, self.world)
            self._pool = (np.concatenate([self.users.clusters, extra_clusters]),
                          np.concatenate([self.users.cumw, extra_cumw]))
        clusters, cumw = self._pool
        return taste_sequences(self.world, gen, clusters[owners], cumw[owners], lengths)
