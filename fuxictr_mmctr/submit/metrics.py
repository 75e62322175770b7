"""Validation figures from FuxiCTR's own ``evaluate_metrics``, so they match the training log.

FuxiCTR logs ``AUC`` (scikit-learn's ``roc_auc_score``) and ``logloss`` (``log_loss`` with
probabilities clipped to ``[1e-7, 1 - 1e-7]``) on the validation split; the popularity baseline
and the blend report theirs with the same function.
"""
from __future__ import annotations

import logging
import warnings
from typing import Dict, Sequence

import numpy as np

from .. import compat  # noqa: F401  (NumPy 2 aliases for FuxiCTR 2.3.7)

from fuxictr.metrics import evaluate_metrics

logger = logging.getLogger(__name__)


def evaluate(y_true, y_pred, metrics: Sequence[str] = ("AUC", "logloss"),
             name: str = "validation") -> Dict[str, float]:
    """FuxiCTR's metrics of predictions against 0/1 labels.

    Args:
        y_true: ``(N,)`` 0/1 labels.
        y_pred: ``(N,)`` scores (probabilities for ``logloss``).
        metrics: FuxiCTR metric names. Default: ``("AUC", "logloss")``.
        name: what the labels are, for the warning below. Default: ``"validation"``.

    Returns:
        metric -> float; every metric NaN (with a warning) when ``y_true`` holds a single
        class, where neither is defined.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if np.unique(y_true).size < 2:
        logger.warning("%s labels hold a single class: %s undefined", name, ", ".join(metrics))
        return {metric: float("nan") for metric in metrics}
    with warnings.catch_warnings():  # FuxiCTR 2.3.7 passes log_loss's deprecated eps
        warnings.filterwarnings("ignore", message="Setting the eps parameter",
                                category=FutureWarning)
        values = evaluate_metrics(y_true, y_pred, list(metrics))
    return {metric: float(value) for metric, value in values.items()}


def auc(y_true, y_score, name: str = "validation") -> float:
    """FuxiCTR's AUC of ``(N,)`` scores; NaN when ``y_true`` holds a single class."""
    return evaluate(y_true, y_score, ("AUC",), name)["AUC"]


def logloss(y_true, y_prob, name: str = "validation") -> float:
    """FuxiCTR's logloss of ``(N,)`` probabilities; NaN when ``y_true`` holds a single class."""
    return evaluate(y_true, y_prob, ("logloss",), name)["logloss"]
