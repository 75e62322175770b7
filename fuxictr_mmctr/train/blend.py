"""Blend trained experiments into one submission: ``mmctr blend``.

Each experiment is scored on the valid and test splits from its best checkpoint; the scores
are averaged (:mod:`fuxictr_mmctr.submit.blend`: plain or rank average, equal, given or fitted
weights) and the test blend is written as a checked Codabench zip. The validation AUC of every
input and of the blend is reported.

Predictions are cached beside the checkpoint, ``<model_root>/<dataset_id>/<expid>.valid.npy``
and ``.test.npy``, with ``<expid>.predictions.json`` recording what they came from: the
checkpoint's digest, what it was trained on (:func:`fuxictr_mmctr.train.artifacts.model_inputs`,
the definition prediction checks too), the package version and the split file's digest.
Retraining, another split file or package invalidates them; an unreadable cache file is
recomputed.

Command line::

    mmctr blend --config config/mmctr_config --expids DIN_sample DCNv2_sample \\
        [--method mean|rank] [--fit-weights | --weights 0.7 0.3] [--task Task2] \\
        [--out submission/blend.zip] [--gpu -1]
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..data.schema import (LABEL_COLUMN, TARGET_COLUMN, USER_COLUMN, count_rows,
                            read_split_columns)
from ..errors import ConfigError
from ..io import PathLike, atomic_path, file_digest
from ..submit.blend import (METHODS, OBJECTIVES, BlendError, blend_predictions,
                            fit_blend_weights, normalise_weights, read_labels)
from ..submit.metrics import auc, logloss
from ..submit.submission import TASK_COLUMNS, test_rows, write_submission
from . import artifacts, experiment, preflight
from .experiment import load_trained_model, score_split

logger = logging.getLogger(__name__)

_CACHE_VERSION = 2


# --------------------------------------------------------------------------------------------
# Predictions of trained experiments, cached beside the checkpoint
# --------------------------------------------------------------------------------------------
def _cache_key(record: Optional[artifacts.CheckpointRecord], checkpoint: Path,
               params: dict) -> dict:
    """What cached predictions depend on besides the split file: the weights and what they
    were trained on (:func:`fuxictr_mmctr.train.artifacts.model_inputs`, the definition
    prediction checks too) and the package version."""
    return {"checkpoint_sha256": record.sha256 if record else file_digest(checkpoint),
            "inputs": artifacts.model_inputs(params), "fuxictr_mmctr": __version__}


def _split_key(path: PathLike) -> dict:
    return {"path": str(Path(path).resolve()), "sha256": file_digest(path)}


def _read_cached(path: Path) -> Optional[np.ndarray]:
    """A cached prediction file, or None when it is missing or unreadable (then recomputed)."""
    if not path.exists():
        return None
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated or not a .npy
        logger.warning("%s: unreadable cached predictions (%s); predicting again", path, exc)
        return None
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.floating):
        logger.warning("%s: cached predictions of shape %s, dtype %s; predicting again", path,
                       values.shape, values.dtype)
        return None
    return values.astype(np.float64, copy=False)


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

    The model is loaded (:func:`fuxictr_mmctr.train.load_trained_model`, which refuses weights
    trained on other inputs than the config gives now); a cached split is used when the
    checkpoint's digest, its inputs (:func:`fuxictr_mmctr.train.artifacts.model_inputs`), the
    package version and the split file's digest are the ones it was computed from, and the
    cache file reads back; the other splits are scored and cached (atomic writes).

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
    params, feature_map, model = load_trained_model(config_dir, expid, gpu, splits=splits)
    ckpt = Path(model.checkpoint)
    paths = prediction_cache_paths(ckpt)
    try:
        record = json.loads(paths["json"].read_text()) if paths["json"].exists() else {}
        if not isinstance(record, dict) or not isinstance(record.get("splits", {}), dict):
            raise ValueError("not a cache record")
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable prediction cache record (%s); predicting again",
                       paths["json"], exc)
        record = {}
    key = _cache_key(artifacts.checkpoint_record(ckpt), ckpt, params)
    if record.get("version") != _CACHE_VERSION or record.get("key") != key:
        if record and not refresh:
            logger.info("%s: cached predictions are stale (checkpoint, config, item files or "
                        "package changed); predicting again", expid)
        record = {"version": _CACHE_VERSION, "key": key, "splits": {}}
    result: Dict[str, np.ndarray] = {}
    todo = []
    for split in splits:
        data = params.get(f"{split}_data")
        if not data:
            raise ConfigError(f"expid {expid!r}: dataset {params['dataset_id']} has no "
                              f"{split}_data")
        split_key = _split_key(data)
        if not refresh and record["splits"].get(split) == split_key:
            values = _read_cached(paths[split])
            if values is not None:
                result[split] = values
                logger.info("%s: cached %s predictions %s", expid, split, paths[split])
                continue
        todo.append((split, split_key))
    if todo:
        for split, split_key in todo:
            values = np.asarray(score_split(params, feature_map, model, split),
                                dtype=np.float64).reshape(-1)
            with atomic_path(paths[split], suffix=".npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, values)
            record["splits"][split] = split_key
            result[split] = values
        with atomic_path(paths["json"], suffix=".json") as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return result


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
    params, rows = {}, {}
    for expid in expids:
        p = experiment.load_params(config_dir, expid, gpu)
        for split in ("valid", "test"):
            if not p.get(f"{split}_data"):
                raise ConfigError(f"expid {expid!r}: dataset {p['dataset_id']} has no "
                                  f"{split}_data")
        params[expid] = p
        rows[expid] = (count_rows(p["valid_data"]), test_rows(p["test_data"]))
    for i, split in enumerate(("valid", "test")):
        counts = {e: r[i] for e, r in rows.items()}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{e}: {n} rows ({params[e][f'{split}_data']})"
                               for e, n in counts.items())
            raise BlendError(f"the experiments do not share the same {split} rows: {detail}")
        _check_same_rows(expids, params, split)
    return params, rows


def _row_identity(path, split: str) -> Dict[str, np.ndarray]:
    """The columns that say which row is which: user and target item, and the label of valid
    (the one a blend is scored and fitted on)."""
    labelled = split == "valid"
    arrays = read_split_columns(path, columns=(USER_COLUMN, TARGET_COLUMN),
                                require_label=labelled)
    keep = (USER_COLUMN, TARGET_COLUMN) + ((LABEL_COLUMN,) if labelled else ())
    return {k: v for k, v in arrays.columns.items() if k in keep}


def _check_same_rows(expids: Sequence[str], params: dict, split: str) -> None:
    """Refuse experiments whose ``split`` files differ in content and do not hold the same rows
    in the same order (the submission ID is the row order: averaging them would mix rows)."""
    key = f"{split}_data"
    first = expids[0]
    digests = {e: file_digest(params[e][key]) for e in expids}
    reference = None
    for expid in expids[1:]:
        if digests[expid] == digests[first]:
            continue
        if reference is None:
            reference = _row_identity(params[first][key], split)
        other = _row_identity(params[expid][key], split)
        for column in sorted(set(reference) | set(other)):
            a, b = reference.get(column), other.get(column)
            if a is None or b is None:
                continue
            wrong = a != b
            if wrong.any():
                row = int(np.flatnonzero(wrong)[0])
                raise BlendError(f"the {split} rows of {expid!r} ({params[expid][key]}) are not "
                                 f"those of {first!r} ({params[first][key]}) in the same order: "
                                 f"column '{column}' differs first at row {row} ({b[row]} vs "
                                 f"{a[row]})")


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
        normalise_weights(weights, len(expids))  # refuse before any prediction

    if out is not None:
        preflight.check_prediction_run(out)  # before any experiment is scored
    params, rows = _dataset_rows(config_dir, expids, gpu)
    n_valid, n_test = rows[expids[0]]
    y_valid = read_labels(params[expids[0]]["valid_data"])

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
        w = normalise_weights(weights, len(expids))

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
                                    n_rows=test_rows(params[expids[0]]["test_data"]),
                                    all_columns=all_columns,
                                    source=f"blend of {', '.join(expids)}")
    return BlendResult(expids=expids, method=method, weights=w, weights_fitted=fit_weights,
                       valid_auc=valid_auc, valid_logloss=valid_ll, blend_auc=blend_auc,
                       blend_logloss=blend_ll, zip_path=zip_path, n_valid=n_valid,
                       n_test=n_test, test_pred=test_blend)
