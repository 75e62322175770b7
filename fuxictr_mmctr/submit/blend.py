"""Blending predictions: the maths of ``mmctr blend`` (the experiments it blends are scored and
cached by :mod:`fuxictr_mmctr.train.blend`).

Methods:

* ``mean``: the weighted mean of the probabilities (a probability again).
* ``rank``: the weighted mean of each input's normalised rank, ``(rank - 1) / (n - 1)`` with
  ties sharing their average rank. Values are in [0, 1] but are not probabilities (a logloss
  of a rank blend means nothing); AUC only depends on the order, and the order is what a rank
  average combines robustly when the inputs are calibrated differently.

Weights fitted with ``--fit-weights`` are the best point of a regular grid on the simplex
(non-negative, summing to 1) for the validation AUC, ties broken towards equal weights:
deterministic, and coarse on purpose. The validation AUC of such a blend is measured on the
rows the weights were fitted on, so it is optimistic.
"""
from __future__ import annotations

import itertools
import logging
import math
from typing import List, Optional, Sequence

import numpy as np
from scipy.stats import rankdata

from ..data.schema import LABEL_COLUMN, read_split_columns
from ..errors import ConfigError
from ..io import PathLike
from .metrics import auc, logloss

logger = logging.getLogger(__name__)

METHODS = ("mean", "rank")
OBJECTIVES = ("auc", "logloss")


class BlendError(ConfigError):
    """Predictions that cannot be blended (row counts, rows, weights); the message says which."""


# --------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------
def _check_preds(preds: Sequence[np.ndarray], names: Optional[Sequence[str]] = None
                 ) -> List[np.ndarray]:
    """Return the predictions as float64 1-d arrays of one length, or raise BlendError."""
    if len(preds) == 0:
        raise BlendError("nothing to blend: no predictions given")
    names = list(names) if names is not None else [f"input {i}" for i in range(len(preds))]
    arrays = []
    for name, pred in zip(names, preds):
        array = np.asarray(pred, dtype=np.float64)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise BlendError(f"{name}: expected a 1-d array of predictions, got shape "
                             f"{array.shape}")
        if not np.isfinite(array).all():
            row = int(np.flatnonzero(~np.isfinite(array))[0])
            raise BlendError(f"{name}: NaN or inf prediction at row {row}")
        arrays.append(array)
    lengths = {name: len(a) for name, a in zip(names, arrays)}
    if len(set(lengths.values())) > 1:
        raise BlendError("predictions have different row counts, so they are not of the same "
                         f"rows: {lengths}")
    return arrays


def normalise_weights(weights: Optional[Sequence[float]], n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size != n:
        raise BlendError(f"{w.size} weight(s) for {n} input(s)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise BlendError(f"weights must be finite and non-negative, got {w.tolist()}")
    if w.sum() <= 0:
        raise BlendError(f"weights sum to {w.sum()}; at least one must be positive")
    return w / w.sum()


def normalised_rank(pred: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1]: ``(rank - 1) / (n - 1)``, ties sharing their average rank.

    Args:
        pred: a 1-d array of scores.

    Returns:
        float64 array of the same length; 0.5 everywhere when ``n == 1`` or all scores tie.
    """
    pred = np.asarray(pred, dtype=np.float64)
    n = pred.size
    if n <= 1:
        return np.full(n, 0.5)
    return (rankdata(pred, method="average") - 1.0) / (n - 1.0)


def blend_predictions(preds: Sequence[np.ndarray], method: str = "mean",
                      weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Blend the predictions of several models for the same rows.

    Args:
        preds: one 1-d array per model, all of the same length (same rows, same order).
        method: ``"mean"`` (weighted mean of the probabilities) or ``"rank"`` (weighted mean of
            the normalised ranks, in [0, 1]). Default: ``"mean"``.
        weights: one non-negative weight per model, normalised to sum to 1. Default: ``None``
            (equal weights).

    Returns:
        float64 1-d array of the blended scores.

    Raises:
        BlendError: no inputs, different lengths, NaN/inf, or bad weights.
        ValueError: unknown method.
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: expected one of {list(METHODS)}")
    arrays = _check_preds(preds)
    w = normalise_weights(weights, len(arrays))
    if method == "rank":
        arrays = [normalised_rank(a) for a in arrays]
    stacked = np.stack(arrays, axis=1)                                        # (N, K)
    blended = stacked @ w                                                     # (N,)
    return np.clip(blended, 0.0, 1.0) if method == "rank" else blended


# --------------------------------------------------------------------------------------------
# Metrics and fitted weights
# --------------------------------------------------------------------------------------------
def simplex_grid(n: int, resolution: int) -> np.ndarray:
    """Every weight vector of ``n`` multiples of ``1/resolution`` summing to 1.

    Args:
        n: number of weights.
        resolution: grid steps per unit (10: multiples of 0.1).

    Returns:
        ``(C(resolution + n - 1, n - 1), n)`` float64 array, in a fixed (lexicographic) order.
    """
    if n < 1 or resolution < 1:
        raise ConfigError(f"n={n} and resolution={resolution} must be positive")
    rows = []
    # stars and bars: choose n-1 bar positions among resolution + n - 1 slots
    for bars in itertools.combinations(range(resolution + n - 1), n - 1):
        edges = (-1,) + bars + (resolution + n - 1,)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n)])
    return np.asarray(rows, dtype=np.float64) / resolution


def _grid_resolution(n: int, resolution: int, max_points: int) -> int:
    """The largest resolution <= ``resolution`` whose grid has at most ``max_points`` points."""
    res = resolution
    while res > 1 and math.comb(res + n - 1, n - 1) > max_points:
        res -= 1
    return res


def fit_blend_weights(valid_preds: Sequence[np.ndarray], y_valid: np.ndarray,
                      method: str = "mean", objective: str = "auc", resolution: int = 10,
                      max_points: int = 5000) -> np.ndarray:
    """Blend weights fitted on validation: non-negative, summing to 1, deterministic.

    Every point of a regular simplex grid (steps of ``1/resolution``) is scored; the best
    wins, ties (within 1e-12) going to the point closest to equal weights. With many inputs
    the resolution is lowered until the grid has at most ``max_points`` points.

    Args:
        valid_preds: one 1-d array of validation predictions per model.
        y_valid: the 0/1 validation labels.
        method: ``"mean"`` or ``"rank"`` (as :func:`blend_predictions`). Default: ``"mean"``.
        objective: ``"auc"`` (maximised) or ``"logloss"`` (minimised; ``mean`` only).
            Default: ``"auc"``.
        resolution: grid steps per unit. Default: 10.
        max_points: most grid points scored. Default: 5000.

    Returns:
        float64 ``(K,)`` weights.

    Raises:
        BlendError: inputs of different lengths, labels of another length, one class only.
        ValueError: unknown method/objective, or ``logloss`` with ``rank``.
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: expected one of {list(METHODS)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r}: expected one of {list(OBJECTIVES)}")
    if objective == "logloss" and method == "rank":
        raise ConfigError("a rank blend is not a probability: fit it with objective='auc'")
    arrays = _check_preds(valid_preds)
    y = np.asarray(y_valid, dtype=np.float64).reshape(-1)
    if y.size != arrays[0].size:
        raise BlendError(f"{y.size} labels for {arrays[0].size} predictions")
    if objective == "auc" and np.unique(y).size < 2:
        raise BlendError("validation labels hold a single class; AUC is undefined")
    k = len(arrays)
    if k == 1:
        return np.ones(1)
    if method == "rank":
        arrays = [normalised_rank(a) for a in arrays]
    stacked = np.stack(arrays, axis=1)                                        # (N, K)
    res = _grid_resolution(k, resolution, max_points)
    grid = simplex_grid(k, res)                                               # (P, K)
    if res < resolution:
        logger.info("weight grid: steps of 1/%d (%d points) for %d inputs", res, len(grid), k)
    if objective == "auc":
        scores = np.array([auc(y, stacked @ w) for w in grid])
    else:
        scores = np.array([-logloss(y, stacked @ w) for w in grid])
    best = scores.max()
    candidates = np.flatnonzero(scores >= best - 1e-12)
    distance = np.linalg.norm(grid[candidates] - 1.0 / k, axis=1)
    return grid[candidates[int(np.argmin(distance))]].copy()


def select_members(valid_preds: Sequence[np.ndarray], y_valid: np.ndarray,
                   method: str = "rank", max_rounds: int = 10,
                   min_gain: float = 1.0e-4) -> np.ndarray:
    """Greedy ensemble selection on validation (Caruana et al., "Ensemble Selection from
    Libraries of Models", ICML 2004): start from the best single input, then add, with
    replacement, the input whose addition most raises the blend's validation AUC, while the
    gain is at least ``min_gain``.

    Unlike :func:`fit_blend_weights`'s grid, its cost grows linearly with the number of inputs,
    and inputs that add nothing keep weight 0. The returned blend's validation AUC is measured
    on the rows it was chosen on, so it is optimistic.

    Args:
        valid_preds: one 1-d array of validation predictions per candidate.
        y_valid: the 0/1 validation labels.
        method: ``"rank"`` or ``"mean"`` (as :func:`blend_predictions`). Default: ``"rank"``.
        max_rounds: most additions after the first member. Default: 10.
        min_gain: the least AUC gain that admits another member. Default: 1e-4.

    Returns:
        float64 ``(K,)`` weights summing to 1 (the share of the picks of each input).
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: expected one of {list(METHODS)}")
    arrays = _check_preds(valid_preds)
    y = np.asarray(y_valid, dtype=np.float64).reshape(-1)
    if y.size != arrays[0].size:
        raise BlendError(f"{y.size} labels for {arrays[0].size} predictions")
    if np.unique(y).size < 2:
        raise BlendError("validation labels hold a single class; AUC is undefined")
    if method == "rank":
        arrays = [normalised_rank(a) for a in arrays]
    stacked = np.stack(arrays, axis=1)                                        # (N, K)
    singles = [auc(y, stacked[:, k]) for k in range(stacked.shape[1])]
    counts = np.zeros(stacked.shape[1])
    counts[int(np.argmax(singles))] = 1
    total, score = stacked @ counts, max(singles)                             # sum of picks
    for _ in range(int(max_rounds)):
        trials = [auc(y, (total + stacked[:, k]) / (counts.sum() + 1))
                  for k in range(stacked.shape[1])]
        best = int(np.argmax(trials))
        if trials[best] < score + min_gain:
            break
        counts[best] += 1
        total, score = total + stacked[:, best], trials[best]
    return counts / counts.sum()


def read_labels(path: PathLike) -> np.ndarray:
    """The 0/1 ``label`` column of a split file as ``(N,)`` float64, checked by the schema."""
    return read_split_columns(path, columns=()).columns[LABEL_COLUMN].astype(np.float64)


__all__ = ["BlendError", "METHODS", "OBJECTIVES", "blend_predictions", "fit_blend_weights",
           "normalised_rank", "simplex_grid", "normalise_weights", "select_members",
           "read_labels"]
