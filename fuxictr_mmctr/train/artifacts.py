"""What a trained model needs besides its weights, kept so that no run can spoil another's model.

FuxiCTR writes the fitted feature map (``feature_map.json``, its vocabulary, pickled processor
and pretrained-embedding h5) to ``<data_root>/<dataset_id>/``, one folder shared by every run of
the dataset: a later run that fails on bad data used to rewrite it before failing, and the good
checkpoint no longer fitted. Here:

* the processor writes into a private staging folder; once the run has read and checked its
  data, the folder is *published* as ``<model_root>/<dataset_id>/feature_maps/<digest>/``,
  named by the digest of its content. Published folders are never rewritten, so two runs (or
  two configs sharing a dataset id) cannot clobber each other's feature map;
* every checkpoint write records, in ``<checkpoint>.meta.json``, the sha256 of the weights it
  is about to put in place and the feature-map folder they belong to (before the rename, so a
  crash in between leaves an entry for a checkpoint that never landed, never the reverse);
* loading a trained model hashes its checkpoint and takes the feature map recorded for it;
* :func:`expid_lock` lets one run of an expid train at a time (the second refuses, naming the
  first's pid) instead of interleaving two runs' logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from ..errors import ConfigError
from ..io import atomic_path

logger = logging.getLogger(__name__)

FEATURE_MAPS = "feature_maps"
FEATURE_MAP_JSON = "feature_map.json"
_HISTORY = 20  # checkpoint records kept per expid
# Written by FuxiCTR's processor, but holding the staging path: not part of the content digest.
_NOT_HASHED = {"feature_processor.pkl"}


def model_dir(params: dict) -> Path:
    """``<model_root>/<dataset_id>``: where FuxiCTR puts an expid's checkpoint and log."""
    return Path(params.get("model_root", "./checkpoints/")) / params["dataset_id"]


def checkpoint_path(params: dict) -> Path:
    """The checkpoint FuxiCTR's ``BaseModel`` uses for ``params`` (same rule as its __init__)."""
    return (model_dir(params) / f"{params['model_id']}.model").resolve()


def staging_dir(params: dict) -> Path:
    """A fresh private folder for the processor's output (under ``feature_maps/``, so the
    publishing rename stays on one file system)."""
    root = model_dir(params) / FEATURE_MAPS
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".staging-{params['model_id']}-", dir=root))


def _content_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name in _NOT_HASHED:
            continue
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(_file_sha256(path).encode() + b"\0")
    return digest.hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(staging: Path) -> Path:
    """Move a finished staging folder to its content-addressed home; return that home.

    When an identical folder is already published (same config and data), it is reused and
    the staging copy removed.
    """
    staging = Path(staging)
    final = staging.parent / _content_digest(staging)
    try:
        os.rename(staging, final)
        logger.info("Feature map published: %s", final)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        logger.info("Feature map unchanged: %s", final)
    return final


def discard(staging: Optional[Path]) -> None:
    """Remove a staging folder of a run that stopped before publishing."""
    if staging is not None and Path(staging).name.startswith(".staging-"):
        shutil.rmtree(staging, ignore_errors=True)


def _meta_path(checkpoint) -> Path:
    return Path(str(checkpoint) + ".meta.json")


def record_checkpoint(checkpoint, weights_file, feature_dir, extra: Optional[dict] = None) -> None:
    """Note that ``weights_file`` (about to be renamed onto ``checkpoint``) goes with
    ``feature_dir``. Called by the model's ``save_weights`` before the rename (see
    :func:`attach_recorder`)."""
    meta = _meta_path(checkpoint)
    history = _read_meta(meta)
    entry = {"sha256": _file_sha256(Path(weights_file)),
             "feature_dir": os.path.relpath(feature_dir, Path(checkpoint).parent),
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             **(extra or {})}
    history = [e for e in history if e.get("sha256") != entry["sha256"]][-(_HISTORY - 1):]
    with atomic_path(meta, suffix=".json") as tmp:
        tmp.write_text(json.dumps({"history": history + [entry]}, indent=1))


def attach_recorder(model, feature_dir) -> None:
    """Make every checkpoint ``model`` writes record that its weights go with ``feature_dir``
    (:func:`record_checkpoint`, through the model's ``checkpoint_recorder``)."""
    model.checkpoint_recorder = lambda checkpoint, weights_file: record_checkpoint(
        checkpoint, weights_file, feature_dir)


def _read_meta(meta: Path) -> list:
    if not meta.exists():
        return []
    try:
        return list(json.loads(meta.read_text()).get("history", []))
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"unreadable checkpoint record ({exc}); retrain the expid",
                          path=meta) from None


def feature_dir_for(checkpoint) -> Optional[Path]:
    """The feature-map folder recorded for the weights now at ``checkpoint``, or None when the
    checkpoint has no record (written before records existed)."""
    checkpoint = Path(checkpoint)
    history = _read_meta(_meta_path(checkpoint))
    if not history or not checkpoint.exists():
        return None
    digest = _file_sha256(checkpoint)
    for entry in reversed(history):
        if entry.get("sha256") == digest:
            folder = (checkpoint.parent / entry["feature_dir"]).resolve()
            if not (folder / FEATURE_MAP_JSON).is_file():
                raise ConfigError(f"the feature map of this checkpoint ({folder}) is gone; "
                                  "retrain the expid", path=checkpoint)
            return folder
    raise ConfigError("no feature map is recorded for these weights (the checkpoint was "
                      "replaced by hand?); retrain the expid", path=checkpoint)


@contextlib.contextmanager
def expid_lock(params: dict) -> Iterator[Path]:
    """Hold ``<model_root>/<dataset_id>/<expid>.lock`` while an expid trains.

    Raises:
        ConfigError: another process holds the lock (the same expid is already training).
    """
    import fcntl  # POSIX only: imported where the lock is taken, so the module loads anywhere

    folder = model_dir(params)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{params['model_id']}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(f"expid {params['model_id']!r} is already training ({holder}); "
                              "wait for it or use another expid", path=path) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield path
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
