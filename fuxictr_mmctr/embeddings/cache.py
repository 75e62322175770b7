"""The on-disk feature cache of the student: float16 memmaps plus done-masks, resumable.

Features go to ``numpy.memmap`` files with a done-mask saved after every batch, so an
interrupted run starts again at the first unfinished batch and never re-encodes a finished
one. A cache remembers what its features depend on (its fingerprint: the model, a hash of the
texts, the image folder) and starts afresh when that changes; an item whose image file changed
since it was encoded is encoded again (:meth:`FeatureCache.refresh_images`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError

logger = logging.getLogger(__name__)

META = "meta.json"
DONE = "done.npy"
STATUS = "image_status.npy"
IMAGE_STAT = "image_stat.npy"
# the parts a cache held before it said which (version 1: a CLIP image and text feature)
DEFAULT_PARTS: Tuple[str, ...] = ("image", "text")


class FeatureCache:
    """Float16 memmaps of one or more feature parts plus a done-mask, in one folder.

    Files: ``<part>.f16`` per part (``rows x dim`` float16; ``image.f16`` and ``text.f16`` for
    CLIP), ``done.npy`` (bool), ``image_status.npy`` (int8) and ``meta.json`` (the
    fingerprint: model, shape, a hash of the texts, the image folder). A cache whose
    fingerprint differs is started afresh.

    Args:
        folder: where the files live.
        rows: ``num_items + 1``.
        dim: feature dimension (every part).
        fingerprint: JSON-able description of what the features depend on.
        sync_seconds: at most this long between flushes of the memmaps to disk. Default: 30.
        parts: the feature parts. Default: ``("image", "text")``.

    Attributes:
        arrays: part -> ``(rows, dim)`` float16 memmap.
        done: ``(rows,)`` bool, True where the item is encoded.
        image_status: ``(rows,)`` int8 (see :mod:`.images`).
        meta: the fingerprint with the shape, as saved in ``meta.json``.
    """

    def __init__(self, folder, rows: int, dim: int, fingerprint: dict,
                 sync_seconds: float = 30.0, parts: Sequence[str] = DEFAULT_PARTS):
        self.sync_seconds = float(sync_seconds)
        self._last_sync = time.monotonic()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows, self.dim, self.parts = int(rows), int(dim), tuple(parts)
        self.meta = dict(fingerprint, rows=self.rows, dim=self.dim, version=1)
        if self.parts != DEFAULT_PARTS:
            self.meta["parts"] = list(self.parts)
        meta_path = self.folder / META
        fresh = True
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = None
            if old == self.meta and all((self.folder / f).exists() for f in self._files()):
                fresh = False
            else:
                logger.warning("feature cache %s was made for other inputs; starting afresh",
                               self.folder)
        mode = "w+" if fresh else "r+"
        self.arrays = self._open_arrays(mode)
        if fresh:
            self.done = np.zeros(self.rows, dtype=bool)
            self.image_status = np.zeros(self.rows, dtype=np.int8)
            self._save_masks()
            meta_path.write_text(json.dumps(self.meta, indent=1))
        else:
            self.done = np.load(self.folder / DONE)
            self.image_status = np.load(self.folder / STATUS)
            if self.done.shape != (self.rows,) or self.image_status.shape != (self.rows,):
                raise ConfigError(f"feature cache {self.folder}: done-mask has the wrong shape; "
                                  "delete the folder")
            logger.info("feature cache %s: resuming, %d of %d items already encoded",
                        self.folder, int(self.done[1:].sum()), self.rows - 1)

    @classmethod
    def open_readonly(cls, folder) -> "FeatureCache":
        """An existing cache as it is on disk, its memmaps read-only (nothing is written).

        Raises:
            OSError: a file is missing.
            ValueError: ``meta.json`` or a mask is unreadable or of the wrong shape.
        """
        self = cls.__new__(cls)
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / META).read_text())
        self.rows, self.dim = int(self.meta["rows"]), int(self.meta["dim"])
        self.parts = tuple(self.meta.get("parts", DEFAULT_PARTS))
        self.sync_seconds, self._last_sync = float("inf"), time.monotonic()
        self.done = np.load(self.folder / DONE)
        self.image_status = np.load(self.folder / STATUS)
        if self.done.shape != (self.rows,) or self.image_status.shape != (self.rows,):
            raise ValueError(f"feature cache {self.folder}: masks of the wrong shape")
        self.arrays = self._open_arrays("r")
        return self

    def _files(self):
        return [f"{p}.f16" for p in self.parts] + [DONE, STATUS]

    def _open_arrays(self, mode: str) -> Dict[str, np.memmap]:
        return {p: np.memmap(self.folder / f"{p}.f16", dtype=np.float16, mode=mode,
                             shape=(self.rows, self.dim)) for p in self.parts}

    @property
    def image(self) -> np.memmap:
        return self.arrays["image"]

    @property
    def text(self) -> np.memmap:
        return self.arrays["text"]

    def refresh_images(self, stats: np.ndarray) -> int:
        """Forget the encoded rows whose image file changed since they were encoded.

        Args:
            stats: ``(rows, 2)`` int64 ``(size, mtime_ns)`` of each item's image now, -1 where
                there is none (see :func:`image_file_stats`).

        Returns:
            how many encoded rows were reset (they are encoded again by the next pass).
        """
        path = self.folder / IMAGE_STAT
        old = np.load(path) if path.exists() else None
        if old is not None and old.shape == stats.shape:
            changed = self.done & (old != stats).any(axis=1)
        else:  # no record: trust nothing that was encoded
            changed = self.done.copy()
        changed[0] = False
        if changed.any():
            logger.warning("feature cache %s: %d encoded item(s) have a new or changed image "
                           "file; encoding them again", self.folder, int(changed.sum()))
            self.done[changed] = False
            self._save_masks()          # first forget, then record: a kill in between re-checks
        tmp = self.folder / ".image_stat.tmp.npy"
        np.save(tmp, stats)
        os.replace(tmp, path)
        return int(changed.sum())

    def _save_masks(self) -> None:
        for name, arr in ((DONE, self.done), (STATUS, self.image_status)):
            tmp = self.folder / f".{name}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, self.folder / name)

    def write(self, items: np.ndarray, parts: Mapping[str, np.ndarray],
              status: np.ndarray) -> None:
        """Store one batch in the memmaps, then mark it done (in that order, so a kill between
        the two re-encodes the batch rather than trusting half-written rows).

        Args:
            items: ``(B,)`` item ids.
            parts: part -> ``(B, dim)`` features, one entry per part of the cache.
            status: ``(B,)`` image status of the items.

        The rows are in the shared mapping as soon as they are assigned, so a killed process
        loses nothing; :meth:`sync` (every ``sync_seconds`` and at the end) forces them to disk
        against an OS crash, which an ``msync`` per batch would do at a measurable cost.
        """
        for name in self.parts:
            self.arrays[name][items] = parts[name].astype(np.float16)
        self.image_status[items] = status
        self.done[items] = True
        if time.monotonic() - self._last_sync >= self.sync_seconds:
            self.sync()
        else:
            self._save_masks()

    def sync(self) -> None:
        """Flush the memmaps to disk, then save the masks."""
        for array in self.arrays.values():
            array.flush()
        self._save_masks()
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Drop the memmaps (a read-only cache's files may be deleted afterwards)."""
        self.arrays = {}


def content_sha1(items: Sequence[str]) -> str:
    """A hash of a sequence of strings (the item texts a cache was made from)."""
    h = hashlib.sha1()
    for s in items:
        h.update(s.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


def cache_fingerprint(model: str, texts: Sequence[str], image_dir: Optional[Path],
                      tiny: bool = False, **settings) -> dict:
    """What the cached features depend on (see :class:`FeatureCache`): the model (a folder by
    its resolved path), a hash of the texts, the image folder, and the encoder's ``settings``
    (kind, layer, pooling...)."""
    model_id = str(Path(model).resolve()) if Path(model).exists() else model
    return {"model": model_id, "tiny": bool(tiny), "texts_sha1": content_sha1(texts),
            "image_dir": str(Path(image_dir).resolve()) if image_dir else None, **settings}


def image_file_stats(image_dir: Optional[Path], rows: int) -> np.ndarray:
    """``(rows, 2)`` int64 ``(size, mtime_ns)`` of ``<image_dir>/<item_id>.jpg``; -1 where the
    file (or the folder) is absent. One directory scan, no file is opened."""
    stats = np.full((rows, 2), -1, dtype=np.int64)
    if image_dir is None or not Path(image_dir).is_dir():
        return stats
    with os.scandir(image_dir) as entries:
        for entry in entries:
            stem, dot, ext = entry.name.partition(".")
            if ext != "jpg" or not stem.isdigit() or int(stem) >= rows:
                continue
            st = entry.stat()
            stats[int(stem)] = (st.st_size, st.st_mtime_ns)
    return stats
