"""The Task 2 popularity baseline: predict each item's smoothed click-through rate.

Per item ``i`` with ``clicks[i]`` positives among ``impressions[i]`` rows, the prediction is
``(clicks[i] + a) / (impressions[i] + b)`` (Laplace smoothing, ``(a, b) = (1, 2)`` by default);
items never seen while fitting get the global CTR (all clicks / all rows). Only the ``item_id``
and ``label`` columns are read (:func:`~fuxictr_mmctr.data.schema.read_split_columns`, which
checks them as every reader of the package does), and counting is one ``np.bincount`` each.
The validation AUC is FuxiCTR's, as in a training log.

Command line::

    mmctr popularity --data-dir data/MicroLens_1M_x1 --out popularity.zip [--include-valid]

With ``--include-valid`` the reported valid AUC still comes from a fit on train only (an AUC
measured on rows the model was fitted on would be meaningless); the submission is then built
from a refit on train + valid.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np
import pyarrow as pa

from ..data.schema import LABEL_COLUMN, TARGET_COLUMN, open_parquet, read_split_columns
from ..errors import ConfigError, DataValidationError
from ..io import PathLike
from .metrics import auc
from .submission import TASK_COLUMNS, test_rows, write_submission

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemCTR:
    """Per-item click statistics, arrays indexed by ``item_id`` (index 0 = padding, unused).

    Args:
        clicks: ``(n+1,)`` int64 positives per item.
        impressions: ``(n+1,)`` int64 rows per item.
        ctr: ``(n+1,)`` float64 smoothed CTR per item; the global CTR where
            ``impressions == 0``.
        global_ctr: clicks / rows over everything fitted.
        smoothing: the ``(a, b)`` of ``(clicks + a) / (impressions + b)``.
    """

    clicks: np.ndarray
    impressions: np.ndarray
    ctr: np.ndarray
    global_ctr: float
    smoothing: Tuple[float, float]

    @property
    def n_rows(self) -> int:
        """Number of rows the statistics were fitted on."""
        return int(self.impressions.sum())


@dataclass(frozen=True)
class PopularityResult:
    """What :func:`run_popularity` did.

    Args:
        valid_auc: AUC on valid of a fit on train only (NaN when valid has a single class).
        fitted_on: the splits the submission's statistics were fitted on.
        n_test_rows: rows of test.parquet (= rows of the submission).
        zip_path: the written submission.
        item_ctr: the statistics used for the submission.
    """

    valid_auc: float
    fitted_on: Tuple[str, ...]
    n_test_rows: int
    zip_path: Path
    item_ctr: ItemCTR


def _as_readable(source, index: int):
    """``(source, name)`` for :func:`read_split_columns`: a parquet path as is, a pandas or
    polars frame as a pyarrow table named ``<DataFrame #index>`` in errors."""
    if isinstance(source, (str, os.PathLike)):
        return source, None
    name = f"<{type(source).__name__} #{index}>"
    if isinstance(source, pa.Table):
        return source, name
    try:
        if hasattr(source, "to_arrow"):  # polars
            return source.to_arrow(), name
        if hasattr(source, "iloc"):  # pandas
            return pa.Table.from_pandas(source, preserve_index=False), name
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataValidationError(name, f"not convertible to an arrow table ({exc})") from None
    raise TypeError(f"expected a parquet path or a DataFrame, got {type(source).__name__}")


def fit_item_ctr(frames_or_paths, smoothing: Tuple[float, float] = (1, 2)) -> ItemCTR:
    """Count clicks and impressions per item and smooth them into a CTR.

    Args:
        frames_or_paths: one split or a sequence of splits, each a parquet path or a
            pandas / polars / pyarrow table with ``item_id`` and ``label`` columns.
        smoothing: ``(a, b)`` in ``(clicks + a) / (impressions + b)``. Default: ``(1, 2)``.

    Returns:
        An :class:`ItemCTR`; items never seen get the global CTR.

    Raises:
        DataValidationError: a missing file or column, bad item ids or labels (naming the
            file, column and first offending row).
        ConfigError: a smoothing that does not keep the CTR in ``[0, 1]``.
    """
    a, b = (float(smoothing[0]), float(smoothing[1]))
    if not (0.0 <= a <= b) or b <= 0.0:
        raise ConfigError(f"smoothing (a, b) needs 0 <= a <= b and b > 0, got {smoothing}")
    single = isinstance(frames_or_paths, (str, os.PathLike, pa.Table)) or \
        hasattr(frames_or_paths, "columns")
    sources = [frames_or_paths] if single else list(frames_or_paths)
    clicks = np.zeros(1, dtype=np.int64)
    impressions = np.zeros(1, dtype=np.int64)
    for index, source in enumerate(sources):
        readable, name = _as_readable(source, index)
        split = read_split_columns(readable, name=name).columns
        ids, labels = split[TARGET_COLUMN], split[LABEL_COLUMN]
        size = max(int(ids.max()) + 1, impressions.size)
        impressions = np.pad(impressions, (0, size - impressions.size))
        clicks = np.pad(clicks, (0, size - clicks.size))
        impressions += np.bincount(ids, minlength=size)
        clicks += np.bincount(ids, weights=labels, minlength=size).astype(np.int64)
    total = int(impressions.sum())
    global_ctr = float(clicks.sum()) / total
    seen = impressions > 0
    ctr = np.full(impressions.shape, global_ctr, dtype=np.float64)
    ctr[seen] = (clicks[seen] + a) / (impressions[seen] + b)
    logger.info("fitted item CTR on %d rows, %d items seen, global CTR %.4f",
                total, int(seen.sum()), global_ctr)
    return ItemCTR(clicks=clicks, impressions=impressions, ctr=ctr, global_ctr=global_ctr,
                   smoothing=(a, b))


def predict(item_ctr: ItemCTR, item_ids) -> np.ndarray:
    """Smoothed CTR of each item; the global CTR for items not seen while fitting.

    Args:
        item_ctr: statistics from :func:`fit_item_ctr`.
        item_ids: integer item ids (any shape).

    Returns:
        A float64 array of the same shape as ``item_ids``.

    Raises:
        ConfigError: non-integer or negative item ids.
    """
    ids = np.asarray(item_ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"item ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64, copy=False)
    if ids.size and ids.min() < 0:
        raise ConfigError(f"negative item id {int(ids.min())}")
    out = np.full(ids.shape, item_ctr.global_ctr, dtype=np.float64)
    known = ids < item_ctr.ctr.size
    out[known] = item_ctr.ctr[ids[known]]
    return out


def validation_auc(item_ctr: ItemCTR, valid: PathLike) -> float:
    """AUC on the ``valid`` split of the baseline ``item_ctr`` (fitted on train only).

    Returns:
        The AUC, NaN when valid holds a single class.
    """
    split = read_split_columns(valid).columns
    return auc(split[LABEL_COLUMN], predict(item_ctr, split[TARGET_COLUMN]), name=str(valid))


def run_popularity(data_dir: PathLike, out_zip: PathLike, include_valid: bool = False,
                   task: str = "Task2", all_columns: bool = False) -> PopularityResult:
    """Fit the popularity baseline, report its valid AUC and write a test submission.

    Args:
        data_dir: folder holding ``train.parquet``, ``valid.parquet`` and ``test.parquet``.
        out_zip: submission archive to write.
        include_valid: refit on train + valid for the submission. The reported AUC is
            always that of a fit on train only, measured on valid. Default: ``False``.
        task: the submission column. Default: ``"Task2"``.
        all_columns: four-column submission layout with unused tasks set to 0.
            Default: ``False``.

    Returns:
        A :class:`PopularityResult`.

    Raises:
        DataValidationError: a split is missing or malformed.
        SubmissionError: the predictions do not make a valid submission.
        ConfigError: an unknown task.
    """
    if task not in TASK_COLUMNS:
        raise ConfigError(f"unknown task {task!r}; expected one of {list(TASK_COLUMNS)}")
    data_dir = Path(data_dir)
    train, valid, test = (data_dir / f"{split}.parquet" for split in ("train", "valid", "test"))
    for path in (train, valid, test):
        open_parquet(path)  # every file there and readable before any work
    n_test = test_rows(test)  # and the test file's IDs, if it has some, in row order

    item_ctr = fit_item_ctr(train)
    valid_auc = validation_auc(item_ctr, valid)
    fitted_on: Tuple[str, ...] = ("train",)
    if include_valid:
        logger.info("valid AUC %.6f (fitted on train only); refitting on train + valid for the "
                    "test submission", valid_auc)
        item_ctr = fit_item_ctr([train, valid])
        fitted_on = ("train", "valid")
    else:
        logger.info("valid AUC %.6f (fitted on train)", valid_auc)

    test_ids = read_split_columns(test, require_label=False).columns[TARGET_COLUMN]
    known = test_ids < item_ctr.impressions.size
    unseen = 1.0 - float(np.count_nonzero(item_ctr.impressions[test_ids[known]])) / len(test_ids)
    logger.info("test: %d rows, %.2f%% of them on items unseen in %s (global CTR used)",
                len(test_ids), 100.0 * unseen, " + ".join(fitted_on))
    zip_path = write_submission({task: predict(item_ctr, test_ids)}, zip_path=out_zip,
                                n_rows=n_test, all_columns=all_columns)
    return PopularityResult(valid_auc=valid_auc, fitted_on=fitted_on, n_test_rows=len(test_ids),
                            zip_path=Path(zip_path), item_ctr=item_ctr)
