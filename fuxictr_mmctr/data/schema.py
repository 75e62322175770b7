"""The MicroLens_1M_x1 schema, checked at the edge while the files are read into arrays.

Every reader in the package goes through :func:`read_split` and :func:`read_item_info`. They
stream a parquet file batch by batch with pyarrow into pre-allocated NumPy arrays of the
narrowest integer type that holds the ids, and check as they go: columns present, dtypes,
nulls, fixed list lengths, left padding and id ranges. A violation raises
:class:`~fuxictr_mmctr.errors.DataValidationError` naming the file, the column and the first
offending row, instead of a traceback from deep inside pandas or torch.

Layout of a split (train / valid / test)::

    user_id      int          (N,)
    item_seq     list<int>    (N, L)  left-padded with 0, most recent item last
    likes_level  int          (N,)    0..10
    views_level  int          (N,)    0..10
    item_id      int          (N,)    1..n_items
    label        0/1          (N,)    absent or meaningless in test

Layout of item_info: row index == ``item_id`` (0..n_items), row 0 is padding; list columns
(``item_tags``: ints, ``item_emb_d128``: floats) have one fixed length each.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataValidationError

logger = logging.getLogger(__name__)

SPLIT_COLUMNS = ("user_id", "item_seq", "likes_level", "views_level", "item_id", "label")
SEQUENCE_COLUMN = "item_seq"
TARGET_COLUMN = "item_id"
LABEL_COLUMN = "label"
_READ_BATCH_ROWS = 65_536


def narrowest_int_dtype(max_value: int, min_value: int = 0) -> np.dtype:
    """The smallest signed integer dtype holding ``[min_value, max_value]``.

    Signed types only, so every array converts to a torch tensor without surprises.
    """
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= min_value and max_value <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"no integer dtype holds [{min_value}, {max_value}]")


@dataclass
class SplitArrays:
    """One split held as column arrays.

    Attributes:
        path: the parquet file read.
        columns: column name -> array; scalars are ``(N,)``, ``item_seq`` is ``(N, L)``.
    """

    path: Path
    columns: Dict[str, np.ndarray]

    @property
    def num_rows(self) -> int:
        return len(self.columns[TARGET_COLUMN])

    @property
    def seq_len(self) -> int:
        return self.columns[SEQUENCE_COLUMN].shape[1]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())


@dataclass
class ItemTable:
    """The item side of ``item_info.parquet`` as arrays indexed by ``item_id``.

    Attributes:
        path: the parquet file read.
        columns: column name -> array with first dimension ``n_items + 1`` (row 0 = padding):
            ``item_id`` ``(n+1,)``, list columns ``(n+1, K)``.
    """

    path: Path
    columns: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        """Number of real items (padding row excluded)."""
        return len(self.columns["item_id"]) - 1


# --------------------------------------------------------------------------- helpers

def _open_parquet(path: Path) -> pq.ParquetFile:
    path = Path(path)
    if not path.exists():
        raise DataValidationError(path, "file not found")
    if path.is_dir():
        raise DataValidationError(path, "is a directory, expected a parquet file")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(path, f"not a readable parquet file ({exc})") from None


def _check_columns(path: Path, schema: pa.Schema, required: Iterable[str]) -> None:
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataValidationError(
            path, f"missing column(s) {missing}; found {schema.names}", column=missing[0])


def _kind(path: Path, name: str, typ: pa.DataType, want: str, list_of: bool = False) -> None:
    """Check that ``typ`` is an integer/float (or a list of them when ``list_of``)."""
    inner = typ
    if list_of:
        if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)
                or pa.types.is_fixed_size_list(typ)):
            raise DataValidationError(path, f"expected a list<{want}> column, found {typ}",
                                      column=name)
        inner = typ.value_type
    ok = {"int": pa.types.is_integer, "float": pa.types.is_floating,
          "number": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)}[want](inner)
    if not ok:
        expect = f"list<{want}>" if list_of else want
        raise DataValidationError(path, f"expected {expect} values, found {typ}", column=name)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_no_nulls(path: Path, name: str, array: pa.Array, offset: int) -> None:
    if array.null_count:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False))
        raise DataValidationError(path, "null value", column=name, row=offset + _first(~valid))


def _list_values(path: Path, name: str, array: pa.Array, offset: int,
                 width: Optional[int]) -> np.ndarray:
    """A list column chunk as a ``(rows, width)`` array, checking nulls and fixed length."""
    _check_no_nulls(path, name, array, offset)
    if pa.types.is_fixed_size_list(array.type):
        lengths = np.full(len(array), array.type.list_size)
    else:
        lengths = np.diff(np.asarray(array.offsets.to_numpy(zero_copy_only=False)))
    if width is None and len(lengths):
        width = int(lengths[0])
    if len(lengths) and np.any(lengths != width):
        row = _first(lengths != width)
        raise DataValidationError(
            path, f"list length {int(lengths[row])}, expected {width} (every row must have "
                  "the same length)", column=name, row=offset + row)
    values = array.flatten()
    if values.null_count:
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False))
        raise DataValidationError(path, "null inside a list", column=name,
                                  row=offset + _first(~valid) // max(width, 1))
    return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(len(array), width or 0)


def _check_range(path: Path, name: str, values: np.ndarray, low: int, high: int,
                 offset: int, what: str) -> None:
    if values.size == 0:
        return
    bad = (values < low) | (values > high)
    if bad.any():
        flat = _first(bad.reshape(len(values), -1).any(axis=1))
        value = values[flat] if values.ndim == 1 else values[flat][bad[flat]][0]
        raise DataValidationError(path, f"value {value} outside {what} [{low}, {high}]",
                                  column=name, row=offset + flat)


# --------------------------------------------------------------------------- item_info

def read_item_info(path, columns: Optional[Sequence[str]] = None,
                   list_widths: Optional[Mapping[str, int]] = None) -> ItemTable:
    """Read and check ``item_info.parquet`` into arrays indexed by ``item_id``.

    Args:
        path: the item_info parquet file.
        columns: item-side columns to load besides ``item_id``; default all columns.
            Integer lists (``item_tags``) become ``(n+1, K)`` arrays of the narrowest int dtype,
            float lists (``item_emb_d128``) ``(n+1, D)`` float32, scalar ints ``(n+1,)``.
        list_widths: expected length per list column (e.g. ``{"item_emb_d128": 128}``).

    Raises:
        DataValidationError: missing column, wrong dtype, nulls, ragged lists, non-finite
            floats, ``item_id`` not equal to the row index, or a non-zero padding row 0.
    """
    path = Path(path)
    pf = _open_parquet(path)
    schema = pf.schema_arrow
    wanted = list(columns) if columns is not None else [c for c in schema.names if c != "item_id"]
    wanted = [c for c in wanted if c != "item_id"]
    _check_columns(path, schema, ["item_id"] + wanted)
    _kind(path, "item_id", schema.field("item_id").type, "int")
    table = pf.read(columns=["item_id"] + wanted)
    item_id = np.asarray(table.column("item_id").combine_chunks().to_numpy(zero_copy_only=False)) \
        if table.num_rows else np.zeros(0, np.int64)
    if table.column("item_id").null_count:
        _check_no_nulls(path, "item_id", table.column("item_id").combine_chunks(), 0)
    expected = np.arange(len(item_id))
    if len(item_id) < 2:
        raise DataValidationError(path, "needs the padding row 0 and at least one item",
                                  column="item_id")
    if not np.array_equal(item_id, expected):
        row = _first(item_id != expected)
        raise DataValidationError(
            path, f"item_id {item_id[row]} at row {row}: item_info must list item_id 0..n in "
                  "order (row index == item_id, row 0 = padding)", column="item_id", row=row)
    out = {"item_id": item_id.astype(narrowest_int_dtype(len(item_id) - 1))}
    widths = dict(list_widths or {})
    for name in wanted:
        typ = schema.field(name).type
        array = table.column(name).combine_chunks()
        if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            _kind(path, name, typ, "number", list_of=True)
            values = _list_values(path, name, array, 0, widths.get(name))
            if pa.types.is_floating(typ.value_type):
                values = values.astype(np.float32, copy=False)
                finite = np.isfinite(values).all(axis=1)
                if not finite.all():
                    raise DataValidationError(path, "NaN or inf in an embedding", column=name,
                                              row=_first(~finite))
            else:
                if values.size and values.min() < 0:
                    raise DataValidationError(path, "negative id", column=name,
                                              row=_first((values < 0).any(axis=1)))
                values = values.astype(narrowest_int_dtype(int(values.max(initial=0))))
                if values[0].any():
                    raise DataValidationError(path, "padding row 0 must be all zeros",
                                              column=name, row=0)
        else:
            _kind(path, name, typ, "number")
            _check_no_nulls(path, name, array, 0)
            values = np.asarray(array.to_numpy(zero_copy_only=False))
            if np.issubdtype(values.dtype, np.integer) and values.size:
                values = values.astype(narrowest_int_dtype(int(values.max()), int(values.min())))
        out[name] = values
    logger.info("Read %s: %d items, columns %s", path, len(item_id) - 1, list(out))
    return ItemTable(path=path, columns=out)


# --------------------------------------------------------------------------- splits

def read_split(path, n_items: int, require_label: bool = True,
               extra_columns: Sequence[str] = (), vocab_sizes: Optional[Mapping[str, int]] = None,
               seq_len: Optional[int] = None) -> SplitArrays:
    """Stream and check one split (train, valid or test) into column arrays.

    Args:
        path: the split's parquet file.
        n_items: largest valid item id (``item_info`` rows - 1); ids are checked against it.
        require_label: train/valid need a 0/1 ``label``; a test file may lack one (then the
            returned split has no ``label``).
        extra_columns: other scalar columns to load (e.g. ``likes_level``); must be integers.
        vocab_sizes: per column, values must lie in ``[0, vocab_size - 1]``.
        seq_len: expected ``item_seq`` length; default: whatever the first row has.

    Returns:
        SplitArrays with ``item_seq`` ``(N, L)`` and scalar columns ``(N,)``, each in the
        narrowest integer dtype (``label`` int8).
    """
    path = Path(path)
    pf = _open_parquet(path)
    schema = pf.schema_arrow
    scalar_cols = ["user_id", TARGET_COLUMN] + [c for c in extra_columns
                                                if c not in ("user_id", TARGET_COLUMN)]
    has_label = LABEL_COLUMN in schema.names
    if require_label and not has_label:
        raise DataValidationError(path, "missing column 'label' (needed for train/valid)",
                                  column=LABEL_COLUMN)
    _check_columns(path, schema, scalar_cols + [SEQUENCE_COLUMN])
    for name in scalar_cols:
        _kind(path, name, schema.field(name).type, "int")
    _kind(path, SEQUENCE_COLUMN, schema.field(SEQUENCE_COLUMN).type, "int", list_of=True)
    if has_label:
        _kind(path, LABEL_COLUMN, schema.field(LABEL_COLUMN).type, "number")
    n = pf.metadata.num_rows
    vocab = dict(vocab_sizes or {})
    bounds = {TARGET_COLUMN: n_items, **{c: v - 1 for c, v in vocab.items()}}
    id_dtype = narrowest_int_dtype(n_items)
    out: Dict[str, np.ndarray] = {}
    read_cols = scalar_cols + [SEQUENCE_COLUMN] + ([LABEL_COLUMN] if has_label else [])
    offset = 0
    for batch in pf.iter_batches(batch_size=_READ_BATCH_ROWS, columns=read_cols):
        rows = batch.num_rows
        seq = _list_values(path, SEQUENCE_COLUMN, batch.column(SEQUENCE_COLUMN), offset, seq_len)
        if seq_len is None:
            seq_len = seq.shape[1]
        _check_range(path, SEQUENCE_COLUMN, seq, 0, n_items, offset, "item ids of item_info")
        nonzero = seq != 0
        gap = nonzero[:, :-1] & ~nonzero[:, 1:]  # an item followed by padding
        if gap.any():
            raise DataValidationError(path, "padding after an item: item_seq must be "
                                            "left-padded with 0 (most recent item last)",
                                      column=SEQUENCE_COLUMN, row=offset + _first(gap.any(1)))
        if not out:
            out[SEQUENCE_COLUMN] = np.empty((n, seq_len), dtype=id_dtype)
        out[SEQUENCE_COLUMN][offset:offset + rows] = seq
        for name in scalar_cols:
            array = batch.column(name)
            _check_no_nulls(path, name, array, offset)
            values = np.asarray(array.to_numpy(zero_copy_only=False))
            if name == TARGET_COLUMN:
                _check_range(path, name, values, 1, n_items, offset, "item ids of item_info")
            elif name in vocab:
                _check_range(path, name, values, 0, vocab[name] - 1, offset,
                             f"vocabulary of size {vocab[name]}")
            elif values.size and values.min() < 0:
                raise DataValidationError(path, "negative id", column=name,
                                          row=offset + _first(values < 0))
            if name not in out:  # bounded columns are stored narrow from the start
                out[name] = np.empty(n, dtype=narrowest_int_dtype(bounds[name])
                                     if name in bounds else np.int64)
            out[name][offset:offset + rows] = values  # range-checked above, so the cast is safe
        if has_label:
            array = batch.column(LABEL_COLUMN)
            values = np.asarray(array.to_numpy(zero_copy_only=False))
            if require_label:
                _check_no_nulls(path, LABEL_COLUMN, array, offset)
                bad = (values != 0) & (values != 1)
                if bad.any():
                    row = _first(bad)
                    raise DataValidationError(path, f"label {values[row]} is not 0 or 1",
                                              column=LABEL_COLUMN, row=offset + row)
                out.setdefault(LABEL_COLUMN, np.empty(n, dtype=np.int8))
                out[LABEL_COLUMN][offset:offset + rows] = values
        offset += rows
    if n == 0:
        raise DataValidationError(path, "has no rows")
    _narrow_unbounded(out, scalar_cols)
    logger.info("Read %s: %d rows, history length %d, %.1f MB in memory", path, n, seq_len,
                sum(a.nbytes for a in out.values()) / 2**20)
    return SplitArrays(path=path, columns=out)


def _narrow_unbounded(out: Dict[str, np.ndarray], names: Sequence[str]) -> None:
    """Columns read as int64 (no known bound, e.g. ``user_id``) are narrowed once read."""
    for name in names:
        a = out[name]
        if a.dtype == np.int64 and a.size:
            out[name] = a.astype(narrowest_int_dtype(int(a.max()), int(a.min())))


# --------------------------------------------------------------------------- data dir

DEFAULT_VOCAB = {"likes_level": 11, "views_level": 11}


def validate_data_dir(data_dir, seq_len: Optional[int] = None) -> Dict[str, int]:
    """Check a whole ``MicroLens_1M_x1`` directory; return row counts per file."""
    data_dir = Path(data_dir)
    items = read_item_info(data_dir / "item_info.parquet")
    counts = {"item_info": items.num_items}
    for split in ("train", "valid", "test"):
        arrays = read_split(data_dir / f"{split}.parquet", n_items=items.num_items,
                            require_label=split != "test", extra_columns=tuple(DEFAULT_VOCAB),
                            vocab_sizes=DEFAULT_VOCAB, seq_len=seq_len)
        counts[split] = arrays.num_rows
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="folder holding train/valid/test/item_info.parquet")


def run(args: argparse.Namespace) -> int:
    counts = validate_data_dir(args.data_dir)
    logger.info("OK: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0
