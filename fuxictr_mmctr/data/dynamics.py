"""The ``dynamic`` variant of the sample: clicks that depend on how the history unfolds.

In the ``static`` sample (:mod:`fuxictr_mmctr.data.sample_static`) the label is a fixed taste match
and every history is drawn from that same taste, so the mean of the history is a sufficient
statistic. Here each row gets its own history from a per-user process with the mechanisms of
a short-video log, and the true click probability depends on the *order* of that history:

* **multi-interest users** (``multi_interest``): a user has 1-4 interests (a cluster and a
  vector each, with weights); the target selects the interest that matters: the history
  term is a soft maximum over history items of their similarity to the target, so a target
  matching one interest is not diluted by the others (what target attention exploits);
* **recency** (``recency``): each history item's weight in that soft maximum halves every
  ``3 / recency`` positions back from the most recent item;
* **session drift** (``session``): the history is a chain of sessions (mean length
  ``1 + 7 * session``), each on one interest, inside which a hidden intent vector drifts by a
  random walk and items are picked near it; the intent at the end of the history is part of
  the click probability and many targets are drawn near it;
* **repeat consumption** (``repeat``): history items re-watch an earlier one (recent ones
  more likely) and some targets are history items; a target seen recently is clicked more,
  the effect fading with its age;
* **popularity skew** (``popularity``): Zipf exponent ``1.1 * popularity`` and a pull of
  ``log`` popularity on the click;
* **multimodal signal** (``multimodal_noise``): the 128-d item embeddings, text and image
  vectors are noisy views of the item latent vector *and* of the item's quality (which drives
  clicks); ``multimodal_noise`` scales their noise (0 = exact views).

Every knob is a strength: 0 switches the mechanism off, 1 is the default. The click logit::

    z = A * std(S) + G * std(<intent, v_j> / d) + R * repeat_j + B * q_j + C * b_u
        + D * std(likes) + P * std(log pop_j) + offset
    S = (1 / beta) * log( sum_t r_t exp(beta * <v_t, v_j> / d) / sum_t r_t ),  r_t = 2 ** (-age_t * recency / 3)

with ``age_t`` 0 for the most recent item, ``beta = 4 * multi_interest`` (``beta = 0``: the
recency-weighted mean), ``repeat_j = max_t [h_t == j] 2 ** (-age_t / 10)``, and the offset
calibrated to about 25% positives. :func:`true_logit` computes it for any history, so the
effect of reordering a history on the oracle can be measured.

The true probability of every row is written to ``truth/<split>.parquet`` (never read by
training code) and the oracle's AUC and logloss per split go into the manifest.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from .sample_world import (ItemView, ItemWorld, Rows, SamplePreset, build_items,
                           calibrate_offset, jitter_levels, lognormal_lengths, sigmoid,
                           stream_rng)

logger = logging.getLogger(__name__)

# Stream ids of the dynamic stages (sample_world's table).
_D_USERS, _D_CALIB, _D_TRAIN, _D_VALID, _D_TEST, _D_SEQ, _D_SEQ_USERS = range(20, 27)
SPLIT_STREAMS = {"train": _D_TRAIN, "valid": _D_VALID, "test": _D_TEST}

# Fixed constants of the process (the knobs scale them).
_MAX_INTERESTS = 4
_INTEREST_SPREAD = 0.5  # interest vector = cluster centre + spread * N(0, 1)
_SESSION_START_NOISE = 0.3  # intent at a session start = interest + this * N(0, 1)
_WALK = 0.3  # intent random-walk step per item at session = 1
_CANDIDATES = 12  # items drawn from the cluster; the one nearest the intent (with noise) wins
_SELECT = 8.0  # sharpness of that choice: softmax over SELECT * <v, intent> / d
_P_EXPLORE = 0.08  # history items drawn from the popularity law
_P_REPEAT = 0.15  # history items that re-watch an earlier one (repeat = 1)
_REPEAT_AGE = 0.3  # age of the re-watched item ~ 1 + Geometric(this)
_P_TARGET_REPEAT = 0.12  # targets that are history items (repeat = 1)
_P_TARGET_SESSION = 0.3  # targets drawn near the current intent (session = 1)
_P_TARGET_INTEREST = 0.28  # targets from one of the user's interests; the rest popularity
_HALF_LIFE = 3.0  # recency half-life in history positions at recency = 1
_REPEAT_HALF_LIFE = 10.0
_BETA = 4.0
_ZIPF = 1.1
# Label weights
_A_HISTORY, _G_INTENT, _R_REPEAT, _B_QUALITY, _C_USER, _D_LIKES, _P_POP = (
    1.0, 1.5, 1.5, 0.5, 0.5, 0.25, 0.3)
_QUALITY_IN_EMBEDDING = 1.5  # weight of the quality column appended to the latent for the views
_CALIBRATION_ROWS = 40_000


@dataclass(frozen=True)
class Dynamics:
    """Strengths of the dynamic mechanisms (module docstring); 0 = off, 1 = default.

    Attributes:
        recency: recent history items weigh more (half-life ``3 / recency`` items).
        repeat: share of re-watches in histories and targets, and their effect on the click.
        session: session length, drift of the intent within a session, and its effect.
        multi_interest: several interests per user and how sharply the target selects one.
        popularity: Zipf skew of exposure and popularity's pull on the click.
        multimodal_noise: noise of the item embeddings / text / image vectors (0 = exact).
    """

    recency: float = 1.0
    repeat: float = 1.0
    session: float = 1.0
    multi_interest: float = 1.0
    popularity: float = 1.0
    multimodal_noise: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"dynamics knob {f.name}={value!r}: expected a finite "
                                  "number >= 0", option=f"--{f.name.replace('_', '-')}")

    def to_dict(self) -> Dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def knob_names(cls):
        return [f.name for f in fields(cls)]


# ============================================================================ helpers

def items_preset(preset: SamplePreset, dyn: Dynamics) -> SamplePreset:
    """The preset with the dynamic popularity skew (the item world is the static builder's)."""
    return replace(preset, zipf_exponent=_ZIPF * dyn.popularity)


@dataclass
class DynamicUsers:
    """Per-user hidden state of the dynamic variant (indexed by ``user_id - 1``).

    Attributes:
        clusters: ``(U, K)`` interest clusters (K = 4; unused slots repeat the first).
        vectors: ``(U, K, d)`` float32 interest vectors.
        cumw: ``(U, K)`` cumulative interest weights (last column 1; unused slots weight 0).
        bias: ``(U,)`` user click bias.
        activity_cdf: ``(U,)`` CDF of how often each user appears in a split.
    """

    clusters: np.ndarray
    vectors: np.ndarray
    cumw: np.ndarray
    bias: np.ndarray
    activity_cdf: np.ndarray


def build_users(world: ItemWorld, dyn: Dynamics, n_users: int,
                stream: int = _D_USERS) -> DynamicUsers:
    """Interests, weights, biases and activity of ``n_users`` users."""
    rng = stream_rng(world.seed, stream)
    p_extra = min(0.5 * dyn.multi_interest, 1.0)
    n_int = 1 + rng.binomial(_MAX_INTERESTS - 1, p_extra, size=n_users)  # (U,)
    clusters = world.taste_clusters(rng, n_users, _MAX_INTERESTS)
    vectors = (world.centers[clusters]
               + _INTEREST_SPREAD * rng.standard_normal(clusters.shape + (world.centers.shape[1],)))
    used = np.arange(_MAX_INTERESTS)[None, :] < n_int[:, None]
    weights = rng.gamma(1.0, size=(n_users, _MAX_INTERESTS)) * used
    cumw = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cumw[:, -1] = 1.0
    bias = rng.standard_normal(n_users)
    activity = np.exp(0.8 * rng.standard_normal(n_users))
    activity_cdf = np.cumsum(activity) / activity.sum()
    activity_cdf[-1] = 1.0
    return DynamicUsers(clusters=clusters, vectors=vectors.astype(np.float32), cumw=cumw,
                        bias=bias, activity_cdf=activity_cdf)


def _pick_interest(rng: np.random.Generator, cumw: np.ndarray) -> np.ndarray:
    """One interest slot per row of ``cumw`` ``(n, K)``."""
    return np.minimum((rng.random(len(cumw))[:, None] > cumw).sum(axis=1), cumw.shape[1] - 1)


def _items_near(world: ItemWorld, rng: np.random.Generator, clusters: np.ndarray,
                intent: np.ndarray) -> np.ndarray:
    """One item per row: ``_CANDIDATES`` popularity draws from the row's cluster, the one
    nearest the row's ``intent`` ``(n, d)`` winning a softmax choice."""
    n = len(clusters)
    cand = world.cluster_items(rng, np.repeat(clusters, _CANDIDATES)).reshape(n, _CANDIDATES)
    d = intent.shape[1]
    score = np.einsum("ncd,nd->nc", world.item_latent[cand], intent) * (_SELECT / d)
    score += rng.gumbel(size=score.shape)
    return cand[np.arange(n), score.argmax(axis=1)]


@dataclass
class Histories:
    """Histories of a batch of rows.

    Attributes:
        items: ``(n, L)`` int64 item ids, left-padded with 0, most recent last.
        intent: ``(n, d)`` the hidden intent after the last item.
        interest: ``(n,)`` the interest slot of the last session.
    """

    items: np.ndarray
    intent: np.ndarray
    interest: np.ndarray


def draw_histories(world: ItemWorld, dyn: Dynamics, users: DynamicUsers,
                   rng: np.random.Generator, rows: np.ndarray, lengths: np.ndarray,
                   width: int) -> Histories:
    """Run the session process for each row and keep its last ``lengths[r]`` items.

    Args:
        rows: ``(n,)`` user indexes (``user_id - 1``).
        lengths: ``(n,)`` real history lengths, each in ``[0, width]``.
        width: padded length L.

    Returns:
        :class:`Histories`; positions before ``width - lengths[r]`` are 0.
    """
    n = len(rows)
    d = world.item_latent.shape[1]
    cumw = users.cumw[rows]
    p_switch = 1.0 / (1.0 + 7.0 * dyn.session)
    walk = _WALK * dyn.session
    p_repeat = min(_P_REPEAT * dyn.repeat, 0.5)
    start = width - lengths                                               # first real position
    hist = np.zeros((n, width), dtype=np.int64)
    interest = _pick_interest(rng, cumw)
    intent = (users.vectors[rows, interest]
              + _SESSION_START_NOISE * rng.standard_normal((n, d))).astype(np.float32)
    first = int(start.min()) if n else width
    for t in range(first, width):
        live = t >= start                                                 # (n,)
        new = live & ((t == start) | (rng.random(n) < p_switch))
        if new.any():
            interest[new] = _pick_interest(rng, cumw[new])
            intent[new] = (users.vectors[rows[new], interest[new]]
                           + _SESSION_START_NOISE * rng.standard_normal((int(new.sum()), d)))
        drift = live & ~new
        if walk > 0 and drift.any():
            intent[drift] += walk * rng.standard_normal((int(drift.sum()), d))
        clusters = users.clusters[rows, interest]
        items = _items_near(world, rng, clusters, intent)
        explore = rng.random(n) < _P_EXPLORE
        if explore.any():
            items[explore] = world.popular_items(rng, int(explore.sum()))
        if p_repeat > 0:
            age = rng.geometric(_REPEAT_AGE, size=n)                      # 1, 2, ...
            rep = live & (rng.random(n) < p_repeat) & (t - age >= start)
            items[rep] = hist[np.flatnonzero(rep), t - age[rep]]
        hist[:, t] = np.where(live, items, 0)
    return Histories(items=hist, intent=intent, interest=interest)


def _ages(width: int) -> np.ndarray:
    return np.arange(width - 1, -1, -1, dtype=np.float64)                 # (L,) 0 = last


def history_score(world: ItemWorld, dyn: Dynamics, history: np.ndarray,
                  targets: np.ndarray, chunk: int = 65_536) -> Tuple[np.ndarray, np.ndarray]:
    """The order-aware history terms of the click logit.

    Args:
        history: ``(n, L)`` left-padded item ids, most recent last.
        targets: ``(n,)`` target item ids.

    Returns:
        ``(S, repeat)``: the recency-weighted soft maximum of history-target similarity
        ``(n,)`` (0 for an empty history) and the recency of a re-watch ``(n,)`` in [0, 1].
    """
    n, width = history.shape
    d = world.item_latent.shape[1]
    ages = _ages(width)
    log_r = -ages * dyn.recency / _HALF_LIFE * np.log(2.0)                # (L,)
    beta = _BETA * dyn.multi_interest
    score = np.zeros(n)
    repeat = np.zeros(n)
    for s in range(0, n, chunk):
        h = history[s:s + chunk]
        j = targets[s:s + chunk]
        real = h > 0                                                      # (c, L)
        sim = np.einsum("cld,cd->cl", world.item_latent[h], world.item_latent[j],
                        dtype=np.float64) / d
        logw = np.where(real, log_r[None, :], -np.inf)                    # (c, L)
        lognorm = _logsumexp(logw)                                        # (c,)
        if beta > 0:
            val = (_logsumexp(logw + beta * sim) - lognorm) / beta
        else:
            w = np.exp(logw - lognorm[:, None])
            val = (w * sim).sum(axis=1)
        score[s:s + chunk] = np.where(real.any(axis=1), val, 0.0)
        seen = real & (h == j[:, None])
        rec = np.where(seen, 2.0 ** (-ages[None, :] / _REPEAT_HALF_LIFE), 0.0)
        repeat[s:s + chunk] = rec.max(axis=1)
    return score, repeat


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=1)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - m_safe[:, None]).sum(axis=1)) + m_safe


@dataclass
class LabelModel:
    """Standardisation and offset of the click logit, fixed once per sample by calibration."""

    s_mean: float = 0.0
    s_std: float = 1.0
    i_mean: float = 0.0
    i_std: float = 1.0
    pop_mean: float = 0.0
    pop_std: float = 1.0
    offset: float = 0.0


def true_logit(world: ItemWorld, dyn: Dynamics, users: DynamicUsers, model: LabelModel,
               user_rows: np.ndarray, history: np.ndarray, intent: np.ndarray,
               targets: np.ndarray, likes: np.ndarray) -> np.ndarray:
    """The true click logit of rows (the module docstring's formula, offset included).

    Args:
        user_rows: ``(n,)`` user indexes (``user_id - 1``).
        history: ``(n, L)`` left-padded item ids, most recent last (reorder it to measure
            what order is worth).
        intent: ``(n, d)`` hidden intent at the end of each history.
        targets: ``(n,)`` target item ids.
        likes: ``(n,)`` the row's likes_level (1..10).

    Returns:
        ``(n,)`` float64 logits; ``sigmoid`` of them is the click probability.
    """
    d = world.item_latent.shape[1]
    score, repeat = history_score(world, dyn, history, targets)
    inten = np.einsum("nd,nd->n", intent, world.item_latent[targets], dtype=np.float64) / d
    logpop = np.log(world.item_pop[targets] * world.preset.n_items)
    return (_A_HISTORY * (score - model.s_mean) / model.s_std
            + _G_INTENT * min(dyn.session, 2.0) * (inten - model.i_mean) / model.i_std
            + _R_REPEAT * dyn.repeat * repeat
            + _B_QUALITY * world.item_quality[targets]
            + _C_USER * users.bias[user_rows]
            + _D_LIKES * (likes - 5.5) / 2.87
            + _P_POP * dyn.popularity * (logpop - model.pop_mean) / model.pop_std
            + model.offset)


def draw_rows(world: ItemWorld, dyn: Dynamics, users: DynamicUsers,
              rng: np.random.Generator, n: int) -> Dict[str, np.ndarray]:
    """``n`` rows: user, history, target, likes/views levels and the hidden intent."""
    p = world.preset
    rows = np.minimum(np.searchsorted(users.activity_cdf, rng.random(n), side="right"),
                      len(users.bias) - 1)
    lengths = lognormal_lengths(rng, n, p.hist_median, 0.7, 3, p.seq_len)
    hist = draw_histories(world, dyn, users, rng, rows, lengths, p.seq_len)
    # Targets: a re-watch of a history item, an item near the current intent, an item of one
    # of the user's interests, or a popular item.
    p_rep = min(_P_TARGET_REPEAT * dyn.repeat, 0.4)
    p_sess = _P_TARGET_SESSION * min(dyn.session, 1.0)
    p_int = _P_TARGET_INTEREST + _P_TARGET_SESSION - p_sess
    u = rng.random(n)
    targets = world.popular_items(rng, n)
    sess = (u >= p_rep) & (u < p_rep + p_sess)
    if sess.any():
        idx = np.flatnonzero(sess)
        targets[idx] = _items_near(world, rng, users.clusters[rows[idx], hist.interest[idx]],
                                   hist.intent[idx])
    intr = (u >= p_rep + p_sess) & (u < p_rep + p_sess + p_int)
    if intr.any():
        idx = np.flatnonzero(intr)
        slot = _pick_interest(rng, users.cumw[rows[idx]])
        targets[idx] = _items_near(world, rng, users.clusters[rows[idx], slot],
                                   users.vectors[rows[idx], slot])
    rep = u < p_rep
    if rep.any():
        idx = np.flatnonzero(rep)
        age = rng.geometric(0.15, size=len(idx)) - 1                      # 0 = the last item
        age = np.minimum(age, lengths[idx] - 1)
        targets[idx] = hist.items[idx, p.seq_len - 1 - age]
    world.topic_impressions(rng, targets, users.clusters[rows], users.cumw[rows])
    likes = jitter_levels(rng, world.item_likes[targets])
    views = jitter_levels(rng, world.item_views[targets])
    return {"users": rows, "items": targets, "likes": likes, "views": views,
            "history": hist.items, "intent": hist.intent}


def calibrate(world: ItemWorld, dyn: Dynamics, users: DynamicUsers) -> LabelModel:
    """Standardise the history, intent and popularity terms and set the offset for ~25%
    positives, on calibration rows of their own stream."""
    n = min(_CALIBRATION_ROWS, max(world.preset.n_train, 5_000))
    rows = draw_rows(world, dyn, users, stream_rng(world.seed, _D_CALIB), n)
    d = world.item_latent.shape[1]
    score, _ = history_score(world, dyn, rows["history"], rows["items"])
    inten = np.einsum("nd,nd->n", rows["intent"], world.item_latent[rows["items"]],
                      dtype=np.float64) / d
    logpop = np.log(world.item_pop[rows["items"]] * world.preset.n_items)
    model = LabelModel(s_mean=float(score.mean()), s_std=float(score.std()) or 1.0,
                       i_mean=float(inten.mean()), i_std=float(inten.std()) or 1.0,
                       pop_mean=float(logpop.mean()), pop_std=float(logpop.std()) or 1.0)
    z = true_logit(world, dyn, users, model, rows["users"], rows["history"], rows["intent"],
                   rows["items"], rows["likes"])
    model.offset = calibrate_offset(z)
    logger.debug("dynamic calibration: %s", model)
    return model


# ============================================================================ the variant

@dataclass
class DynamicVariant:
    """The dynamic variant (:class:`~fuxictr_mmctr.data.sample_world.Variant`): the item world
    (built with the dynamic popularity skew), its users and the calibrated label model."""

    world: ItemWorld
    dyn: Dynamics
    users: DynamicUsers
    labels: LabelModel
    _pool: Optional[DynamicUsers] = field(default=None, init=False, repr=False)

    name = "dynamic"
    split_streams = SPLIT_STREAMS
    seq_stream = _D_SEQ

    @property
    def view_noise(self) -> float:
        return self.dyn.multimodal_noise

    def knobs(self) -> Dict[str, float]:
        return self.dyn.to_dict()

    def view_latent(self) -> np.ndarray:
        """``(n, d + 1)`` what the multimodal views see: the item's content (its latent vector
        in the classic world) and its quality."""
        w = self.world
        return np.c_[w.content[1:], _QUALITY_IN_EMBEDDING * w.item_quality[1:]].astype(
            np.float32)

    def draw(self, gen: np.random.Generator, n: int) -> Rows:
        rows = draw_rows(self.world, self.dyn, self.users, gen, n)
        prob = sigmoid(true_logit(self.world, self.dyn, self.users, self.labels, rows["users"],
                                  rows["history"], rows["intent"], rows["items"],
                                  rows["likes"]))
        return Rows(users=rows["users"], history=rows["history"], likes=rows["likes"],
                    views=rows["views"], items=rows["items"], prob=prob)

    def sequences(self, gen: np.random.Generator, owners: np.ndarray,
                  lengths: np.ndarray) -> np.ndarray:
        """The same session process, for the CTR users and as many others."""
        if self._pool is None:
            others = build_users(self.world, self.dyn, self.world.preset.n_users,
                                 stream=_D_SEQ_USERS)
            self._pool = DynamicUsers(
                clusters=np.concatenate([self.users.clusters, others.clusters]),
                vectors=np.concatenate([self.users.vectors, others.vectors]),
                cumw=np.concatenate([self.users.cumw, others.cumw]),
                bias=np.concatenate([self.users.bias, others.bias]),
                activity_cdf=np.zeros(len(self.users.bias) + len(others.bias)))
        return draw_histories(self.world, self.dyn, self._pool, gen, owners, lengths,
                              self.world.preset.seq_len).items


def build(preset: SamplePreset, seed: int, dyn: Dynamics,
          view: Optional[ItemView] = None) -> DynamicVariant:
    """Items (the static builder with the dynamic popularity skew, seen through ``view``, if
    any), users and calibration."""
    world = build_items(items_preset(preset, dyn), seed, view)
    users = build_users(world, dyn, preset.n_users)
    labels = calibrate(world, dyn, users)
    return DynamicVariant(world=world, dyn=dyn, users=users, labels=labels)
