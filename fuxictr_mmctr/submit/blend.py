"""Blend the predictions of several trained experiments into one submission.

Each experiment is scored on the valid and test splits from its best checkpoint; the scores
are averaged (plain or rank average, equal, given or fitted weights) and the test blend is
written as a checked Codabench zip. The validation AUC of every input and of the blend is
reported.

Predictions are cached beside the checkpoint, ``<model_root>/<dataset_id>/<expid>.valid.npy``
and ``.test.npy``, with ``<expid>.predictions.json`` recording the checkpoint and data file
(path, size, modification time) they came from: retraining the experiment, or changing the
split file, invalidates them.

Command line::

    mmctr blend --config config/mmctr_config --expids DIN_sample DCNv2_sample \\
        [--method mean|rank] [--fit-weights | --weights 0.7 0.3] [--task Task2] \\
        [--out submission/blend.zip] [--gpu -1]

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

import argparse
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.schema import LABEL_COLUMN, count_rows, read_split_columns
from ..errors import ConfigError
from ..io import PathLike, atomic_path
from .metrics import auc, logloss
from .submission import TASK_COLUMNS

logger = logging.getLogger(__name__)

METHODS = ("mean", "rank")
OBJECTIVES = ("auc", "logloss")
_CACHE_VERSION = 1


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


def _normalise_weights(weights: Optional[Sequence[float]], n: int) -> np.ndarray:
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
    from scipy.stats import rankdata

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
    w = _normalise_weights(weights, len(arrays))
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


# --------------------------------------------------------------------------------------------
# Predictions of trained experiments, cached beside the checkpoint
# --------------------------------------------------------------------------------------------
def _file_key(path: PathLike) -> dict:
    path = Path(path)
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# Params that cannot change a prediction (where it runs, how much it prints).
_RUNTIME_KEYS = {"gpu", "verbose", "num_workers"}


def _inputs_key(params: dict) -> dict:
    """What a cached prediction depends on besides the checkpoint and the split file: the
    resolved config (e.g. ``max_len``), the item table and the package version."""
    import hashlib

    from .. import __version__

    config = {k: v for k, v in params.items() if k not in _RUNTIME_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    return {"config_sha256": digest.hexdigest(), "item_info": _file_key(params["item_info"]),
            "fuxictr_mmctr": __version__}


def prediction_cache_paths(checkpoint: PathLike) -> Dict[str, Path]:
    """``valid``/``test`` .npy files and the ``json`` key file beside ``checkpoint``.

    Args:
        checkpoint: the model's checkpoint (``model.checkpoint``, ``<expid>.model``).
    """
    checkpoint = Path(checkpoint)
    folder, expid = checkpoint.parent, checkpoint.stem
    return {"valid": folder / f"{expid}.valid.npy", "test": folder / f"{expid}.test.npy",
            "json": folder / f"{expid}.predictions.json"}


def experiment_predictions(config_dir: PathLike, expid: str,
                           splits: Sequence[str] = ("valid", "test"), gpu: int = -1,
                           refresh: bool = False) -> Dict[str, np.ndarray]:
    """Predictions of ``expid``'s best checkpoint for ``splits``, from or into the cache.

    The model is loaded (:func:`fuxictr_mmctr.train.load_trained_model`); a cached split is
    used when its checkpoint (``model.checkpoint``), the split's data file and item_info (path,
    size, modification time), the resolved config and the package version are the ones it was
    computed from; the other splits are scored and cached (atomic writes).

    Args:
        config_dir: the config directory.
        expid: the experiment id.
        splits: which of ``valid``/``test``. Default: both.
        gpu: GPU index, -1 for CPU. Default: -1.
        refresh: ignore the cache. Default: False.

    Returns:
        split -> float64 predictions in file order.

    Raises:
        ConfigError: unknown expid, missing split or checkpoint (naming the expid).
    """
    from ..train import load_trained_model, score_split

    params, feature_map, model = load_trained_model(config_dir, expid, gpu, splits=splits)
    ckpt = Path(model.checkpoint)
    paths = prediction_cache_paths(ckpt)
    try:
        record = json.loads(paths["json"].read_text()) if paths["json"].exists() else {}
    except (OSError, ValueError):
        record = {}
    inputs = _inputs_key(params)
    if record.get("version") != _CACHE_VERSION or record.get("checkpoint") != _file_key(ckpt) \
            or record.get("inputs") != inputs:
        if record and not refresh:
            logger.info("%s: cached predictions are stale (checkpoint, config, item_info or "
                        "package changed); predicting again", expid)
        record = {"version": _CACHE_VERSION, "checkpoint": _file_key(ckpt), "inputs": inputs,
                  "splits": {}}
    result: Dict[str, np.ndarray] = {}
    todo = []
    for split in splits:
        data = params.get(f"{split}_data")
        if not data:
            raise ConfigError(f"expid {expid!r}: dataset {params['dataset_id']} has no "
                              f"{split}_data")
        key = _file_key(data)
        cached = record["splits"].get(split)
        if not refresh and cached == key and paths[split].exists():
            values = np.load(paths[split], allow_pickle=False)
            if values.ndim == 1:
                result[split] = values.astype(np.float64, copy=False)
                logger.info("%s: cached %s predictions %s", expid, split, paths[split])
                continue
        todo.append((split, key))
    if todo:
        for split, key in todo:
            values = np.asarray(score_split(params, feature_map, model, split),
                                dtype=np.float64).reshape(-1)
            with atomic_path(paths[split], suffix=".npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, values)
            record["splits"][split] = key
            result[split] = values
        with atomic_path(paths["json"], suffix=".json") as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return result


def read_labels(path: PathLike) -> np.ndarray:
    """The 0/1 ``label`` column of a split file as ``(N,)`` float64, checked by the schema."""
    return read_split_columns(path, columns=()).columns[LABEL_COLUMN].astype(np.float64)


# --------------------------------------------------------------------------------------------
# Blend trained experiments
# --------------------------------------------------------------------------------------------
@dataclass
class BlendResult:
    """What ``mmctr blend`` did.

    Attributes:
        expids: the blended experiments, in order.
        method: ``mean`` or ``rank``.
        weights: the normalised weight of each expid.
        weights_fitted: whether the weights were fitted on validation (then ``blend_auc`` is
            optimistic).
        valid_auc: expid -> validation AUC.
        valid_logloss: expid -> validation logloss.
        blend_auc: validation AUC of the blend.
        blend_logloss: validation logloss of the blend (NaN for ``rank``).
        zip_path: the submission written (None when ``out`` was None).
        n_valid: rows of the valid split.
        n_test: rows of the test split.
        test_pred: the blended test scores.
    """

    expids: Tuple[str, ...]
    method: str
    weights: np.ndarray
    weights_fitted: bool
    valid_auc: Dict[str, float]
    valid_logloss: Dict[str, float]
    blend_auc: float
    blend_logloss: float
    zip_path: Optional[Path]
    n_valid: int
    n_test: int
    test_pred: np.ndarray = field(repr=False)

    def table(self) -> str:
        """The per-expid and blend figures as a plain-text table."""
        width = max(len("blend"), *(len(e) for e in self.expids))
        lines = [f"{'expid':<{width}}  {'weight':>6}  {'valid AUC':>9}  {'logloss':>8}"]
        for expid, w in zip(self.expids, self.weights):
            lines.append(f"{expid:<{width}}  {w:>6.3f}  {self.valid_auc[expid]:>9.6f}  "
                         f"{self.valid_logloss[expid]:>8.6f}")
        blend_ll = "n/a" if math.isnan(self.blend_logloss) else f"{self.blend_logloss:.6f}"
        note = "  (weights fitted on valid: optimistic)" if self.weights_fitted else ""
        lines.append(f"{'blend':<{width}}  {1.0:>6.3f}  {self.blend_auc:>9.6f}  "
                     f"{blend_ll:>8}{note}")
        return "\n".join(lines)


def _dataset_rows(config_dir: PathLike, expids: Sequence[str], gpu: int) -> Tuple[dict, dict]:
    """Params of each expid; refuse before any prediction when the splits differ in length."""
    from ..train import experiment

    params, rows = {}, {}
    for expid in expids:
        p = experiment.load_params(config_dir, expid, gpu)
        for split in ("valid", "test"):
            if not p.get(f"{split}_data"):
                raise ConfigError(f"expid {expid!r}: dataset {p['dataset_id']} has no "
                                  f"{split}_data")
        params[expid] = p
        rows[expid] = (count_rows(p["valid_data"]), count_rows(p["test_data"]))
    for i, split in enumerate(("valid", "test")):
        counts = {e: r[i] for e, r in rows.items()}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{e}: {n} rows ({params[e][f'{split}_data']})"
                               for e, n in counts.items())
            raise BlendError(f"the experiments do not share the same {split} rows: {detail}")
    return params, rows


def run_blend(config_dir: PathLike, expids: Sequence[str], method: str = "mean",
              weights: Optional[Sequence[float]] = None, fit_weights: bool = False,
              task: str = "Task2", out: Optional[PathLike] = "submission/blend.zip",
              gpu: int = -1, all_columns: bool = False, refresh: bool = False,
              objective: str = "auc") -> BlendResult:
    """Blend trained experiments and write one submission.

    Args:
        config_dir: the config directory holding every expid.
        expids: at least two trained experiments over the same valid/test rows.
        method: ``"mean"`` or ``"rank"``. Default: ``"mean"``.
        weights: fixed weights, one per expid. Default: ``None`` (equal, or fitted).
        fit_weights: fit the weights on validation (see :func:`fit_blend_weights`).
            Default: False.
        task: the submission column. Default: ``"Task2"``.
        out: the zip to write; ``None`` writes nothing. Default: ``"submission/blend.zip"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        all_columns: the four-column submission layout. Default: False.
        refresh: recompute cached predictions. Default: False.
        objective: what ``fit_weights`` optimises, ``"auc"`` or ``"logloss"``. Default: auc.

    Returns:
        A :class:`BlendResult`.

    Raises:
        ConfigError: unknown expid, missing split, untrained experiment.
        BlendError: fewer than two expids, duplicates, different rows, bad weights.
        SubmissionError: the blended test predictions are refused.
    """
    from .submission import write_submission

    expids = tuple(expids)
    if len(expids) < 2:
        raise BlendError(f"blend needs at least two expids, got {list(expids)}")
    duplicates = sorted({e for e in expids if expids.count(e) > 1})
    if duplicates:
        raise BlendError(f"expid(s) given more than once: {duplicates}")
    if method not in METHODS:
        raise BlendError(f"method={method!r}: expected one of {list(METHODS)}")
    if fit_weights and weights is not None:
        raise BlendError("give either weights or fit_weights, not both")
    if fit_weights and objective == "logloss" and method == "rank":
        raise BlendError("a rank blend is not a probability: fit its weights with objective "
                         "'auc'")
    if objective not in OBJECTIVES:
        raise BlendError(f"objective={objective!r}: expected one of {list(OBJECTIVES)}")
    if task not in TASK_COLUMNS:
        raise BlendError(f"task={task!r}: expected one of {list(TASK_COLUMNS)}")
    if weights is not None:
        _normalise_weights(weights, len(expids))  # refuse before any prediction

    params, rows = _dataset_rows(config_dir, expids, gpu)
    n_valid, n_test = rows[expids[0]]
    y_valid = read_labels(params[expids[0]]["valid_data"])
    for expid in expids[1:]:
        if params[expid]["valid_data"] != params[expids[0]]["valid_data"]:
            other = read_labels(params[expid]["valid_data"])
            if not np.array_equal(other, y_valid):
                raise BlendError(f"the valid labels of {expid!r} ({params[expid]['valid_data']}) "
                                 f"differ from those of {expids[0]!r} "
                                 f"({params[expids[0]]['valid_data']}): not the same rows")

    valid, test = {}, {}
    for expid in expids:
        preds = experiment_predictions(config_dir, expid, gpu=gpu, refresh=refresh)
        for split, store, n in (("valid", valid, n_valid), ("test", test, n_test)):
            if len(preds[split]) != n:
                raise BlendError(f"expid {expid!r}: {len(preds[split])} {split} predictions for "
                                 f"{n} rows of {params[expid][f'{split}_data']}")
            store[expid] = preds[split]

    valid_list = [valid[e] for e in expids]
    if fit_weights:
        w = fit_blend_weights(valid_list, y_valid, method=method, objective=objective)
        logger.warning("weights fitted on the validation split: %s. The blend's validation "
                       "AUC is measured on the rows it was fitted on and is optimistic.",
                       dict(zip(expids, np.round(w, 4).tolist())))
    else:
        w = _normalise_weights(weights, len(expids))

    valid_auc = {e: auc(y_valid, valid[e]) for e in expids}
    valid_ll = {e: logloss(y_valid, valid[e]) for e in expids}
    valid_blend = blend_predictions(valid_list, method=method, weights=w)
    blend_auc = auc(y_valid, valid_blend)
    blend_ll = logloss(y_valid, valid_blend) if method == "mean" else float("nan")
    for expid in expids:
        logger.info("%s: valid AUC %.6f, logloss %.6f, weight %.3f", expid, valid_auc[expid],
                    valid_ll[expid], w[expids.index(expid)])
    logger.info("blend (%s): valid AUC %.6f", method, blend_auc)

    test_blend = blend_predictions([test[e] for e in expids], method=method, weights=w)
    zip_path = None
    if out is not None:
        zip_path = write_submission({task: test_blend}, out,
                                    n_rows=count_rows(params[expids[0]]["test_data"]),
                                    all_columns=all_columns,
                                    source=f"blend of {', '.join(expids)}")
    return BlendResult(expids=expids, method=method, weights=w, weights_fitted=fit_weights,
                       valid_auc=valid_auc, valid_logloss=valid_ll, blend_auc=blend_auc,
                       blend_logloss=blend_ll, zip_path=zip_path, n_valid=n_valid,
                       n_test=n_test, test_pred=test_blend)


# --------------------------------------------------------------------------------------------
# CLI: mmctr blend
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mmctr blend``."""
    from ..cli import add_gpu_option

    parser.add_argument("--config", required=True, help="the config directory of the expids")
    parser.add_argument("--expids", nargs="+", required=True,
                        help="two or more trained experiments over the same valid/test rows")
    parser.add_argument("--method", choices=METHODS, default="mean",
                        help="mean of probabilities or mean of normalised ranks (default: mean)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fit-weights", action="store_true",
                       help="fit non-negative weights summing to 1 on validation (optimistic "
                            "validation AUC)")
    group.add_argument("--weights", nargs="+", type=float, default=None,
                       help="fixed weights, one per expid (normalised to sum to 1)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="auc",
                        help="what --fit-weights optimises (default: auc)")
    parser.add_argument("--task", choices=TASK_COLUMNS, default="Task2",
                        help="the prediction.csv column to fill (default: Task2)")
    parser.add_argument("--all-columns", action="store_true",
                        help="write ID,Task1,Task2,Task1&2 with unused columns 0")
    parser.add_argument("--out", default="submission/blend.zip",
                        help="submission zip (default: submission/blend.zip)")
    add_gpu_option(parser)
    parser.add_argument("--refresh", action="store_true",
                        help="recompute predictions even when cached")


def run(args: argparse.Namespace) -> int:
    """Run ``mmctr blend``: 0 on success."""
    result = run_blend(args.config, args.expids, method=args.method, weights=args.weights,
                       fit_weights=args.fit_weights, task=args.task, out=args.out,
                       gpu=args.gpu, all_columns=args.all_columns, refresh=args.refresh,
                       objective=args.objective)
    print(result.table())
    print(f"wrote {result.zip_path} ({result.n_test} rows, task {args.task})")
    return 0


__all__ = ["BlendError", "BlendResult", "blend_predictions", "fit_blend_weights",
           "normalised_rank", "simplex_grid", "experiment_predictions", "run_blend"]
