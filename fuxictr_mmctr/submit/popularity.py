"""The Task 2 popularity baseline: predict each item's smoothed click-through rate.

Per item ``i`` with ``clicks[i]`` positives among ``impressions[i]`` rows, the prediction is
``(clicks[i] + a) / (impressions[i] + b)`` (Laplace smoothing, ``(a, b) = (1, 2)`` by default);
items never seen while fitting get the global CTR (all clicks / all rows). Only the ``item_id``
and ``label`` columns are read, and counting is one ``np.bincount`` each, so the full
3.6M-row train split fits in about a second.

Command line::

    mmctr popularity --data-dir data/MicroLens_1M_x1 --out popularity.zip [--include-valid]

With ``--include-valid`` the reported valid AUC still comes from a fit on train only (an AUC
measured on rows the model was fitted on would be meaningless); the submission is then built
from a refit on train + valid.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, DataValidationError
from .submission import TASK_COLUMNS, count_rows, write_submission

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ITEM_COLUMN = "item_id"
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class ItemCTR:
    """Per-item click statistics, arrays indexed by ``item_id`` (index 0 = padding, unused).

    Args:
        clicks: int64 positives per item.
        impressions: int64 rows per item.
        ctr: float64 smoothed CTR per item; the global CTR where ``impressions == 0``.
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


# --------------------------------------------------------------------------------------------
# Reading and validating item_id / label
# --------------------------------------------------------------------------------------------
def _to_table(source, columns: Sequence[str], name: str) -> pa.Table:
    """Read ``columns`` of a parquet path or a pandas/polars/pyarrow frame as a pyarrow Table."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataValidationError(path, "file not found")
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataValidationError(path, f"not a readable parquet file ({exc})") from exc
        for column in columns:
            if column not in schema.names:
                raise DataValidationError(path, f"missing column (has {schema.names})",
                                          column=column)
        return pq.read_table(path, columns=list(columns))
    if isinstance(source, pa.Table):
        table = source
    elif hasattr(source, "to_arrow"):  # polars
        table = source.to_arrow()
    elif hasattr(source, "columns") and hasattr(source, "iloc"):  # pandas
        missing = [c for c in columns if c not in source.columns]
        if missing:
            raise DataValidationError(name, f"missing column (has {list(source.columns)})",
                                      column=missing[0])
        out = {}
        for column in columns:
            try:
                out[column] = pa.array(source[column].to_numpy(), from_pandas=True)
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise DataValidationError(name, f"unreadable values ({exc})",
                                          column=column) from exc
        return pa.table(out)
    else:
        raise TypeError(f"expected a parquet path or a DataFrame, got {type(source).__name__}")
    for column in columns:
        if column not in table.column_names:
            raise DataValidationError(name, f"missing column (has {table.column_names})",
                                      column=column)
    return table.select(list(columns))


def _first_index(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _item_ids(table: pa.Table, name: str) -> np.ndarray:
    """``item_id`` as int64, refusing nulls, non-integer types and ids below 1."""
    column = table.column(ITEM_COLUMN)
    if not pa.types.is_integer(column.type):
        raise DataValidationError(name, f"item ids must be integers, got {column.type}",
                                  column=ITEM_COLUMN)
    if column.null_count:
        mask = column.is_null().to_numpy(zero_copy_only=False)
        raise DataValidationError(name, "null item id", column=ITEM_COLUMN, row=_first_index(mask))
    ids = column.to_numpy().astype(np.int64, copy=False)
    bad = ids < 1
    if bad.any():
        row = _first_index(bad)
        raise DataValidationError(name, f"item id {ids[row].item()} < 1 (0 is the padding id)",
                                  column=ITEM_COLUMN, row=row)
    return ids


def _labels(table: pa.Table, name: str) -> np.ndarray:
    """``label`` as int64 0/1, refusing nulls, non-numeric types and other values."""
    column = table.column(LABEL_COLUMN)
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise DataValidationError(name, f"labels must be 0/1 numbers, got {kind}",
                                  column=LABEL_COLUMN)
    if column.null_count:
        mask = column.is_null().to_numpy(zero_copy_only=False)
        raise DataValidationError(name, "null label", column=LABEL_COLUMN, row=_first_index(mask))
    values = column.to_numpy(zero_copy_only=False)
    bad = (values != 0) & (values != 1)
    if bad.any():
        row = _first_index(bad)
        raise DataValidationError(name, f"label {values[row].item()!r} is not 0 or 1",
                                  column=LABEL_COLUMN, row=row)
    return values.astype(np.int64)


def _describe(source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__} #{index}>"


def _as_sources(frames_or_paths) -> list:
    single = isinstance(frames_or_paths, (str, os.PathLike, pa.Table))
    if single or hasattr(frames_or_paths, "columns"):  # one path or one frame
        return [frames_or_paths]
    return list(frames_or_paths)


def read_item_ids(source, name: Optional[str] = None) -> np.ndarray:
    """Read and validate the ``item_id`` column of a split (a parquet path or a frame).

    Args:
        source: a parquet path, or a pandas / polars / pyarrow table.
        name: how to name ``source`` in errors. Default: ``None`` (its path or type).

    Returns:
        The item ids as an int64 array.

    Raises:
        DataValidationError: missing file or column, non-integer or null ids, ids below 1.
    """
    name = name or _describe(source, 0)
    return _item_ids(_to_table(source, (ITEM_COLUMN,), name), name)


def read_item_labels(source, name: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Read and validate ``item_id`` and ``label`` of a split.

    Args:
        source: a parquet path, or a pandas / polars / pyarrow table.
        name: how to name ``source`` in errors. Default: ``None`` (its path or type).

    Returns:
        ``(item_ids, labels)``, both int64 arrays.

    Raises:
        DataValidationError: missing file or column, bad item ids, labels not 0/1.
    """
    name = name or _describe(source, 0)
    table = _to_table(source, (ITEM_COLUMN, LABEL_COLUMN), name)
    return _item_ids(table, name), _labels(table, name)


# --------------------------------------------------------------------------------------------
# Fit and predict
# --------------------------------------------------------------------------------------------
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
        ValueError: no rows at all, or a smoothing that does not keep the CTR in ``[0, 1]``.
    """
    a, b = (float(smoothing[0]), float(smoothing[1]))
    if not (0.0 <= a <= b) or b <= 0.0:
        raise ConfigError(f"smoothing (a, b) needs 0 <= a <= b and b > 0, got {smoothing}")
    clicks = np.zeros(1, dtype=np.int64)
    impressions = np.zeros(1, dtype=np.int64)
    for index, source in enumerate(_as_sources(frames_or_paths)):
        name = _describe(source, index)
        ids, labels = read_item_labels(source, name=name)
        if ids.size == 0:
            logger.warning("%s has no rows", name)
            continue
        size = max(int(ids.max()) + 1, impressions.size)
        impressions = np.pad(impressions, (0, size - impressions.size))
        clicks = np.pad(clicks, (0, size - clicks.size))
        impressions += np.bincount(ids, minlength=size)
        clicks += np.bincount(ids, weights=labels, minlength=size).astype(np.int64)
    total = int(impressions.sum())
    if total == 0:
        raise ConfigError("no rows to fit the popularity baseline on")
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
        ValueError: non-integer or negative item ids.
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


def _auc(labels: np.ndarray, scores: np.ndarray, name: str) -> float:
    from sklearn.metrics import roc_auc_score

    if np.unique(labels).size < 2:
        logger.warning("%s holds a single class; AUC is undefined", name)
        return float("nan")
    return float(roc_auc_score(labels, scores))


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
        ValueError: an unknown task.
    """
    if task not in TASK_COLUMNS:
        raise ConfigError(f"unknown task {task!r}; expected one of {list(TASK_COLUMNS)}")
    data_dir = Path(data_dir)
    train, valid, test = (data_dir / f"{split}.parquet" for split in ("train", "valid", "test"))
    for path in (train, valid, test):
        if not path.is_file():
            raise DataValidationError(path, "file not found")

    item_ctr = fit_item_ctr([train])
    valid_ids, valid_labels = read_item_labels(valid)
    valid_auc = _auc(valid_labels, predict(item_ctr, valid_ids), str(valid))
    fitted_on: Tuple[str, ...] = ("train",)
    if include_valid:
        logger.info("valid AUC %.6f (fitted on train only); refitting on train + valid for the "
                    "test submission", valid_auc)
        item_ctr = fit_item_ctr([train, valid])
        fitted_on = ("train", "valid")
    else:
        logger.info("valid AUC %.6f (fitted on train)", valid_auc)

    n_test = count_rows(test)
    test_ids = read_item_ids(test)
    if test_ids.size != n_test:  # pragma: no cover (metadata and data disagree)
        raise DataValidationError(test, f"read {test_ids.size} rows, metadata says {n_test}")
    unseen = float(np.mean(predict_seen_mask(item_ctr, test_ids) == 0)) if test_ids.size else 0.0
    logger.info("test: %d rows, %.2f%% of them on items unseen in %s (global CTR used)",
                n_test, 100.0 * unseen, " + ".join(fitted_on))
    zip_path = write_submission({task: predict(item_ctr, test_ids)}, zip_path=out_zip,
                                n_rows=n_test, all_columns=all_columns)
    return PopularityResult(valid_auc=valid_auc, fitted_on=fitted_on, n_test_rows=n_test,
                            zip_path=Path(zip_path), item_ctr=item_ctr)


def predict_seen_mask(item_ctr: ItemCTR, item_ids) -> np.ndarray:
    """1 where an item was seen while fitting, 0 where the global CTR is used."""
    ids = np.asarray(item_ids, dtype=np.int64)
    known = ids < item_ctr.impressions.size
    out = np.zeros(ids.shape, dtype=np.int8)
    out[known] = item_ctr.impressions[ids[known]] > 0
    return out


# --------------------------------------------------------------------------------------------
# CLI: mmctr popularity
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mmctr popularity``."""
    parser.add_argument("--data-dir", required=True, type=Path,
                        help="folder with train.parquet, valid.parquet and test.parquet")
    parser.add_argument("--out", required=True, type=Path, help="submission zip to write")
    parser.add_argument("--include-valid", action="store_true",
                        help="refit on train + valid for the submission "
                             "(the AUC is still from a fit on train only)")
    parser.add_argument("--task", choices=TASK_COLUMNS, default="Task2",
                        help="submission column (default: Task2)")
    parser.add_argument("--all-columns", action="store_true",
                        help="write ID, Task1, Task2, Task1&2 with unused columns set to 0")


def run(args: argparse.Namespace) -> int:
    """Run ``mmctr popularity``; returns 0 on success."""
    result = run_popularity(args.data_dir, out_zip=args.out, include_valid=args.include_valid,
                            task=args.task, all_columns=args.all_columns)
    print(f"valid AUC {result.valid_auc:.6f} (fitted on train); submission fitted on "
          f"{' + '.join(result.fitted_on)}: {result.zip_path}")
    return 0
