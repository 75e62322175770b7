"""A vectorised MicroLens loader that keeps the official batch contract.

``MMCTRDataLoader`` is passed to FuxiCTR's ``RankDataLoader`` through its ``data_loader=`` hook,
exactly like the official challenge loader, and yields the same tuples::

    batch_dict  {column: (B,)}           split columns in the feature map (user_id, likes_level,
                                         views_level, label, ...), item_seq and item_id removed
    item_dict   {column: (B*(L+1), ...)} item_info columns in the feature map, gathered for the
                                         last L = max_len history items then the target item
    mask        (B, L) float32           1 where the history position holds an item

The official collate runs a pandas ``.iloc`` per batch. Here the split is held once as NumPy
arrays of the narrowest integer type (see :mod:`fuxictr_mmctr.data.schema`) and the item side as
arrays indexed by ``item_id``, so a batch is a handful of array gathers and no pandas work.

With ``item_side="ids"`` the loader ships only ids (``item_dict = {"item_id": ...}``): the model
gathers tags and the pretrained embedding on its own device (see the pretrained-embedding route).

The shuffled order of an epoch is a function of ``(seed, epoch)`` alone (:func:`epoch_order`, its
own generator), so a run's batches do not depend on what else drew random numbers, on the
number of processes, or on where a resumed run starts.

Feeding a CUDA device (``gpu >= 0``), batches are gathered straight into pinned host memory and
copied to the device on a side stream one batch ahead (:mod:`.device`): the batches come out on
the device, but for the meta columns (``user_id``, the group id of the metrics), which stay on
the host. On the CPU nothing of this happens.

Under ``torchrun`` (``world_size > 1``, see :mod:`fuxictr_mmctr.train.distributed`) every rank
holds the whole split. The train split is cut into the same global batches on every rank (every
rank draws the same :func:`epoch_order`) and each rank takes its share of each batch,
:func:`batch_share`; a batch is then a :class:`Share`, which also says how many rows of the
global batch it holds. Other splits are cut into one contiguous block per rank, so the ranks'
predictions put together in rank order are in file order.
"""
from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from .. import compat
from ..config_contract import check_value
from ..errors import ConfigError
from .device import host_empty, loader_device, prefetch_to_device
from .features import feature_sides
from .schema import (SEQUENCE_COLUMN, TARGET_COLUMN, ItemTable, SplitArrays, check_item_table,
                     mean_vector_norm, normalise_vectors, read_item_info, read_split,
                     vector_norm_of)

logger = logging.getLogger(__name__)

Batch = Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], torch.Tensor]

# The item_info file last read in this process, keyed by (path, mtime): the model's device
# tables and the train, valid and test loaders of one run share one read of the item side.
# Only :func:`item_table` touches it.
_ITEM_CACHE: Dict[tuple, ItemTable] = {}
# The same table with its vector columns rescaled (``normalize_vectors``), keyed by the cache
# key and the modes: the raw arrays stay shared, the rescaled ones are made once.
_SCALED_CACHE: Dict[tuple, ItemTable] = {}


def item_table(item_info, feature_map=None) -> ItemTable:
    """The item side of a config: ``item_info`` with the item columns ``feature_map`` declares.

    Every loader and model of a process gets the same table: the file is read once per process
    (per path and modification time); a request for columns not read yet re-reads the union,
    and only the newest table is kept.

    Args:
        item_info: path of ``item_info.parquet`` (row index == item_id).
        feature_map: FuxiCTR ``FeatureMap``; every ``source: item`` feature but ``item_id`` is
            read (tags, the embedding column). None: ``item_id`` only (enough for the number
            of items). Default: None.

    Returns:
        The :class:`~fuxictr_mmctr.data.schema.ItemTable`; ``columns[name]`` is
        ``(n_items + 1, ...)``, row 0 the padding item.
    """
    columns = list(feature_sides(feature_map.features).item_columns) \
        if feature_map is not None else []
    widths, vocab = _item_expectations(feature_map, columns)
    norms = vector_norms(feature_map, columns)
    path = Path(item_info)
    key = (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else None)
    cached = _ITEM_CACHE.get(key)
    if cached is None or not set(columns) <= set(cached.columns):
        loaded = [c for c in cached.columns if c != "item_id"] if cached else []
        _ITEM_CACHE.clear()  # keep at most one item table alive
        _ITEM_CACHE[key] = read_item_info(path, columns=list(dict.fromkeys(loaded + columns)),
                                          list_widths=widths, vocab_sizes=vocab)
    elif widths or vocab:  # read for another config earlier: check it against this one
        check_item_table(_ITEM_CACHE[key], widths, vocab)
    if not norms:
        return _ITEM_CACHE[key]
    scaled_key = (key, tuple(sorted(norms.items())))
    if scaled_key not in _SCALED_CACHE:
        _SCALED_CACHE.clear()  # at most one rescaled copy alive too
        raw = _ITEM_CACHE[key]
        _SCALED_CACHE[scaled_key] = ItemTable(path=raw.path, columns={
            name: normalise_vectors(array, norms[name]) if name in norms else array
            for name, array in raw.columns.items()})
        for name, mode in norms.items():
            logger.info("%s: %s normalize_vectors %s (mean L2 norm %.4g -> %.4g)", raw.path, name,
                        mode, mean_vector_norm(raw.columns[name]),
                        mean_vector_norm(_SCALED_CACHE[scaled_key].columns[name]))
    return _SCALED_CACHE[scaled_key]


def vector_norms(feature_map, columns) -> Dict[str, str]:
    """``{column: mode}`` of every dense item column whose feature spec asks for
    ``normalize_vectors`` other than ``none`` (:func:`~fuxictr_mmctr.data.schema.
    normalise_vectors`)."""
    found = {}
    for name in columns:
        spec = feature_map.features[name]
        mode = vector_norm_of(name, spec)
        if mode != "none":
            if spec.get("type") != "embedding":
                raise ConfigError(f"feature {name}: normalize_vectors needs a dense "
                                  f"`type: embedding` column, not {spec.get('type')}")
            found[name] = mode
    return found


def _item_expectations(feature_map, columns):
    """What the feature map declares of each item column: the width of a dense ``type:
    embedding`` column (``pretrain_dim``, else ``embedding_dim``) and the vocabulary of an id
    column, so a 64-d column or an id past the vocabulary is refused when item_info is read."""
    widths, vocab = {}, {}
    for name in columns:
        spec = feature_map.features[name]
        if spec.get("type") == "embedding":
            dim = compat.stored_width(spec)
            if dim is not None:
                widths[name] = dim
        elif spec.get("type") in ("categorical", "sequence") and "vocab_size" in spec:
            vocab[name] = int(spec["vocab_size"])
    return widths, vocab


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled row order of ``epoch``: ``(num_samples,)``, a function of ``(seed, epoch)``.

    Drawn from its own generator (NumPy's ``default_rng([seed, epoch])``), never from the
    global RNG: one process and every rank of a data-parallel run see the same global
    batches, and a run resumed at ``epoch`` sees the order it would have seen.
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(num_samples))


def batch_share(rows, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of one global batch: ``np.array_split(rows, world_size)[rank]``.

    The shares of ranks ``0..world_size-1`` put together in rank order are ``rows``; their
    sizes differ by at most one, and a batch smaller than the world leaves some shares empty.

    Args:
        rows: the row indices of the global batch, ``(B,)``.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: the number of processes.

    Returns:
        ``(B_rank,)`` the rows of this rank, a view of ``rows``.
    """
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} outside a world of {world_size} process(es)")
    return np.array_split(np.asarray(rows), world_size)[rank]


class Share(tuple):
    """One rank's share of a global train batch: the usual ``(batch_dict, item_dict, mask)``.

    Attributes:
        rows: rows of the global batch this share holds and that count in the loss. 0 when
            the global batch has fewer rows than there are ranks: the tuple then holds one
            stand-in row (the batch's first) so the rank still runs forward and backward and
            takes part in the gradient all-reduce, with a zero weight.
        global_rows: rows of the global batch, ``B``.
    """

    rows: int
    global_rows: int

    def __new__(cls, batch, rows: int, global_rows: int):
        share = super().__new__(cls, batch)
        share.rows, share.global_rows = int(rows), int(global_rows)
        return share

    def with_batch(self, batch) -> "Share":
        """The same share holding other tensors (the batch copied to a device)."""
        return Share(batch, self.rows, self.global_rows)


class MMCTRDataLoader:
    """Iterate one split in batches of ``(batch_dict, item_dict, mask)``.

    Args:
        feature_map: FuxiCTR ``FeatureMap``; its features decide which columns are shipped.
        data_path: the split's parquet file (``.parquet`` is appended when missing).
        item_info: the ``item_info.parquet`` file (row index == item_id).
        split: ``train``, ``valid`` or ``test``; a test file may lack ``label``.
        batch_size: rows per batch. Default: 32.
        shuffle: reshuffle rows every epoch, in :func:`epoch_order` of ``(seed, epoch)``.
            Default: False.
        seed: the experiment's seed (FuxiCTR's ``seed`` key), which with the epoch decides
            the shuffled order. Default: 2024 (FuxiCTR's).
        num_workers: batches assembled ahead in a background thread (0: assemble inline).
        max_len: history length L fed to the model (the last ``max_len`` positions). Default: 100.
        item_side: ``"features"`` gathers every item column of the feature map (the official
            contract); ``"ids"`` ships only item ids for models that gather on their device.
        rank, world_size: this process's place in a data-parallel run (``torchrun``).
            ``world_size > 1`` turns the train split into :class:`Share` batches of the
            global ``batch_size`` and other splits into this rank's contiguous block of rows.
            Default: 0 and 1 (one process: every row, plain tuples).
        gpu: the device the batches feed (the model's ``gpu``): ``>= 0`` with CUDA
            available, batches are copied to ``cuda:<gpu>`` one ahead on a side stream
            (meta columns stay on the host); -1: CPU tensors as before. Default: -1.
        pin_memory: gather batches into pinned host memory, so the copies overlap compute.
            Default: None (on when the loader feeds a CUDA device).
        **kwargs: the rest of the FuxiCTR params, ignored.

    Attributes:
        num_samples, num_blocks, num_batches, batch_size: as FuxiCTR's loaders (``num_samples``
            counts the whole split; ``num_batches`` is the number of global batches of the
            train split, the same on every rank, or of this rank's batches of another split).
        shard: ``(start, stop)`` rows of a non-train split this rank scores.
        epoch: the epoch the next iteration draws its order for; each iteration advances it
            (FuxiCTR's ``fit`` iterates the train loader once per epoch). :meth:`set_epoch`
            sets it, e.g. for a resumed run.
        device: where batches come out (``cpu``, or the CUDA device of ``gpu``).
    """

    def __init__(self, feature_map, data_path, item_info=None, split: str = "train",
                 batch_size: int = 32, shuffle: bool = False, num_workers: int = 0,
                 max_len: int = 100, item_side: str = "features", rank: int = 0,
                 world_size: int = 1, seed: int = 2024, gpu: int = -1,
                 pin_memory: Optional[bool] = None, **kwargs):
        if item_info is None:
            raise ConfigError("MMCTRDataLoader needs `item_info` (path of item_info.parquet) "
                              "in the dataset config")
        check_value("item_side", item_side)
        data_path = str(data_path)
        if not data_path.endswith(".parquet"):
            data_path += ".parquet"
        self.feature_map = feature_map
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.num_workers = int(num_workers or 0)
        self.max_len = int(max_len)
        self.item_side = item_side
        self.split = split
        self.rank, self.world_size = int(rank), int(world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {rank} outside a world of {world_size} process(es)")
        sides = feature_sides(feature_map.features)
        item_cols_loaded = list(sides.item_columns) if item_side == "features" else []
        self.items = item_table(item_info, feature_map if item_side == "features" else None)
        labels = list(feature_map.labels)
        self.data: SplitArrays = read_split(
            data_path, n_items=self.items.num_items, require_label=split != "test",
            extra_columns=[c for c in sides.split_columns if c not in labels],
            vocab_sizes=sides.row_vocab_sizes)
        columns = self.data.columns
        self._batch_cols = [c for c in list(sides.split_columns) + labels if c in columns]
        self._item_cols = [TARGET_COLUMN] + item_cols_loaded
        self.num_samples = self.data.num_rows
        self.num_blocks = 1
        self.shard = (0, self.num_samples)
        if self.world_size > 1 and split != "train":
            block = batch_share(np.arange(self.num_samples), self.rank, self.world_size)
            self.shard = (int(block[0]), int(block[-1]) + 1) if block.size else (0, 0)
        self.num_batches = int(np.ceil((self.shard[1] - self.shard[0]) / self.batch_size))
        self.seq_len = min(self.max_len, self.data.seq_len)
        self.device = loader_device(gpu)
        check_value("pin_memory", pin_memory)
        self.pin_memory = (self.device.type == "cuda") if pin_memory is None else bool(pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            raise ConfigError("pin_memory: True needs CUDA (this torch sees no GPU)",
                              option="pin_memory")
        # meta columns (user_id as the metrics' group id) are not model inputs: kept on the host
        self._host_cols = {c for c in self._batch_cols
                           if feature_map.features.get(c, {}).get("type") == "meta"}

    def __len__(self) -> int:
        return self.num_batches

    def make_batch(self, rows) -> Batch:
        """Assemble the batch for ``rows`` (a slice or an index array), on the host.

        Every array is gathered straight into its output (pinned with :attr:`pin_memory`).
        """
        cols, pin, L = self.data.columns, self.pin_memory, self.seq_len
        n = len(range(*rows.indices(self.num_samples))) if isinstance(rows, slice) else len(rows)
        batch_dict = {}
        for c in self._batch_cols:
            batch_dict[c], out = host_empty((n,) + cols[c].shape[1:], cols[c].dtype, pin)
            if isinstance(rows, slice):
                out[...] = cols[c][rows]
            else:  # sorted row indices, in range: no bounds check (mode="clip")
                np.take(cols[c], rows, axis=0, mode="clip", out=out)
        seq, target = cols[SEQUENCE_COLUMN], cols[TARGET_COLUMN]
        ids, items = host_empty((n, L + 1), np.result_type(seq.dtype, target.dtype), pin)
        items[:, :L] = seq[rows, -L:]                                           # (B, L) history
        items[:, L] = target[rows]                                              # target last
        flat = items.reshape(-1)                                                # (B*(L+1),)
        item_dict = {TARGET_COLUMN: ids.view(-1)}
        for c in self._item_cols[1:]:
            # ids were range-checked when the split was read, so skip numpy's bounds check
            # (mode="raise" also gathers through an extra buffer)
            table = self.items.columns[c]
            item_dict[c], out = host_empty((flat.size,) + table.shape[1:], table.dtype, pin)
            np.take(table, flat, axis=0, mode="clip", out=out)
        mask, out = host_empty((n, L), np.float32, pin)
        np.greater(items[:, :L], 0, out=out)                                    # (B, L)
        return batch_dict, item_dict, mask

    def to_device(self, batch: Batch, device: torch.device, non_blocking: bool = False) -> Batch:
        """``batch`` with its model inputs on ``device`` (meta columns stay on the host);
        a :class:`Share` stays a Share."""
        batch_dict, item_dict, mask = batch
        moved = ({c: v if c in self._host_cols else v.to(device, non_blocking=non_blocking)
                  for c, v in batch_dict.items()},
                 {c: v.to(device, non_blocking=non_blocking) for c, v in item_dict.items()},
                 mask.to(device, non_blocking=non_blocking))
        return batch.with_batch(moved) if isinstance(batch, Share) else moved

    @property
    def sharded_batches(self) -> bool:
        """True when batches are :class:`Share` s of global batches (train split, world > 1)."""
        return self.world_size > 1 and self.split == "train"

    def _batches(self, order) -> Iterator[Batch]:
        if self.sharded_batches:
            for start in range(0, self.num_samples, self.batch_size):
                rows = (np.sort(order[start:start + self.batch_size]) if order is not None
                        else np.arange(start, min(start + self.batch_size, self.num_samples)))
                share = batch_share(rows, self.rank, self.world_size)
                yield Share(self.make_batch(share if share.size else rows[:1]),
                            rows=share.size, global_rows=rows.size)
        elif order is not None:
            for start in range(0, self.num_samples, self.batch_size):
                yield self.make_batch(np.sort(order[start:start + self.batch_size]))
        else:
            first, stop = self.shard
            for start in range(first, stop, self.batch_size):
                yield self.make_batch(slice(start, min(start + self.batch_size, stop)))

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration draw the order of ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def _epoch_order(self):
        """This epoch's shuffled row order (None without shuffling); advances the epoch.
        Every rank draws the same order, so all cut the same global batches. A rank's block
        of another split is read in order."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        if not self.shuffle or (self.world_size > 1 and not self.sharded_batches):
            return None
        return epoch_order(self.num_samples, self.seed, epoch)

    def __iter__(self) -> Iterator[Batch]:
        batches = self._batches(self._epoch_order())
        if self.num_workers > 0:
            batches = _prefetch(batches, depth=self.num_workers)
        if self.device.type == "cuda":
            batches = prefetch_to_device(batches, self.device, self.to_device)
        return batches


def _prefetch(batches: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Run ``batches`` in a background thread, ``depth`` batches ahead.

    NumPy's gathers and torch's ops release the GIL, so assembling the next batch overlaps the
    model's step. Exceptions in the thread are re-raised in the consumer.
    """
    buffer: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for batch in batches:
                if stop.is_set():
                    return
                buffer.put(batch)
            buffer.put(done)
        except BaseException as exc:  # surfaced in the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="mmctr-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
