"""The MicroLens_1M_x1 schema, checked at the edge while the files are read into arrays.

This module is the package's one parquet gate: every reader opens its input with
:func:`open_parquet` (a missing or unreadable file raises
:class:`~fuxictr_mmctr.errors.DataValidationError` naming it) and names columns with the
constants below. The readers of the MicroLens files are :func:`read_split`,
:func:`read_split_columns` (scalar columns only, no ``item_seq``) and :func:`read_item_info`.
They stream a parquet file batch by batch with pyarrow into pre-allocated NumPy arrays of the
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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import ConfigError, DataFileNotFound, DataValidationError
from ..io import PathLike

logger = logging.getLogger(__name__)

SPLIT_COLUMNS = ("user_id", "item_seq", "likes_level", "views_level", "item_id", "label")
USER_COLUMN = "user_id"
SEQUENCE_COLUMN = "item_seq"
TARGET_COLUMN = "item_id"
LABEL_COLUMN = "label"
# The folder of the splits and item_info under a MicroLens root (``data/MicroLens_1M_x1``).
DATASET_DIR = "MicroLens_1M_x1"
_READ_BATCH_ROWS = 65_536
_PROGRESS_ROWS = 1_000_000  # splits at least this long show a progress bar while read


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
        path: the parquet file read (or the name of the in-memory table).
        columns: column name -> array; scalars are ``(N,)``, ``item_seq`` is ``(N, L)``.
    """

    path: Union[Path, str]
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


# --------------------------------------------------------------------------- the gate

class CheckedParquetFile(pq.ParquetFile):
    """A ``ParquetFile`` whose reads name the file when the data itself is corrupt (a damaged
    page raises pyarrow's ``OSError: Corrupt snappy compressed data`` deep in a batch loop)."""

    def _corrupt(self, exc: Exception) -> DataValidationError:
        return DataValidationError(self._mmctr_path, f"corrupt data, cannot be read ({exc})")

    def read(self, *args, **kwargs):
        try:
            return super().read(*args, **kwargs)
        except (pa.ArrowException, OSError) as exc:
            raise self._corrupt(exc) from None

    def iter_batches(self, *args, **kwargs):
        batches = super().iter_batches(*args, **kwargs)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                raise self._corrupt(exc) from None
            yield batch


def open_parquet(path: PathLike) -> pq.ParquetFile:
    """Open a parquet file for reading: the one place the package opens parquet input.

    Args:
        path: the file.

    Returns:
        A :class:`CheckedParquetFile` (footer read, no data yet); its ``read`` and
        ``iter_batches`` raise :class:`DataValidationError` on corrupt data.

    Raises:
        DataFileNotFound: the file does not exist.
        DataValidationError: a directory, or not a readable parquet file (naming the file).
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFound(path)
    if path.is_dir():
        raise DataValidationError(path, "is a directory, expected a parquet file")
    try:
        pf = CheckedParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataValidationError(path, f"not a readable parquet file ({exc})") from None
    pf._mmctr_path = path
    return pf


def count_rows(path: PathLike) -> int:
    """Rows of a parquet file, from its footer (no data is read)."""
    return int(open_parquet(path).metadata.num_rows)


def check_columns(path, schema: pa.Schema, required: Iterable[str]) -> None:
    """Raise :class:`DataValidationError` naming the first of ``required`` absent from ``schema``.

    Args:
        path: the file (or how to name an in-memory table) in the message.
        schema: the arrow schema read.
        required: column names that must be present.
    """
    missing = [c for c in required if c not in schema.names]
    if missing:
        listed = ", ".join(repr(c) for c in missing)
        raise DataValidationError(
            path, f"missing column{'s' if len(missing) > 1 else ''} {listed}; found "
                  f"{schema.names}", column=missing[0])


def column_max(path: PathLike, column: str) -> int:
    """Largest integer of ``column`` in a parquet file (list columns flattened), streamed.

    Args:
        path: the parquet file.
        column: an integer or list<integer> column.

    Returns:
        The largest value, 0 for an empty column.
    """
    pf = open_parquet(path)
    check_columns(path, pf.schema_arrow, [column])
    best = 0
    for batch in pf.iter_batches(columns=[column], batch_size=262_144):
        array = batch.column(0)
        if is_list_type(array.type):
            array = array.flatten()
        value = pc.max(array).as_py()
        if value is not None:
            best = max(best, int(value))
    return best


def is_list_type(typ: pa.DataType) -> bool:
    """A list, large list or fixed-size list arrow type."""
    return pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)


def _kind(path: Path, name: str, typ: pa.DataType, want: str, list_of: bool = False) -> None:
    """Check that ``typ`` is an integer/float (or a list of them when ``list_of``)."""
    inner = typ
    if list_of:
        if not is_list_type(typ):
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


def list_column_values(path, name: str, array: pa.Array, offset: int,
                       width: Optional[int]) -> np.ndarray:
    """A list column chunk as a ``(rows, width)`` array, checking nulls and fixed length.

    Args:
        path: the file, named in errors.
        name: the column, named in errors.
        array: the chunk, ``rows`` lists.
        offset: row of the chunk's first list in the file (for error rows).
        width: the length every list must have; ``None``: that of the first row.
    """
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


def list_column(matrix: np.ndarray, value_type: pa.DataType = pa.float32()) -> pa.ListArray:
    """A ``(N, W)`` array as a ``list<value_type>`` column of N lists of length W (offsets
    built in NumPy, no row structure through Python): how the package writes list columns."""
    n, width = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix).reshape(-1), type=value_type)
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(value_type))


# Embedding values beyond this are refused: a dot product of two such 128-d vectors overflows
# float32 (max 3.4e38) long before that, and real embeddings are O(1).
MAX_ABS_EMBEDDING = 1.0e6


def check_finite_rows(path, column: str, vectors: np.ndarray) -> None:
    """Raise :class:`DataValidationError` at the first row of ``(N, D)`` ``vectors`` holding a
    NaN, an infinity or a value beyond +-``MAX_ABS_EMBEDDING`` (naming the file and column)."""
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise DataValidationError(path, "NaN or inf in an embedding", column=column,
                                  row=_first(~finite))
    huge = (np.abs(vectors) > MAX_ABS_EMBEDDING).any(axis=1)
    if huge.any():
        row = _first(huge)
        raise DataValidationError(path, f"embedding value {np.abs(vectors[row]).max():.3g} "
                                        f"beyond +-{MAX_ABS_EMBEDDING:.0e} (float32 arithmetic "
                                        "in the model would overflow)", column=column, row=row)


def warn_if_constant(path, column: str, vectors: np.ndarray) -> bool:
    """Warn when every item (rows 1..n of ``(n+1, D)`` ``vectors``; row 0 is the padding) has
    the same vector: an all-zero or constant embedding column (or tag list) tells a model
    nothing about the items, and it trains to what the other features give without a word
    otherwise.

    Returns:
        True when the column is constant (and a warning was logged).
    """
    items = vectors[1:]
    if len(items) < 2 or not (items == items[0]).all():
        return False
    what = "all zeros" if not items[0].any() else "the same vector for every item"
    logger.warning("%s, column '%s': %s (%d items x %d): it carries no information about "
                   "items, so a model learns from the other features only; was the column "
                   "exported correctly?", path, column, what, len(items), items.shape[1])
    return True


def _check_range(path, name: str, values: np.ndarray, low: int, high: Optional[int],
                 offset: int, what: str) -> None:
    """Values must lie in ``[low, high]`` (``high=None``: no upper bound)."""
    if values.size == 0:
        return
    bad = (values < low) if high is None else (values < low) | (values > high)
    if bad.any():
        flat = _first(bad.reshape(len(values), -1).any(axis=1))
        value = values[flat] if values.ndim == 1 else values[flat][bad[flat]][0]
        bound = f"below {low}, the smallest of {what}" if high is None else \
            f"outside {what} [{low}, {high}]"
        raise DataValidationError(path, f"value {value} {bound}", column=name, row=offset + flat)


# --------------------------------------------------------------------------- item_info

VECTOR_NORMS = ("none", "mean_norm", "l2", "standard")


def vector_norm_of(name: str, spec: Mapping) -> str:
    """The ``normalize_vectors`` mode of feature ``name``'s spec (``none`` when unset).

    Raises:
        ConfigError: naming the feature, for a mode not in :data:`VECTOR_NORMS`.
    """
    mode = spec.get("normalize_vectors", "none")
    if mode not in VECTOR_NORMS:
        raise ConfigError(f"feature {name}: normalize_vectors={mode!r}, expected one of "
                          f"{list(VECTOR_NORMS)}")
    return mode


def mean_vector_norm(values: np.ndarray) -> float:
    """The mean L2 norm of the rows of ``(N, D)`` ``values`` that are not all zero (the
    padding row and items without a vector do not count); 0 when every row is."""
    norms = np.linalg.norm(values, axis=1)
    real = norms[norms > 0]
    return float(real.mean()) if real.size else 0.0


def normalise_vectors(values: np.ndarray, mode: str) -> np.ndarray:
    """An item vector column rescaled as its feature's ``normalize_vectors`` key says.

    The given ``item_emb_d128`` is not normalised (a PCA output: mean L2 norm ~36 on the
    bench worlds), and a model's first layers see it raw; ``mean_norm`` divides the whole
    column by one factor, the items' mean L2 norm (directions and relative lengths kept:
    an invertible change of scale), ``l2`` brings every vector to unit length (lengths
    dropped), ``standard`` centres and scales each dimension to unit variance over the items
    (scikit-learn's ``StandardScaler``: an invertible affine map), ``none`` keeps it as stored.

    Args:
        values: ``(N, D)`` float32 (item_info's ``(n_items + 1, D)``, row 0 the padding item).
        mode: one of :data:`VECTOR_NORMS`.

    Returns:
        a new ``(N, D)`` float32 array (``values`` itself for ``none``); rows of norm 0 (the
        padding row, items without a vector) stay 0 and do not count in the mean.
    """
    if mode == "none":
        return values
    if mode == "mean_norm":
        scale = mean_vector_norm(values) or 1.0
        return (values / np.float32(scale)).astype(np.float32, copy=False)
    norms = np.linalg.norm(values, axis=1, keepdims=True)               # (n+1, 1)
    if mode == "l2":
        return np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)
    if mode == "standard":
        real = norms[:, 0] > 0
        if not real.any():
            return values
        mean = values[real].mean(axis=0)                                 # (D,)
        std = values[real].std(axis=0)
        std[std == 0] = 1.0                                              # a constant dimension
        out = np.zeros_like(values)
        out[real] = (values[real] - mean) / std
        return out.astype(np.float32, copy=False)
    raise ValueError(f"normalize_vectors: {mode!r} is not one of {VECTOR_NORMS}")


def read_item_info(path, columns: Optional[Sequence[str]] = None,
                   list_widths: Optional[Mapping[str, int]] = None,
                   vocab_sizes: Optional[Mapping[str, int]] = None) -> ItemTable:
    """Read and check ``item_info.parquet`` into arrays indexed by ``item_id``.

    Args:
        path: the item_info parquet file.
        columns: item-side columns to load besides ``item_id``; default all columns.
            Integer lists (``item_tags``) become ``(n+1, K)`` arrays of the narrowest int dtype,
            float lists (``item_emb_d128``) ``(n+1, D)`` float32, scalar ints (item-side ids
            such as the semantic-ID codes ``sid_1``) ``(n+1,)``, non-negative, 0 on row 0.
        list_widths: expected length per list column (e.g. ``{"item_emb_d128": 128}``).
        vocab_sizes: per integer column (e.g. ``item_tags``, ``sid_1``), ids must lie in
            ``[0, vocab_size - 1]`` (the config's declared vocabulary).

    Raises:
        DataValidationError: missing column, wrong dtype, nulls, ragged lists, non-finite
            floats, ``item_id`` not equal to the row index, or a non-zero padding row 0.
    """
    path = Path(path)
    pf = open_parquet(path)
    schema = pf.schema_arrow
    wanted = list(columns) if columns is not None else [c for c in schema.names if c != "item_id"]
    wanted = [c for c in wanted if c != "item_id"]
    check_columns(path, schema, ["item_id"] + wanted)
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
    for name in wanted:
        typ = schema.field(name).type
        array = table.column(name).combine_chunks()
        if is_list_type(typ):
            _kind(path, name, typ, "number", list_of=True)
            values = list_column_values(path, name, array, 0, None)
            if pa.types.is_floating(typ.value_type):
                values = values.astype(np.float32, copy=False)
                check_finite_rows(path, name, values)
                warn_if_constant(path, name, values)
            else:
                if values.size and values.min() < 0:
                    raise DataValidationError(path, "negative id", column=name,
                                              row=_first((values < 0).any(axis=1)))
                values = values.astype(narrowest_int_dtype(int(values.max(initial=0))))
                if values[0].any():
                    raise DataValidationError(path, "padding row 0 must be all zeros",
                                              column=name, row=0)
                warn_if_constant(path, name, values)
        else:
            _kind(path, name, typ, "number")
            _check_no_nulls(path, name, array, 0)
            values = np.asarray(array.to_numpy(zero_copy_only=False))
            if np.issubdtype(values.dtype, np.integer) and values.size:
                # an item-side id (a semantic-ID code, a category): what item_tags must meet
                _check_range(path, name, values, 0, int(vocab_sizes[name]) - 1
                             if name in (vocab_sizes or {}) else None, 0,
                             f"the declared vocabulary of size {vocab_sizes[name]}"
                             if name in (vocab_sizes or {}) else "ids")
                if values[0] != 0:
                    raise DataValidationError(path, "padding row 0 must be 0", column=name,
                                              row=0)
                values = values.astype(narrowest_int_dtype(int(values.max()), int(values.min())))
        out[name] = values
    logger.info("Read %s: %d items, columns %s", path, len(item_id) - 1, list(out))
    table = ItemTable(path=path, columns=out)
    check_item_table(table, list_widths or {}, vocab_sizes or {})
    return table


def check_item_table(table: ItemTable, widths: Mapping[str, int],
                     vocab_sizes: Mapping[str, int]) -> None:
    """Check an item table against what a config declares: the width of each list column
    (``{"item_emb_d128": 128}``) and the vocabulary of each id column (ids in
    ``[0, vocab_size - 1]``, list or scalar). Run on every read of item_info, and again when a
    table read for one config serves another.

    Raises:
        DataValidationError: naming the file, the column and the first bad row.
    """
    for name, width in widths.items():
        values = table.columns.get(name)
        if values is not None and values.ndim == 2 and values.shape[1] != int(width):
            raise DataValidationError(table.path, f"list length {values.shape[1]}, expected "
                                      f"{width} (the width the config declares)", column=name,
                                      row=0)
    for name, size in vocab_sizes.items():
        values = table.columns.get(name)
        if values is not None and np.issubdtype(values.dtype, np.integer):
            _check_range(table.path, name, values, 0, int(size) - 1, 0,
                         f"the declared vocabulary of size {size}")


# --------------------------------------------------------------------------- splits

@dataclass
class _RowSource:
    """Rows to read in batches: a parquet file or an in-memory arrow table.

    Attributes:
        name: the file (or the name of the table) used in errors.
        schema: its arrow schema.
        num_rows: its row count.
        batches: ``columns -> iterator of RecordBatch`` of at most ``_READ_BATCH_ROWS`` rows.
    """

    name: object
    schema: pa.Schema
    num_rows: int
    batches: Callable[[Sequence[str]], Iterator[pa.RecordBatch]]

    @classmethod
    def of(cls, source, name=None) -> "_RowSource":
        if isinstance(source, pa.Table):
            return cls(name=name or "<arrow table>", schema=source.schema,
                       num_rows=source.num_rows,
                       batches=lambda cols: iter(source.select(list(cols)).to_batches(
                           max_chunksize=_READ_BATCH_ROWS)))
        path = Path(source)
        pf = open_parquet(path)
        return cls(name=path, schema=pf.schema_arrow, num_rows=pf.metadata.num_rows,
                   batches=lambda cols: pf.iter_batches(batch_size=_READ_BATCH_ROWS,
                                                        columns=list(cols)))


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
    scalar_cols = [USER_COLUMN, TARGET_COLUMN] + [c for c in extra_columns
                                                if c not in (USER_COLUMN, TARGET_COLUMN)]
    return _read_rows(_RowSource.of(path), scalar_cols, history=True, n_items=n_items,
                      require_label=require_label, vocab_sizes=vocab_sizes, seq_len=seq_len)


def read_split_columns(source, columns: Sequence[str] = (TARGET_COLUMN,),
                       n_items: Optional[int] = None, require_label: bool = True,
                       vocab_sizes: Optional[Mapping[str, int]] = None,
                       name: Optional[str] = None) -> SplitArrays:
    """Stream and check scalar columns of a split (and its label) without its ``item_seq``.

    The lean twin of :func:`read_split` for what needs no history (per-item statistics, the
    labels of valid): the same checks (integer ids, no nulls, ids >= 1, 0/1 labels), and the
    list column is never read.

    Args:
        source: the split's parquet file, or a pyarrow ``Table`` holding the columns.
        columns: integer columns to load. Default: ``("item_id",)``.
        n_items: largest valid item id; ``None`` checks only ``item_id >= 1``.
        require_label: read and check the 0/1 ``label`` (a test file may lack one).
        vocab_sizes: per column, values must lie in ``[0, vocab_size - 1]``.
        name: how errors name an in-memory ``source``. Default: its path, or ``<arrow table>``.

    Returns:
        SplitArrays of ``(N,)`` arrays in the narrowest integer dtype (``label`` int8).

    Raises:
        DataFileNotFound, DataValidationError: naming the file (or ``name``), the column and
            the first offending row.
    """
    return _read_rows(_RowSource.of(source, name), list(columns), history=False,
                      n_items=n_items, require_label=require_label, vocab_sizes=vocab_sizes)


def _read_rows(rows: _RowSource, scalar_cols: Sequence[str], history: bool,
               n_items: Optional[int], require_label: bool,
               vocab_sizes: Optional[Mapping[str, int]], seq_len: Optional[int] = None
               ) -> SplitArrays:
    """The batch loop of :func:`read_split` and :func:`read_split_columns`."""
    path, schema, n = rows.name, rows.schema, rows.num_rows
    has_label = LABEL_COLUMN in schema.names
    if require_label and not has_label:
        raise DataValidationError(path, "missing column 'label' (needed for train/valid)",
                                  column=LABEL_COLUMN)
    check_columns(path, schema, list(scalar_cols) + ([SEQUENCE_COLUMN] if history else []))
    for name in scalar_cols:
        _kind(path, name, schema.field(name).type, "int")
    if history:
        _kind(path, SEQUENCE_COLUMN, schema.field(SEQUENCE_COLUMN).type, "int", list_of=True)
    if has_label:
        _kind(path, LABEL_COLUMN, schema.field(LABEL_COLUMN).type, "number")
    vocab = dict(vocab_sizes or {})
    bounds = {c: v - 1 for c, v in vocab.items()}
    if n_items is not None:
        bounds[TARGET_COLUMN] = n_items
    out: Dict[str, np.ndarray] = {}
    read_cols = list(scalar_cols) + ([SEQUENCE_COLUMN] if history else []) + \
        ([LABEL_COLUMN] if require_label else [])
    offset = 0
    # a bar only where reading takes seconds (the real train split: 3.6M rows, ~14 s)
    bar = tqdm(total=n, desc=f"read {getattr(path, 'name', path)}", unit="row",
               unit_scale=True, disable=n < _PROGRESS_ROWS)
    for batch in rows.batches(read_cols):
        size = batch.num_rows
        if history:
            seq = list_column_values(path, SEQUENCE_COLUMN, batch.column(SEQUENCE_COLUMN),
                                     offset, seq_len)
            if seq_len is None:
                seq_len = seq.shape[1]
            _check_range(path, SEQUENCE_COLUMN, seq, 0, n_items, offset, "item ids of item_info")
            nonzero = seq != 0
            gap = nonzero[:, :-1] & ~nonzero[:, 1:]  # an item followed by padding
            if gap.any():
                raise DataValidationError(path, "padding after an item: item_seq must be "
                                                "left-padded with 0 (most recent item last)",
                                          column=SEQUENCE_COLUMN, row=offset + _first(gap.any(1)))
            if SEQUENCE_COLUMN not in out:
                out[SEQUENCE_COLUMN] = np.empty((n, seq_len), dtype=narrowest_int_dtype(n_items))
            out[SEQUENCE_COLUMN][offset:offset + size] = seq
        for name in scalar_cols:
            array = batch.column(name)
            _check_no_nulls(path, name, array, offset)
            values = np.asarray(array.to_numpy(zero_copy_only=False))
            if name == TARGET_COLUMN:
                _check_range(path, name, values, 1, n_items, offset,
                             "item ids of item_info" if n_items is not None else
                             "item ids (0 is the padding id)")
            elif name in vocab:
                _check_range(path, name, values, 0, vocab[name] - 1, offset,
                             f"vocabulary of size {vocab[name]}")
            elif values.size and values.min() < 0:
                raise DataValidationError(path, "negative id", column=name,
                                          row=offset + _first(values < 0))
            if name not in out:  # bounded columns are stored narrow from the start
                out[name] = np.empty(n, dtype=narrowest_int_dtype(bounds[name])
                                     if name in bounds else np.int64)
            out[name][offset:offset + size] = values  # range-checked above, so the cast is safe
        if require_label:
            array = batch.column(LABEL_COLUMN)
            values = np.asarray(array.to_numpy(zero_copy_only=False))
            _check_no_nulls(path, LABEL_COLUMN, array, offset)
            bad = (values != 0) & (values != 1)
            if bad.any():
                row = _first(bad)
                raise DataValidationError(path, f"label {values[row]} is not 0 or 1",
                                          column=LABEL_COLUMN, row=offset + row)
            out.setdefault(LABEL_COLUMN, np.empty(n, dtype=np.int8))
            out[LABEL_COLUMN][offset:offset + size] = values
        offset += size
        bar.update(size)
    bar.close()
    if n == 0:
        raise DataValidationError(path, "has no rows")
    _narrow_unbounded(out, scalar_cols)
    if history:
        logger.info("Read %s: %d rows, history length %d, %.1f MB in memory", path, n, seq_len,
                    sum(a.nbytes for a in out.values()) / 2**20)
    else:
        logger.info("Read %s: %d rows, columns %s", path, n, list(out))
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
