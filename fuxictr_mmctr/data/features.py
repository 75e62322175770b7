"""Feature resolution and FuxiCTR's feature processor, extended for the MicroLens files.

This module owns every decision about the features of a dataset config; the processor, the
loader, the model base class and ``mmctr drop-in`` all ask it:

* :func:`feature_sides`: which features are read per row of a split and which per item from
  ``item_info``, which of them a model embeds, and the row-side vocabulary sizes.
* :func:`resolve_feature_cols`: the values a config may leave out, read from the data files:
  ``vocab_size`` of categorical/sequence columns (item-side columns from ``item_info``, row
  columns such as a categorical ``user_id`` from every split present, so a user first seen in
  valid or test still has a row), and the precomputed multimodal item embedding as a FuxiCTR
  pretrained embedding. A feature spec such as::

      {name: item_id, type: categorical, source: item, pretrained_emb: ./data/.../item_info.parquet,
       pretrained_emb_column: item_emb_d128, pretrain_dim: 128, freeze_emb: True,
       pretrain_usage: init}

  has the column read and checked (one row per item, fixed dimension, finite, padding row 0
  all zeros, every item present), to be written as FuxiCTR's h5 file (``key``/``value``) that
  FuxiCTR registers in the FeatureMap so its own ``PretrainedEmbedding`` serves it. A
  ``pretrained_emb`` that already is an ``.h5``/``.npz`` file is checked and used as is.
  A dense ``type: embedding`` column gets its ``pretrain_dim`` (its width, which FuxiCTR 2.3.10
  requires), taken from ``embedding_dim`` as the official config states it or read from
  ``item_info``, and checked against the data.

:class:`MMCTRFeatureProcessor` subclasses FuxiCTR's ``FeatureProcessor`` (the hook FuxiCTR
offers for preprocessing) and runs :func:`resolve_feature_cols` before FuxiCTR's own ``fit``.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import compat
from ..errors import ConfigError, DataFileNotFound, DataValidationError
from ..io import PathLike, atomic_path
from .schema import (SEQUENCE_COLUMN, TARGET_COLUMN, check_columns, check_finite_rows,
                     column_max, is_list_type, list_column_values, normalise_vectors,
                     open_parquet, vector_norm_of, warn_if_constant)

from fuxictr.preprocess import FeatureProcessor
from fuxictr.preprocess.tokenizer import load_pretrain_emb

logger = logging.getLogger(__name__)


def read_embedding_table(path, column: str, dim: Optional[int] = None,
                         n_items: Optional[int] = None, key_column: str = "item_id"):
    """Read and check one embedding column of an item table (item_info or item_emb).

    Args:
        path: parquet file with ``key_column`` and a list<float> ``column``.
        column: the embedding column, e.g. ``item_emb_d128`` or ``item_emb_d128_v3``.
        dim: expected dimension (the config's ``pretrain_dim``).
        n_items: when given, every item id 1..n_items must have a row.

    Returns:
        ``(keys, values)``: ``(n+1,)`` int64 ids 0..n and ``(n+1, dim)`` float32, row 0 the
        padding (zeros; added when the file has no row 0).

    Raises:
        DataValidationError: naming the file, column and row of the first problem.
    """
    path = Path(path)
    pf = open_parquet(path)
    check_columns(path, pf.schema_arrow, (key_column, column))
    value_type = pf.schema_arrow.field(column).type
    if not is_list_type(value_type) or not pa.types.is_floating(value_type.value_type):
        raise DataValidationError(path, f"expected list<float> embeddings, found {value_type}",
                                  column=column)
    table = pf.read(columns=[key_column, column])
    keys_array = table.column(key_column).combine_chunks()
    if keys_array.null_count or not pa.types.is_integer(keys_array.type):
        raise DataValidationError(path, f"item ids must be non-null integers ({keys_array.type})",
                                  column=key_column)
    keys = np.asarray(keys_array.to_numpy(zero_copy_only=False)).astype(np.int64)
    values = list_column_values(path, column, table.column(column).combine_chunks(), 0, None)
    values = values.astype(np.float32, copy=False)
    if dim is not None and values.shape[1] != dim:
        raise DataValidationError(path, f"dimension {values.shape[1]}, config says "
                                        f"pretrain_dim={dim}", column=column, row=0)
    check_finite_rows(path, column, values)
    if keys.size and keys.min() < 0:
        raise DataValidationError(path, "negative item id", column=key_column,
                                  row=int(np.flatnonzero(keys < 0)[0]))
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(np.diff(keys[order]) == 0)
    if dup.size:
        row = int(order[dup[0] + 1])
        raise DataValidationError(path, f"duplicate item id {keys[row]}", column=key_column,
                                  row=row)
    n = int(keys.max(initial=0)) if n_items is None else int(n_items)
    if keys.size and keys.max() > n:
        row = int(np.flatnonzero(keys > n)[0])
        raise DataValidationError(path, f"item id {keys[row]} beyond the {n} items of "
                                        "item_info", column=key_column, row=row)
    full = np.zeros((n + 1, values.shape[1]), dtype=np.float32)
    present = np.zeros(n + 1, dtype=bool)
    full[keys] = values
    present[keys] = True
    missing = np.flatnonzero(~present[1:])
    if missing.size:
        raise DataValidationError(path, f"{missing.size} item id(s) have no embedding, first "
                                        f"{missing[0] + 1}", column=key_column)
    if present[0] and np.any(full[0] != 0):
        raise DataValidationError(path, "padding row (item_id 0) must be all zeros",
                                  column=column, row=int(np.flatnonzero(keys == 0)[0]))
    warn_if_constant(path, column, full)
    return np.arange(n + 1, dtype=np.int64), full


def write_pretrained_h5(path, keys: np.ndarray, values: np.ndarray) -> Path:
    """FuxiCTR's pretrained-embedding file (datasets ``key`` and ``value``), written atomically."""
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("key", data=keys)
            hf.create_dataset("value", data=values)
    return Path(path)


def check_pretrained_h5(path, dim: Optional[int] = None) -> int:
    """Check an existing h5/npz pretrained file; return its dimension."""
    path = Path(path)
    if not path.exists():
        raise DataFileNotFound(path)
    try:
        keys, values = load_pretrain_emb(str(path), keys=["key", "value"])
    except (KeyError, OSError, ValueError) as exc:
        raise DataValidationError(path, f"not a pretrained-embedding file with datasets "
                                        f"'key' and 'value' ({exc})") from None
    if values.ndim != 2 or len(keys) != len(values):
        raise DataValidationError(path, f"'value' must be (len(key), dim), got {values.shape}",
                                  column="value")
    if dim is not None and values.shape[1] != dim:
        raise DataValidationError(path, f"dimension {values.shape[1]}, config says "
                                        f"pretrain_dim={dim}", column="value")
    check_finite_rows(path, "value", values)
    return int(values.shape[1])


# --------------------------------------------------------------------------------------------
# Which feature lives where
# --------------------------------------------------------------------------------------------
ITEM_SOURCE = "item"


@dataclass(frozen=True)
class FeatureSides:
    """Where each active feature of a dataset lives, and which of them a model embeds.

    Attributes:
        split_columns: columns read from every row of a split besides ``item_seq`` and
            ``item_id``, in config order: the row inputs and meta columns (``user_id``).
        row_inputs: the split columns a model embeds (not ``meta``); each row gives
            ``(B, sum of their widths)``.
        item_columns: item-side columns gathered from ``item_info`` per item
            (``item_id`` itself excluded: it is the index).
        item_inputs: the item-side features a model embeds, ``item_id`` included; each item
            gives ``(sum of their widths,)``.
        row_vocab_sizes: categorical row feature -> vocabulary size (ids must be below it).
    """

    split_columns: Tuple[str, ...]
    row_inputs: Tuple[str, ...]
    item_columns: Tuple[str, ...]
    item_inputs: Tuple[str, ...]
    row_vocab_sizes: Dict[str, int] = field(default_factory=dict)


def _named_specs(features) -> List[Tuple[str, Mapping]]:
    """``(name, spec)`` of every active feature of a feature map or of ``feature_cols``
    (list names expanded as FuxiCTR does)."""
    if isinstance(features, Mapping):
        return [(name, spec) for name, spec in features.items() if spec.get("active", True)]
    named = []
    for col in features:
        if not col.get("active", True):
            continue
        names = col["name"] if isinstance(col["name"], list) else [col["name"]]
        named.extend((name, col) for name in names)
    return named


def feature_sides(features) -> FeatureSides:
    """Split a dataset's features into row side and item side.

    Args:
        features: FuxiCTR ``FeatureMap.features`` (name -> spec) or a dataset's
            ``feature_cols`` (list of specs with ``name``); inactive features are left out.
            A feature with ``source: item`` is item-side; ``type: meta`` is never embedded.

    Returns:
        A :class:`FeatureSides`.
    """
    split_columns, row_inputs, item_columns, item_inputs = [], [], [], []
    vocab: Dict[str, int] = {}
    for name, spec in _named_specs(features):
        embedded = spec.get("type") != "meta"
        if spec.get("source") == ITEM_SOURCE:
            if name != TARGET_COLUMN:
                item_columns.append(name)
            if embedded:
                item_inputs.append(name)
            continue
        if name in (SEQUENCE_COLUMN, TARGET_COLUMN):
            continue
        split_columns.append(name)
        if embedded:
            row_inputs.append(name)
        if spec.get("type") == "categorical" and "vocab_size" in spec:
            vocab[name] = int(spec["vocab_size"])
    return FeatureSides(tuple(split_columns), tuple(row_inputs), tuple(item_columns),
                        tuple(item_inputs), vocab)


# --------------------------------------------------------------------------------------------
# What a config leaves out, read from the data
# --------------------------------------------------------------------------------------------
@dataclass
class PretrainedTable:
    """A pretrained-embedding table to write as FuxiCTR's h5 file.

    Attributes:
        path: where the resolved config points its ``pretrained_emb`` (relative paths as the
            config has them).
        keys: ``(n+1,)`` int64 item ids 0..n.
        values: ``(n+1, D)`` float32, row 0 the padding.
    """

    path: str
    keys: np.ndarray
    values: np.ndarray

    def write(self, root: Optional[PathLike] = None) -> Path:
        """Write the h5 file (atomically) at :attr:`path`, a relative one under ``root``."""
        target = write_pretrained_h5(_locate(root, self.path), self.keys, self.values)
        logger.info("Pretrained embedding written: %s (%d x %d)", target, *self.values.shape)
        return target


@dataclass
class ResolvedFeatures:
    """What :func:`resolve_feature_cols` returns.

    Attributes:
        feature_cols: the specs, copied, with ``vocab_size`` on every active categorical and
            sequence feature, ``pretrain_dim`` on every dense embedding feature and pretrained
            embeddings pointing at h5 files.
        pretrained_tables: the h5 files to write before FuxiCTR reads the specs.
    """

    feature_cols: List[dict]
    pretrained_tables: List[PretrainedTable] = field(default_factory=list)

    def write_pretrained(self, root: Optional[PathLike] = None) -> None:
        """Write every pretrained table (atomically), relative paths under ``root``."""
        for table in self.pretrained_tables:
            table.write(root)


def _locate(root: Optional[PathLike], path: PathLike) -> Path:
    return Path(path) if root is None else Path(root) / path


def resolve_feature_cols(feature_cols: Sequence[dict], item_info: Optional[PathLike] = None,
                         splits: Sequence[Optional[PathLike]] = (),
                         pretrained_dir: PathLike = ".",
                         root: Optional[PathLike] = None) -> ResolvedFeatures:
    """Fill in what a dataset's ``feature_cols`` leaves out, from the data files.

    FuxiCTR's processor needs ``vocab_size`` when ``rebuild_dataset: False`` (ids are used
    raw, not remapped): it is set to max id + 1, read from ``item_info`` for item-side
    features and from every split present for row features. A ``pretrained_emb`` is checked
    and, for a parquet column, read as a table to write to
    ``<pretrained_dir>/pretrained_source_<name>.h5``; its feature's vocabulary is widened to
    ``max item id + 2`` so ids 0..n map to themselves and FuxiCTR's OOV index sits past the
    last item.

    Args:
        feature_cols: the dataset's feature specs (not modified).
        item_info: the ``item_info.parquet`` the config names.
        splits: the train/valid/test files the config names (``None`` entries are skipped).
        pretrained_dir: folder of the h5 files, as the resolved config should name it.
        root: relative paths of the config resolve against it. Default: the current folder.

    Returns:
        A :class:`ResolvedFeatures`.

    Raises:
        DataFileNotFound: a file needed to resolve a feature does not exist.
        DataValidationError: a file is malformed (naming file, column and row).
        ConfigError: a bad pretrained spec, or no file named to read a vocabulary from.
    """
    cols: List[dict] = []
    tables: List[PretrainedTable] = []
    named_splits = [s for s in splits if s]
    for spec in feature_cols:
        names = spec["name"] if isinstance(spec["name"], list) else [spec["name"]]
        for name in names:
            col = dict(copy.deepcopy(spec), name=name)
            cols.append(col)
            if not col.get("active", True):
                continue
            if col.get("pretrained_emb"):
                table = _resolve_pretrained(col, item_info, pretrained_dir, root)
                if table is not None:
                    tables.append(table)
            if col.get("type") in ("categorical", "sequence") and "vocab_size" not in col:
                on_item = col.get("source") == ITEM_SOURCE
                files = ([item_info] if item_info else []) if on_item else named_splits
                col["vocab_size"] = _max_id(name, files, root, on_item) + 1
                logger.info("vocab_size of %s read from %s: %d", name, [str(f) for f in files],
                            col["vocab_size"])
                _warn_if_sparse(name, col["vocab_size"], files, root)
            if col.get("type") == "embedding":
                _resolve_embedding_width(col, item_info, root)
    return ResolvedFeatures(feature_cols=cols, pretrained_tables=tables)


def _list_width(path: PathLike, column: str) -> Optional[int]:
    """Length of the first non-null list of ``column`` in a parquet file (None: no rows)."""
    pf = open_parquet(path)
    check_columns(path, pf.schema_arrow, [column])
    typ = pf.schema_arrow.field(column).type
    if not is_list_type(typ):
        raise DataValidationError(path, f"expected a list<float> column, found {typ}",
                                  column=column)
    if pa.types.is_fixed_size_list(typ):
        return int(typ.list_size)
    for batch in pf.iter_batches(columns=[column], batch_size=64):
        for value in batch.column(0):
            if value.is_valid:
                return len(value)
    return None


def _resolve_embedding_width(col: dict, item_info: Optional[PathLike],
                             root: Optional[PathLike]) -> None:
    """Give a dense ``type: embedding`` column its ``pretrain_dim`` (in place).

    FuxiCTR 2.3.10's ``FeatureMap`` reads it (``KeyError: 'pretrain_dim'`` otherwise); the
    official config states the width as ``embedding_dim``
    (:func:`fuxictr_mmctr.compat.fill_pretrain_dim`). A config that states neither gets the
    column's width in ``item_info``. (The loader checks the data against the width.)
    """
    width = None
    if col.get("pretrain_dim") is None and col.get("embedding_dim") is None:
        if not (item_info and col.get("source") == ITEM_SOURCE):
            raise ConfigError(f"feature {col['name']}: a type: embedding column needs "
                              "pretrain_dim (its width in the data)")
        if not _locate(root, item_info).exists():
            raise DataFileNotFound(_locate(root, item_info))
        width = _list_width(_locate(root, item_info), col["name"])
    compat.fill_pretrain_dim(col, width)


# An inferred vocabulary this large whose ids fill less than 5% of it is most likely a stray id
# (e.g. one item_tags value of 10**6): the embedding table and every checkpoint grow with it.
_SPARSE_VOCAB_ROWS, _SPARSE_VOCAB_FILL = 100_000, 0.05


def _warn_if_sparse(name: str, vocab_size: int, files, root) -> None:
    if vocab_size < _SPARSE_VOCAB_ROWS:
        return
    distinct = set()
    for f in files:
        path = _locate(root, f)
        if not path.exists():
            continue
        column = open_parquet(path).read(columns=[name]).column(0).combine_chunks()
        if hasattr(column, "flatten") and column.type.num_fields == 1:
            column = column.flatten()
        distinct.update(pc.unique(column).to_pylist())
    if len(distinct) < _SPARSE_VOCAB_FILL * vocab_size:
        logger.warning("vocab_size of %s inferred as %d from its largest id, but only %d distinct "
                       "ids occur: the embedding table (and each checkpoint) gets %d rows. "
                       "Declare vocab_size in the dataset config to refuse stray ids, or remap "
                       "the ids to 0..n", name, vocab_size, len(distinct), vocab_size)


def _max_id(name: str, files: Sequence[PathLike], root: Optional[PathLike],
            on_item: bool) -> int:
    """Largest id of column ``name`` over the files present among ``files``."""
    if not files:
        raise ConfigError(f"feature {name}: no vocab_size and no file to read it from "
                          f"(set {'item_info' if on_item else 'train_data'})")
    present = [f for f in files if _locate(root, f).exists()]
    if not present:
        raise DataFileNotFound(_locate(root, files[0]))
    absent = [str(f) for f in files if f not in present]
    if absent:
        logger.warning("vocab_size of %s read from %s only: %s not found. An id first seen "
                       "there would fall past the embedding table; resolve again once it is "
                       "in place", name, [str(f) for f in present], absent)
    return max(column_max(_locate(root, f), name) for f in present)


def _resolve_pretrained(col: dict, item_info: Optional[PathLike], pretrained_dir: PathLike,
                        root: Optional[PathLike]) -> Optional[PretrainedTable]:
    """Check ``col``'s pretrained embedding and point it at an h5 file (in place)."""
    name = col["name"]
    if col.get("type") != "categorical":
        raise ConfigError(f"feature {name}: pretrained_emb needs a categorical feature, not "
                          f"{col.get('type')}")
    usage = col.setdefault("pretrain_usage", "init")
    if usage not in ("init", "sum", "concat"):
        raise ConfigError(f"feature {name}: pretrain_usage={usage!r}, expected init, sum or "
                          "concat")
    col.setdefault("freeze_emb", True)
    dim = col.get("pretrain_dim")
    if dim is not None and not isinstance(dim, int):
        raise ConfigError(f"feature {name}: pretrain_dim must be an integer")
    source = str(col["pretrained_emb"])
    column = col.pop("pretrained_emb_column", "item_emb_d128")
    norm = vector_norm_of(name, col)
    if norm != "none" and not source.endswith(".parquet"):
        raise ConfigError(f"feature {name}: normalize_vectors={norm!r} rescales a parquet "
                          f"source as it is read; {source} is an h5 file, written as it is "
                          "used: rescale it when you write it")
    table = None
    if source.endswith(".parquet"):
        n_items = (column_max(_locate(root, item_info), TARGET_COLUMN)
                   if item_info and col.get("source") == ITEM_SOURCE else None)
        keys, values = read_embedding_table(_locate(root, source), column, dim=dim,
                                            n_items=n_items)
        values = normalise_vectors(values, norm)
        target = os.path.join(str(pretrained_dir), f"pretrained_source_{name}.h5")
        table = PretrainedTable(path=target, keys=keys, values=values)
        logger.info("Pretrained %s: %s[%s] -> %s (%d x %d)", name, source, column, target,
                    *values.shape)
        col["pretrained_emb"] = target
        col["pretrain_dim"] = int(values.shape[1])
    else:
        file = _locate(root, source)
        col["pretrain_dim"] = check_pretrained_h5(file, dim)
        keys = np.asarray(load_pretrain_emb(str(file), keys=["key"]))
        if not np.issubdtype(keys.dtype, np.integer):
            raise DataValidationError(file, "keys must be integer item ids", column="key")
    col["vocab_size"] = max(int(col.get("vocab_size", 0)), int(np.max(keys)) + 2)
    return table


# --------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------
class MMCTRFeatureProcessor(FeatureProcessor):
    """``FeatureProcessor`` that knows where MicroLens keeps each column.

    Args:
        feature_cols, label_col, dataset_id, data_root: as FuxiCTR's ``FeatureProcessor``.
        item_info: path of ``item_info.parquet`` (item-side columns live there).
        train_data, valid_data, test_data: the splits (row columns live there).
        **kwargs: the rest of the experiment params.
    """

    def __init__(self, feature_cols=None, label_col=None, dataset_id=None, data_root="./data/",
                 item_info: Optional[str] = None, train_data: Optional[str] = None,
                 valid_data: Optional[str] = None, test_data: Optional[str] = None, **kwargs):
        super().__init__(feature_cols=list(feature_cols or []), label_col=label_col or [],
                         dataset_id=dataset_id, data_root=data_root, **kwargs)
        self.item_info = item_info
        self.splits = [p for p in (train_data, valid_data, test_data) if p]

    def set_output_dir(self, folder) -> None:
        """Write the feature map, vocabulary, pickle and pretrained h5 to ``folder`` instead of
        FuxiCTR's shared ``<data_root>/<dataset_id>/`` (training stages them privately)."""
        self.data_dir = str(folder)
        self.pickle_file = os.path.join(self.data_dir, "feature_processor.pkl")
        self.json_file = os.path.join(self.data_dir, "feature_map.json")
        self.vocab_file = os.path.join(self.data_dir, "feature_vocab.json")
        self.feature_map.data_dir = self.data_dir

    def resolve_features(self) -> None:
        """:func:`resolve_feature_cols` on this processor's specs; write the h5 tables."""
        resolved = resolve_feature_cols(self.feature_cols, item_info=self.item_info,
                                        splits=self.splits, pretrained_dir=self.data_dir)
        resolved.write_pretrained()
        self.feature_cols = resolved.feature_cols

    def fit_embedding_col(self, col):
        """FuxiCTR's, keeping ``pretrain_dim``: a dense ``type: embedding`` column of width
        ``pretrain_dim`` is then projected to ``embedding_dim`` (FuxiCTR 2.3.7 drops the key,
        so its Linear would expect ``embedding_dim`` inputs); and ``normalize_vectors``, which
        the loaders read from the feature map (:func:`~fuxictr_mmctr.data.loader.item_table`)."""
        super().fit_embedding_col(col)
        spec = self.feature_map.features[col["name"]]
        if "pretrain_dim" in col:
            spec["pretrain_dim"] = int(col["pretrain_dim"])
        if col.get("normalize_vectors", "none") != "none":
            spec["normalize_vectors"] = col["normalize_vectors"]

    def fit(self, train_ddf=None, rebuild_dataset=False, **kwargs):
        if not rebuild_dataset:
            self.resolve_features()
        return super().fit(train_ddf, rebuild_dataset=rebuild_dataset, **kwargs)
