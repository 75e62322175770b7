"""Codabench submissions for the WWW 2025 MM-CTR challenge: build, validate, zip and check.

A submission is a zip archive holding one file, ``prediction.csv``, at its root (no folder)::

    ID,Task2
    0,0.8123...
    1,0.0417...

``ID`` is the row order of ``test.parquet`` (``0..n-1``; the test file has no ID column) and
each task column (``Task1``, ``Task2``, ``Task1&2``) holds one probability in ``[0, 1]`` per test
row. The four-column layout ``ID, Task1, Task2, Task1&2`` with unused columns set to 0 is also
accepted by the challenge.

Everything that writes a submission validates it first and writes atomically: the zip is built
in a temporary file beside the target and renamed onto it, so a refused or interrupted write
never leaves a half-written archive and never touches an existing one.

Command line::

    mmctr submit --pred test_pred.npy --test data/MicroLens_1M_x1/test.parquet --out submission.zip
    mmctr submit --pred preds.csv --pred-column y_pred --task Task1 --all-columns \\
        --test data/MicroLens_1M_x1/test.parquet --out submission.zip
"""
from __future__ import annotations

import csv
import io
import logging
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Tuple

import numpy as np
import pandas as pd

from .. import compat
from ..data.schema import count_rows, open_parquet
from ..errors import DataValidationError
from ..io import PathLike, atomic_path

logger = logging.getLogger(__name__)


ID_COLUMN = "ID"
TASK_COLUMNS = ("Task1", "Task2", "Task1&2")
CSV_NAME = "prediction.csv"
# A fixed timestamp makes the archive a pure function of its content (reproducible bytes).
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class SubmissionError(DataValidationError):
    """A submission (or the predictions it is built from) cannot be accepted.

    The message names the file and, where it applies, the column and the first offending
    row (0-based, i.e. the submission ``ID``). ``source`` is the file (or a description of the
    object) at fault.
    """

    @property
    def source(self) -> str:
        return self.path


@dataclass(frozen=True)
class SubmissionReport:
    """What :func:`check_submission_zip` found in an accepted archive.

    Args:
        path: the zip archive.
        n_rows: number of prediction rows (equals the number of test rows).
        columns: the csv header, ``ID`` first.
        extra_entries: other archive members besides ``prediction.csv`` (accepted, but
            logged as a warning). Default: ``()``.
    """

    path: Path
    n_rows: int
    columns: Tuple[str, ...]
    extra_entries: Tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# Build and validate
# --------------------------------------------------------------------------------------------
def build_submission(predictions: Mapping[str, np.ndarray], n_rows: int,
                     all_columns: bool = False, source: str = "predictions") -> pd.DataFrame:
    """Assemble the submission table and validate it.

    Args:
        predictions: task column name (one of :data:`TASK_COLUMNS`) -> 1-d array of
            probabilities, one per test row in test order.
        n_rows: number of rows of ``test.parquet`` (see :func:`count_rows`).
        all_columns: write the four-column layout ``ID, Task1, Task2, Task1&2`` with the
            tasks not in ``predictions`` set to 0. Default: ``False`` (``ID`` plus the given
            task columns only).
        source: how to name the predictions in error messages (e.g. their file).
            Default: ``"predictions"``.

    Returns:
        A DataFrame with an int64 ``ID`` column ``0..n_rows-1`` and float64 task columns in
        :data:`TASK_COLUMNS` order.

    Raises:
        SubmissionError: an unknown task name, an array that is not 1-d, or any problem
            :func:`validate_submission` refuses.
    """
    if not predictions:
        raise SubmissionError(source, "no task column given; expected some of "
                                      f"{list(TASK_COLUMNS)}")
    unknown = [name for name in predictions if name not in TASK_COLUMNS]
    if unknown:
        raise SubmissionError(source, f"unknown task column(s) {unknown}; expected some of "
                                      f"{list(TASK_COLUMNS)}")
    n_rows = int(n_rows)
    data = {ID_COLUMN: np.arange(n_rows, dtype=np.int64)}
    for name in TASK_COLUMNS:
        if name in predictions:
            values = np.asarray(predictions[name])
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            if values.ndim != 1:
                raise SubmissionError(source, f"expected a 1-d array, got shape {values.shape}",
                                      column=name)
            if values.shape[0] != n_rows:
                raise SubmissionError(source, f"{values.shape[0]} predictions for {n_rows} test "
                                              "rows", column=name)
            check_real_dtype(values.dtype, source, column=name)
            data[name] = values.astype(np.float64, copy=False)
        elif all_columns:
            data[name] = np.zeros(n_rows, dtype=np.float64)
    df = pd.DataFrame(data)
    validate_submission(df, n_rows=n_rows, source=source)
    return df


def check_real_dtype(dtype, source, column: Optional[str] = None) -> None:
    """Refuse predictions that are not real numbers: complex (casting drops the imaginary part
    silently), boolean (hard labels, not probabilities), strings, objects, dates.

    Raises:
        SubmissionError: naming ``source``, ``column`` and the dtype.
    """
    dtype = np.dtype(dtype) if not isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise SubmissionError(source, f"boolean predictions (dtype {dtype}); write probabilities "
                                      "in [0, 1]", column=column)
    if pd.api.types.is_complex_dtype(dtype):
        raise SubmissionError(source, f"complex predictions (dtype {dtype}); write real "
                                      "probabilities in [0, 1]", column=column)
    if not (pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype)):
        raise SubmissionError(source, f"predictions are not numeric (dtype {dtype})",
                              column=column)


def _plain(value):
    """A NumPy scalar as the Python value, so messages read ``1.5`` not ``np.float64(1.5)``."""
    return value.item() if isinstance(value, np.generic) else value


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def validate_submission(df: pd.DataFrame, n_rows: int, source: str = CSV_NAME) -> None:
    """Refuse a submission table the challenge would reject or mis-score.

    Checks, in order: duplicate columns, unknown columns, ``ID`` present and first, at least one
    task column, the row count, ``ID`` integer and exactly ``0..n_rows-1`` in order, every task value
    numeric, finite and within ``[0, 1]``.

    Args:
        df: the table (``ID`` plus task columns).
        n_rows: number of rows of ``test.parquet``.
        source: the name used in error messages. Default: ``"prediction.csv"``.

    Raises:
        SubmissionError: naming ``source``, the column and the first offending row.
    """
    columns = [str(c) for c in df.columns]
    seen = set()
    for name in columns:
        if name in seen:
            raise SubmissionError(source, "duplicate column", column=name)
        seen.add(name)
    allowed = (ID_COLUMN,) + TASK_COLUMNS
    unknown = [name for name in columns if name not in allowed]
    if unknown:
        raise SubmissionError(source, f"unknown column(s) {unknown}; allowed: {list(allowed)}")
    if ID_COLUMN not in columns:
        raise SubmissionError(source, "no ID column", column=ID_COLUMN)
    if columns[0] != ID_COLUMN:
        raise SubmissionError(source, f"ID must be the first column, header is {columns}")
    tasks = [name for name in columns if name in TASK_COLUMNS]
    if not tasks:
        raise SubmissionError(source, f"no task column; expected some of {list(TASK_COLUMNS)}")
    if len(df) != n_rows:
        raise SubmissionError(source, f"{len(df)} rows, but test.parquet has {n_rows} rows")

    ids = df[ID_COLUMN]
    if not pd.api.types.is_integer_dtype(ids.dtype):
        bad = _first_non_integer(ids)
        shown = f" (value {_plain(ids.iloc[bad])!r})" if bad is not None else ""
        raise SubmissionError(source, f"IDs must be integers, got dtype {ids.dtype}{shown}",
                              column=ID_COLUMN, row=bad)
    ids = ids.to_numpy()
    expected = np.arange(n_rows)
    wrong = ids != expected
    if wrong.any():
        row = _first_true(wrong)
        raise SubmissionError(source, f"IDs must be 0..{n_rows - 1} in test order; found "
                                      f"{ids[row].item()} where {row} was expected",
                              column=ID_COLUMN, row=row)

    for name in tasks:
        col = df[name]
        if pd.api.types.is_bool_dtype(col.dtype):
            raise SubmissionError(source, "boolean values; write probabilities in [0, 1]",
                                  column=name)
        if pd.api.types.is_complex_dtype(col.dtype):
            raise SubmissionError(source, f"complex values (dtype {col.dtype}); write real "
                                          "probabilities in [0, 1]", column=name)
        if not pd.api.types.is_numeric_dtype(col.dtype):
            numeric = pd.to_numeric(col, errors="coerce")
            bad = numeric.isna() & col.notna()
            if bad.any():
                row = _first_true(bad.to_numpy())
                raise SubmissionError(source, f"non-numeric value {_plain(col.iloc[row])!r}",
                                      column=name, row=row)
            col = numeric
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(values)
        if nan.any():
            raise SubmissionError(source, "missing or NaN value", column=name, row=_first_true(nan))
        inf = np.isinf(values)
        if inf.any():
            row = _first_true(inf)
            raise SubmissionError(source, f"infinite value {float(values[row])}",
                                  column=name, row=row)
        out = (values < 0.0) | (values > 1.0)
        if out.any():
            row = _first_true(out)
            raise SubmissionError(source, f"value {float(values[row])!r} outside [0, 1]",
                                  column=name, row=row)


def _first_non_integer(ids: pd.Series) -> Optional[int]:
    """Row of the first ID that is not a whole number, or None if all are (e.g. 0.0, 1.0)."""
    numeric = pd.to_numeric(ids, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numeric) | (numeric != np.round(numeric))
    return _first_true(bad) if bad.any() else 0 if len(ids) else None


# --------------------------------------------------------------------------------------------
# Write and check the zip
# --------------------------------------------------------------------------------------------
def write_submission_zip(df: pd.DataFrame, zip_path: PathLike) -> Path:
    """Write ``df`` as ``prediction.csv`` at the root of a zip archive, atomically.

    The table is re-validated against its own length (cheap) before anything is written.
    Floats are written with Python's shortest round-trip representation (``repr``), so no two
    different predictions become a tie and the AUC cannot change through the csv (a round-trip
    parser reads every value back bit-identical; pandas' default parser is within one ulp).

    Args:
        df: a table from :func:`build_submission` (``ID`` plus task columns).
        zip_path: the archive to write; must end in ``.zip``. Parent folders are created.

    Returns:
        The path of the written archive.

    Raises:
        SubmissionError: the table is invalid or the path is unusable; nothing is written and
            an existing archive at ``zip_path`` is left unchanged.
    """
    zip_path = Path(zip_path)
    if zip_path.suffix.lower() != ".zip":
        raise SubmissionError(zip_path, "the submission archive must end in .zip")
    if zip_path.is_dir():
        raise SubmissionError(zip_path, "is a directory")
    validate_submission(df, n_rows=len(df), source="submission table")
    info = zipfile.ZipInfo(CSV_NAME, date_time=_ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    with atomic_path(zip_path, suffix=".zip.tmp") as tmp:
        with zipfile.ZipFile(tmp, "w") as archive:
            with archive.open(info, "w") as raw:
                with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                    df.to_csv(text, index=False, lineterminator="\n")
    logger.info("wrote %s (%d rows, columns %s)", zip_path, len(df), list(df.columns))
    return zip_path


def write_submission(predictions: Mapping[str, np.ndarray], zip_path: PathLike, n_rows: int,
                     all_columns: bool = False, source: str = "predictions") -> Path:
    """Build, validate and write a submission zip in one call.

    Args:
        predictions: task column -> probabilities, one per test row (see
            :func:`build_submission`).
        zip_path: the archive to write (``.zip``).
        n_rows: number of rows of ``test.parquet``.
        all_columns: four-column layout with unused tasks set to 0. Default: ``False``.
        source: how to name the predictions in error messages. Default: ``"predictions"``.

    Returns:
        The path of the written archive.

    Raises:
        SubmissionError: the predictions are refused; nothing is written.
    """
    df = build_submission(predictions, n_rows=n_rows, all_columns=all_columns, source=source)
    return write_submission_zip(df, zip_path)


def check_submission_zip(zip_path: PathLike, test_parquet: PathLike) -> SubmissionReport:
    """Check a submission archive the way Codabench will read it.

    Requires a readable zip holding exactly one ``prediction.csv`` at its root, a csv with a
    well-formed header and numeric values, and a table that passes
    :func:`validate_submission` against the row count of ``test_parquet``.

    Args:
        zip_path: the archive to check.
        test_parquet: ``test.parquet`` of the data set (only its metadata is read).

    Returns:
        A :class:`SubmissionReport` of the accepted archive.

    Raises:
        SubmissionError: the first problem found, naming the archive member, column and row.
    """
    zip_path = Path(zip_path)
    n_rows = test_rows(test_parquet)
    if not zip_path.is_file():
        raise SubmissionError(zip_path, "submission archive not found")
    if not zipfile.is_zipfile(zip_path):
        raise SubmissionError(zip_path, "not a zip archive (or the archive is corrupt)")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = [info.filename for info in archive.infolist()]
            roots = [n for n in names if n == CSV_NAME]
            if len(roots) > 1:
                raise SubmissionError(zip_path, f"{len(roots)} entries named {CSV_NAME}; "
                                                "expected exactly one")
            nested = [n for n in names if n != CSV_NAME and
                      n.replace("\\", "/").rsplit("/", 1)[-1] == CSV_NAME]
            if not roots:
                if nested:
                    raise SubmissionError(zip_path, f"{CSV_NAME} must be at the root of the "
                                                    f"archive, found {nested}")
                raise SubmissionError(zip_path, f"no {CSV_NAME} in the archive (it holds "
                                                f"{names})")
            if nested:
                raise SubmissionError(zip_path, f"ambiguous: {CSV_NAME} at the root and also "
                                                f"{nested}")
            payload = archive.read(CSV_NAME)
    except SubmissionError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError, EOFError,
            zlib.error) as exc:  # zlib.error: the compressed data itself is corrupt
        raise SubmissionError(zip_path, f"cannot read the archive ({exc})") from exc
    extras = tuple(n for n in names if n != CSV_NAME)
    if extras:
        logger.warning("%s: entries besides %s are ignored by the checker: %s",
                       zip_path, CSV_NAME, list(extras))

    source = f"{zip_path}!{CSV_NAME}"
    df = _parse_prediction_csv(payload, source)
    validate_submission(df, n_rows=n_rows, source=source)
    return SubmissionReport(path=zip_path, n_rows=len(df), columns=tuple(df.columns),
                            extra_entries=extras)


def _parse_prediction_csv(payload: bytes, source: str) -> pd.DataFrame:
    """Parse ``prediction.csv`` bytes, refusing header and layout problems pandas would hide."""
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubmissionError(source, f"not UTF-8 text ({exc})") from exc
    if not text.strip():
        raise SubmissionError(source, "empty file")
    lines = text.splitlines()  # split once: the header and the first row come from it
    first_line = lines[0]
    header = next(csv.reader([first_line]))
    if not header or any(not name.strip() for name in header):
        raise SubmissionError(source, f"empty column name in header {header}")
    stripped = [name.strip() for name in header]
    if stripped != header:
        raise SubmissionError(source, f"column names have surrounding spaces: {header}")
    seen = set()
    for name in header:
        if name in seen:
            raise SubmissionError(source, "duplicate column", column=name)
        seen.add(name)
    # More fields than header names on the first row makes pandas take the first column as
    # the index (pandas 3 then even returns a RangeIndex when it holds 0..n-1): refuse first.
    first_row = next((line for line in lines[1:] if line.strip()), None)
    if first_row is not None and len(next(csv.reader([first_row]))) > len(header):
        raise SubmissionError(source, f"rows have more fields than the header {header}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = pd.read_csv(io.StringIO(text), header=0, skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as exc:
        raise SubmissionError(source, f"malformed csv ({exc})".strip()) from exc
    # More fields than header names on every line makes pandas move columns into the index.
    if not isinstance(df.index, pd.RangeIndex) or list(df.columns) != header:
        raise SubmissionError(source, f"rows have more fields than the header {header}")
    return df


# --------------------------------------------------------------------------------------------
# The test file's row order, and prediction files for the CLI
# --------------------------------------------------------------------------------------------
def _id_column(columns) -> Optional[str]:
    """The column of ``columns`` that holds row IDs (``ID``, any case), or None."""
    found = [c for c in columns if str(c).lower() == ID_COLUMN.lower()]
    return found[0] if found else None


def test_rows(test_parquet: PathLike) -> int:
    """Rows of ``test.parquet``: the submission's IDs are its row order, ``0..n-1``.

    The distributed test file has no ID column. When a test file does carry one (``ID``, any
    case), it must say the same thing as the row order; otherwise every prediction would be
    filed under another row's ID.

    Raises:
        SubmissionError: the test file's ID column is not ``0..n-1`` in row order (naming the
            file, the column and the first row that disagrees).
    """
    parquet = open_parquet(test_parquet)
    n_rows = int(parquet.metadata.num_rows)
    column = _id_column(parquet.schema_arrow.names)
    if column is not None:
        ids = parquet.read(columns=[column]).column(column).to_numpy(zero_copy_only=False)
        if not np.issubdtype(np.asarray(ids).dtype, np.number) or len(ids) != n_rows:
            raise SubmissionError(test_parquet, f"ID column of dtype {np.asarray(ids).dtype}; "
                                                "expected integers 0..n-1", column=column)
        wrong = np.asarray(ids) != np.arange(n_rows)
        if wrong.any():
            row = _first_true(wrong)
            raise SubmissionError(test_parquet, f"the test file's IDs are not its row order "
                                                f"(row {row} holds ID {_plain(ids[row])!r}); "
                                                "the submission IDs are the row order: sort the "
                                                "file by ID", column=column, row=row)
    return n_rows


def align_by_id(ids, values: np.ndarray, n_rows: Optional[int], source,
                column: str = ID_COLUMN) -> np.ndarray:
    """``values`` reordered so that position ``i`` holds the value of ID ``i``.

    Args:
        ids: the ID of each row of ``values``.
        values: one prediction per row.
        n_rows: the number of test rows; None: ``len(ids)``.
        source: the file, for messages.
        column: the ID column's name, for messages. Default: ``"ID"``.

    Raises:
        SubmissionError: IDs that are not whole numbers, repeated, outside ``0..n_rows-1`` or
            missing (naming the first such ID and its row).
    """
    ids = pd.Series(ids)
    n = len(ids) if n_rows is None else int(n_rows)
    if pd.api.types.is_bool_dtype(ids.dtype) or not pd.api.types.is_numeric_dtype(ids.dtype) \
            or pd.api.types.is_complex_dtype(ids.dtype):
        bad = _first_non_integer(ids)
        raise SubmissionError(source, f"IDs must be integers, got dtype {ids.dtype}",
                              column=column, row=bad)
    numeric = ids.to_numpy(dtype=np.float64, na_value=np.nan)
    whole = np.isfinite(numeric) & (numeric == np.round(numeric))
    if not whole.all():
        row = _first_true(~whole)
        raise SubmissionError(source, f"ID {_plain(ids.iloc[row])!r} is not a whole number",
                              column=column, row=row)
    as_int = numeric.astype(np.int64)
    outside = (as_int < 0) | (as_int >= n)
    if outside.any():
        row = _first_true(outside)
        raise SubmissionError(source, f"ID {as_int[row]} outside 0..{n - 1} (the test file has "
                                      f"{n} rows)", column=column, row=row)
    order = np.argsort(as_int, kind="stable")
    repeated = np.flatnonzero(np.diff(as_int[order]) == 0)
    if repeated.size:
        first, second = sorted(order[repeated[0]:repeated[0] + 2].tolist())
        raise SubmissionError(source, f"ID {as_int[first]} appears more than once (rows {first} "
                                      f"and {second})", column=column, row=second)
    if len(as_int) != n:
        missing = np.setdiff1d(np.arange(n), as_int)
        raise SubmissionError(source, f"{len(missing)} of the {n} test IDs have no prediction "
                                      f"(first: ID {int(missing[0])})", column=column)
    if (order != np.arange(n)).any():
        logger.info("%s: rows are not in ID order; predictions aligned by %s", source, column)
    return np.asarray(values)[order]


def load_predictions(path: PathLike, column: Optional[str] = None,
                     n_rows: Optional[int] = None, prefer: Optional[str] = None) -> np.ndarray:
    """Read one probability per test row from a ``.npy``, ``.csv`` or ``.parquet`` file.

    A table with an ``ID`` column (any case) is aligned by it: row ``i`` of the result is the
    prediction of ID ``i`` whatever the order of the file's rows; IDs that are not a
    permutation of ``0..n_rows-1`` are refused. A table without one (and a ``.npy``) is taken in
    row order.

    Args:
        path: the predictions file. A ``.npy`` holds a 1-d array (or ``(n, 1)``); a csv or
            parquet file holds a table.
        column: the table column to use. Default: ``None``: ``prefer`` when the table has
            it, else the first float column that is not the ID column.
        n_rows: the number of test rows the IDs must cover. Default: ``None`` (the table's).
        prefer: the column to use when ``column`` is not given and the table has it (the
            submission's task, e.g. ``Task2``). Default: ``None``.

    Returns:
        A float64 1-d array, in ID order.

    Raises:
        SubmissionError: missing file, unknown format, missing column, data that are not real
            numbers (complex, boolean, text), or IDs that are not ``0..n_rows-1``.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(path, "predictions file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise SubmissionError(path, f"cannot read the .npy file ({exc})") from exc
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise SubmissionError(path, f"expected a 1-d array, got shape {values.shape}")
        check_real_dtype(values.dtype, path)
        return values.astype(np.float64, copy=False)
    if suffix == ".csv":
        try:
            table = pd.read_csv(path, **compat.EXACT_FLOATS_CSV)
        except (pd.errors.ParserError, ValueError, OSError) as exc:
            raise SubmissionError(path, f"cannot read the csv ({exc})") from exc
    elif suffix == ".parquet":
        table = open_parquet(path).read().to_pandas()
    else:
        raise SubmissionError(path, "unknown predictions format; use .npy, .csv or .parquet")
    id_column = _id_column(table.columns)
    if column is None:
        if prefer is not None and prefer in table.columns:
            column = prefer
        else:
            floats = [c for c in table.columns if c != id_column and
                      pd.api.types.is_float_dtype(table[c].dtype)]
            if not floats:
                raise SubmissionError(path, f"no float column among {list(table.columns)}; "
                                            "name one with --pred-column")
            column = floats[0]
        logger.info("using column '%s' of %s", column, path)
    if column not in table.columns:
        raise SubmissionError(path, f"no such column; columns are {list(table.columns)}",
                              column=column)
    if column == id_column:
        raise SubmissionError(path, "this is the ID column, not predictions", column=column)
    values = table[column]
    check_real_dtype(values.dtype, path, column=column)
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if id_column is not None:
        values = align_by_id(table[id_column], values, n_rows, path, column=id_column)
    return values


__all__ = [
    "TASK_COLUMNS", "SubmissionError", "SubmissionReport", "count_rows", "build_submission",
    "validate_submission", "write_submission_zip", "write_submission", "check_submission_zip",
    "load_predictions", "align_by_id", "check_real_dtype", "test_rows",
]
