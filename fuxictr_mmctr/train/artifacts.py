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
* each record also holds what the weights' outputs depend on besides the split they score
  (:func:`model_inputs`): the resolved model and loader settings and the sha256 of the contents
  of every item-side table and pretrained file read. :mod:`fuxictr_mmctr.train.blend` keys its
  prediction cache on the same record;
* loading a trained model hashes its checkpoint, takes the feature map recorded for it, and
  refuses (:func:`check_inputs`) when today's config or files differ from what it was trained
  on, naming the key (old and new value) or the file;
* :func:`expid_lock` lets one run of an expid train at a time (the second refuses, naming the
  first's pid) instead of interleaving two runs' logs and checkpoints.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from ..data.loader import MMCTRDataLoader
from ..errors import ConfigError
from ..io import atomic_path, file_digest
from ..models import MODELS

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
        digest.update(file_digest(path).encode() + b"\0")
    return digest.hexdigest()[:16]


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
    ``feature_dir`` (and, in ``extra``, with the inputs of :func:`model_inputs`). Called by the
    model's ``save_weights`` before the rename (see :func:`attach_recorder`)."""
    meta = _meta_path(checkpoint)
    history = _read_meta(meta)
    entry = {"sha256": file_digest(weights_file),
             "feature_dir": os.path.relpath(feature_dir, Path(checkpoint).parent),
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             **(extra or {})}
    history = [e for e in history if e.get("sha256") != entry["sha256"]][-(_HISTORY - 1):]
    with atomic_path(meta, suffix=".json") as tmp:
        tmp.write_text(json.dumps({"history": history + [entry]}, indent=1))


def attach_recorder(model, feature_dir, inputs: Optional[dict] = None) -> None:
    """Make every checkpoint ``model`` writes record that its weights go with ``feature_dir``
    and were trained on ``inputs`` (:func:`model_inputs`; :func:`record_checkpoint`, through
    the model's ``checkpoint_recorder``)."""
    extra = {"inputs": inputs} if inputs is not None else None
    model.checkpoint_recorder = lambda checkpoint, weights_file: record_checkpoint(
        checkpoint, weights_file, feature_dir, extra)


def _read_meta(meta: Path) -> list:
    if not meta.exists():
        return []
    try:
        history = json.loads(meta.read_text()).get("history", [])
        if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
            raise ValueError("'history' is not a list of records")
        return history
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"unreadable checkpoint record ({exc}); retrain the expid",
                          path=meta) from None


@dataclass(frozen=True)
class CheckpointRecord:
    """What :func:`record_checkpoint` noted for the weights now at ``checkpoint``.

    Attributes:
        checkpoint: the checkpoint file.
        sha256: the digest of its contents.
        feature_dir: the feature-map folder the weights go with.
        inputs: what they were trained on (:func:`model_inputs`); None for a checkpoint
            written before inputs were recorded.
    """

    checkpoint: Path
    sha256: str
    feature_dir: Path
    inputs: Optional[dict]


def checkpoint_record(checkpoint) -> Optional[CheckpointRecord]:
    """The record of the weights now at ``checkpoint``, or None when the checkpoint has no
    record (written before records existed) or does not exist.

    Raises:
        ConfigError: the record file is unreadable, has no entry for these weights, or their
            feature map is gone.
    """
    checkpoint = Path(checkpoint)
    history = _read_meta(_meta_path(checkpoint))
    if not history or not checkpoint.exists():
        return None
    digest = file_digest(checkpoint)
    for entry in reversed(history):
        if entry.get("sha256") == digest:
            folder = (checkpoint.parent / str(entry.get("feature_dir"))).resolve()
            if not (folder / FEATURE_MAP_JSON).is_file():
                raise ConfigError(f"the feature map of this checkpoint ({folder}) is gone; "
                                  "retrain the expid", path=checkpoint)
            if folder.parent.name == FEATURE_MAPS and _content_digest(folder) != folder.name:
                raise ConfigError("its files were changed after training (the folder is named "
                                  "by the digest of their contents); restore them or retrain "
                                  "the expid", path=folder)
            inputs = entry.get("inputs")
            return CheckpointRecord(checkpoint, digest, folder,
                                    inputs if isinstance(inputs, dict) else None)
    raise ConfigError("no feature map is recorded for these weights (the checkpoint was "
                      "replaced by hand?); retrain the expid", path=checkpoint)


def feature_dir_for(checkpoint) -> Optional[Path]:
    """The feature-map folder recorded for the weights now at ``checkpoint``, or None when the
    checkpoint has no record (see :func:`checkpoint_record`)."""
    record = checkpoint_record(checkpoint)
    return record.feature_dir if record is not None else None


# ---------------------------------------------------------------------------- model inputs
# Params that cannot change what trained weights output, left out of :func:`model_inputs`.
# Where and how a job runs:
RUNTIME_KEYS = frozenset({
    "gpu", "verbose", "num_workers", "num_threads", "rank", "world_size", "ddp_timeout",
    "debug_mode", "model_id", "model_root", "data_root", "dataset_id", "pickle_feature_encoder", "streaming",
    "data_block_size", "data_format", "rebuild_dataset", "feature_config", "data_loader",
    "split",  # split: the loader's call argument, not a config key
    # how fast, not what: compiled or eager, TF32 matmuls, pinned copies
    "compile", "compile_mode", "compile_backend", "tf32", "pin_memory",
    "tracking"})  # where the curves are streamed to
# How the weights were found (the checkpoint holds the outcome) and the metrics reported:
TRAINING_KEYS = frozenset({
    "optimizer", "learning_rate", "loss", "batch_size", "epochs", "shuffle", "seed",
    "early_stop_patience", "monitor", "monitor_mode", "metrics", "reduce_lr_on_plateau",
    "lr_decay_factor",
    "save_best_only", "eval_steps", "accumulation_steps", "label_smoothing", "weight_decay",
    "embedding_regularizer", "net_regularizer", "max_gradient_norm", "group_id", "split_type",
    "valid_size", "test_size", "min_categr_count",
    "precision"})  # evaluation and prediction run in float32 whatever the training precision
# Dropout is the identity when a model predicts, so its rate does not matter; whether it is
# zero does (a rate above 0 adds a layer, which renumbers FuxiCTR's MLP_Block).
_DROPOUT_SUFFIX = "dropout"
# Data files: the splits are what a model scores, not what it is; item_info and pretrained
# tables are recorded by the digest of their contents, not by path.
DATA_KEYS = frozenset({"train_data", "valid_data", "test_data", "item_info"})
_NOT_INPUTS = RUNTIME_KEYS | TRAINING_KEYS | DATA_KEYS
_FILE_SPEC_KEYS = ("pretrained_emb",)  # feature-spec keys that name a file


def _plain(value):
    """``value`` as JSON reads it back (tuples become lists), so records compare equal."""
    return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=None)
def component_defaults(model: Optional[str]) -> Dict[str, object]:
    """The defaults of the keyword parameters of ``model``'s class (and its bases) and of the
    loader: a setting a config leaves out is recorded with the value the component used."""
    classes = [cls for cls in MODELS[model].__mro__ if "__init__" in vars(cls)] \
        if model in MODELS else []
    defaults: Dict[str, object] = {}
    for func in [MMCTRDataLoader.__init__] + [cls.__init__ for cls in reversed(classes)]:
        for name, param in inspect.signature(func).parameters.items():
            if param.default is not param.empty and name not in _NOT_INPUTS:
                defaults[name] = _plain(param.default)
    return defaults


def _file_specs(params: dict):
    """``(role, path)`` of every file a feature spec of ``params`` names (pretrained tables)."""
    for group in ("feature_cols", "feature_specs"):
        for spec in params.get(group) or []:
            if not isinstance(spec, dict):
                continue
            for key in _FILE_SPEC_KEYS:
                if spec.get(key):
                    yield f"{key} of {spec.get('name')}", spec[key]


def _without_paths(specs):
    specs = copy.deepcopy(specs)
    for spec in specs or []:
        if isinstance(spec, dict):
            for key in _FILE_SPEC_KEYS:
                spec.pop(key, None)
    return specs


def _file_entry(path) -> dict:
    path = Path(str(path))
    try:
        digest = file_digest(path)
    except OSError:
        digest = None  # a pretrained source deleted after training: said by check_inputs
    return {"path": str(path.resolve()), "sha256": digest}


def model_inputs(params: dict) -> dict:
    """What the outputs of a model trained with ``params`` depend on besides its weights and the
    split it scores: the one definition of "the same model" for prediction and for the blend's
    prediction cache.

    Returns:
        ``{"settings": {key: value}, "files": {role: {"path", "sha256"}}}``: every param that
        is not runtime-only, training-only or a data path (:data:`RUNTIME_KEYS`,
        :data:`TRAINING_KEYS`, :data:`DATA_KEYS`), with the component defaults of the keys
        the config leaves out, and the content digest of ``item_info`` and of every
        ``pretrained_emb`` file (hashed once per process and file version, ~0.1 s for 47 MB).
    """
    settings = dict(component_defaults(params.get("model")))
    for key, value in params.items():
        if key in _NOT_INPUTS:
            continue
        settings[key] = _plain(_without_paths(value) if key in ("feature_cols", "feature_specs")
                               else value)
    files = {"item_info": _file_entry(params["item_info"])}
    for role, path in _file_specs(params):
        files[role] = _file_entry(path)
    return {"settings": dict(sorted(settings.items())), "files": files}


def _show(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _same_dropout(key: str, old, new) -> bool:
    """Two dropout rates that build the same model (both zero, or both above zero)."""
    if not key.endswith(_DROPOUT_SUFFIX):
        return False
    try:
        return (float(old or 0) > 0) == (float(new or 0) > 0)
    except (TypeError, ValueError):
        return False


def input_differences(trained: dict, now: dict) -> List[str]:
    """How ``now`` (:func:`model_inputs` of today's params) differs from ``trained``, one
    phrase per setting or file; empty when the model would predict as it was trained."""
    diffs = []
    old_settings, new_settings = trained.get("settings", {}), now.get("settings", {})
    defaults = component_defaults(new_settings.get("model"))
    for key in sorted(set(old_settings) | set(new_settings)):
        if key not in old_settings:
            # A key the record does not hold: a newer package's setting at its default, or an
            # unset one, reads as trained; any other value changes the model.
            value = new_settings[key]
            if value is None or (key in defaults and value == defaults[key]):
                continue
            diffs.append(f"{key}: not set at training, now {_show(value)}")
        elif key not in new_settings:
            diffs.append(f"{key}: {_show(old_settings[key])} at training, now not set")
        elif old_settings[key] != new_settings[key] and not _same_dropout(
                key, old_settings[key], new_settings[key]):
            diffs.append(f"{key}: {_show(old_settings[key])} at training, now "
                         f"{_show(new_settings[key])}")
    old_files, new_files = trained.get("files", {}), now.get("files", {})
    for role in sorted(set(old_files) | set(new_files)):
        old, new = old_files.get(role), new_files.get(role)
        if old is None:
            diffs.append(f"{role}: none at training, now {new['path']}")
        elif new is None:
            diffs.append(f"{role}: {old['path']} at training, now none")
        elif new["sha256"] is None:
            logger.warning("%s %s (read at training) is gone; the trained weights hold what "
                           "was read from it", role, old["path"])
        elif old.get("sha256") != new["sha256"]:
            what = "changed since training" if old["path"] == new["path"] else \
                f"is not the file the model was trained on ({old['path']})"
            diffs.append(f"{role} {new['path']} {what} (sha256 {str(old.get('sha256'))[:12]} "
                         f"at training, now {new['sha256'][:12]})")
    return diffs


def check_inputs(record: Optional[CheckpointRecord], params: dict) -> None:
    """Refuse to predict with weights trained on other inputs than ``params`` give today.

    Raises:
        ConfigError: naming each setting (value at training and now) and each file (digest
            at training and now) that differs, and the checkpoint.
    """
    if record is None:
        return
    if record.inputs is None:
        logger.warning("%s: written before checkpoints recorded their inputs; cannot check that "
                       "the config and item files are the ones it was trained on",
                       record.checkpoint)
        return
    diffs = input_differences(record.inputs, model_inputs(params))
    if diffs:
        raise ConfigError(f"expid {params.get('model_id')!r} was trained on other inputs than "
                          f"the config gives now: {'; '.join(diffs)}. Restore them, or "
                          "retrain the expid (run_expid.py)", path=record.checkpoint)


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
