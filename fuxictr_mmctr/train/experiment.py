"""Train and predict FuxiCTR experiments: the jobs behind ``run_expid.py`` and ``prediction.py``
(their command lines are :mod:`fuxictr_mmctr.cli.experiment`; sweeps are :mod:`.sweep`).

Paths in configs resolve against the working directory the user runs from (no ``os.chdir``).
"""
from __future__ import annotations

import contextlib
import difflib
import glob
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
import yaml
from fuxictr.features import FeatureMap
from fuxictr.preprocess import build_dataset
from fuxictr.pytorch.torch_utils import seed_everything
from fuxictr.utils import load_config, set_logger

from .. import compat, process_group
from ..data.features import MMCTRFeatureProcessor
from ..data.loader import MMCTRDataLoader
from ..errors import ConfigError
from ..models import get_model
from ..submit.submission import test_rows, write_submission
from . import artifacts, distributed, preflight, readings, results, tracking
from .config_keys import check_params, warn_unknown_keys

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("model", "dataset_id", "data_root", "item_info", "feature_cols", "label_col",
                 "optimizer", "loss", "learning_rate", "batch_size", "epochs", "model_root",
                 "metrics")


@dataclass
class TrainResult:
    """What ``run_expid.py`` produced."""

    expid: str
    valid_metrics: Dict[str, float]
    checkpoint: Path


@dataclass
class PredictResult:
    """What ``prediction.py`` produced."""

    expid: str
    zip_path: Path
    num_rows: int


# ---------------------------------------------------------------------------- config

TRAIN_FILES = ("train_data", "valid_data", "item_info")


def load_params(config_dir, expid: str, gpu: int = -1, needs=TRAIN_FILES,
                check_keys: bool = True) -> dict:
    """FuxiCTR's merged ``Base`` + expid + dataset params, checked for what this package needs.

    Args:
        config_dir: the config directory (``model_config/*.yaml`` + ``dataset_config.yaml``).
        expid: the experiment id.
        gpu: the GPU index, -1 for CPU. Default: -1.
        needs: the data files that must exist for the job: training needs train, valid and
            item_info; prediction only the split it scores and item_info. Default: train,
            valid and item_info.
        check_keys: warn (once per process, in the log and on stderr) about keys that no
            component reads, naming the closest known key (see
            :func:`fuxictr_mmctr.train.config_keys.warn_unknown_keys`), and say which reading
            of an ambiguous config was taken (:func:`.readings.announce_readings`). Jobs that
            set up FuxiCTR's log file pass False and warn once the log is open. Default: True.

    Raises:
        ConfigError: no such directory, expid or dataset; a required key or file is missing.
    """
    config_dir = str(config_dir)
    if not os.path.isdir(config_dir):
        raise ConfigError(f"{config_dir}: not a directory", option="--config")
    try:
        params = load_config(config_dir, expid)
    except AssertionError:  # FuxiCTR: no dataset_id after merging Base and the expid
        raise expid_error(config_dir, expid) from None
    except RuntimeError as exc:
        raise ConfigError(f"{config_dir}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_dir}: a config file is not valid YAML ({exc})") from None
    params["gpu"] = gpu
    check_device(gpu)
    check_params(params, where=f"{config_dir} (expid {expid})")
    readings.check_feature_specs(params)
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ConfigError(f"expid {expid!r} in {config_dir}: missing key(s) {missing}")
    if params.get("rebuild_dataset", False):
        raise ConfigError(f"dataset {params['dataset_id']}: set `rebuild_dataset: False`; "
                          "MMCTRDataLoader reads the raw MicroLens parquet files directly")
    require_files(params, needs)
    if check_keys:
        warn_unknown_keys(params)
        readings.announce_readings(config_dir, expid, params)
    return params


def check_device(gpu: int) -> None:
    """Refuse ``--gpu N`` (N >= 0) on a machine where torch sees no CUDA device N."""
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < -1:
        raise ConfigError(f"{gpu!r}: expected -1 (CPU) or a CUDA device index", option="--gpu")
    if gpu < 0:
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"{gpu}: CUDA is not available on this machine (torch "
                          f"{torch.__version__}); use --gpu -1 for the CPU", option="--gpu")
    if gpu >= torch.cuda.device_count():
        raise ConfigError(f"{gpu}: this machine has {torch.cuda.device_count()} CUDA "
                          "device(s)", option="--gpu")


def require_files(params: dict, keys: Sequence[str]) -> None:
    """Refuse a job whose data files (``train_data``, ``item_info``, ...) are unset or absent."""
    for key in keys:
        if not params.get(key):
            raise ConfigError(f"dataset {params['dataset_id']}: no {key} in the config")
        if not Path(params[key]).exists():
            raise ConfigError(f"dataset {params['dataset_id']}: {key}={params[key]} not found "
                              f"(paths resolve against {os.getcwd()})")


def expid_error(config_dir: str, expid: str, option: str = "--expid") -> ConfigError:
    """Why FuxiCTR found no ``dataset_id`` for ``expid``: the expid is absent (naming the closest
    ones, as ``option``), or lacks it."""
    known = []
    for path in sorted(glob.glob(os.path.join(config_dir, "model_config*.yaml")) +
                       glob.glob(os.path.join(config_dir, "model_config", "*.yaml"))):
        with open(path) as fh:
            known += [k for k in (yaml.safe_load(fh) or {}) if k != "Base"]
    if expid in known:
        return ConfigError(f"expid {expid!r} has no dataset_id (set it in the expid or in Base)",
                           path=config_dir)
    close = difflib.get_close_matches(expid, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"expid {expid!r} not found{hint}", path=config_dir, option=option)


def log_path(params: dict, job: str = "") -> Path:
    """``<model_root>/<dataset_id>/<expid>[.job].log``: FuxiCTR's log file of a job."""
    return artifacts.model_dir(params) / f"{params['model_id']}{'.' + job if job else ''}.log"


def keep_previous_log(path) -> None:
    """Move an existing log to ``<log>.1`` (replacing an older one) before a run rewrites it:
    FuxiCTR opens the log with mode ``"w"``, so a run that fails early (a full disk at the
    first checkpoint) would otherwise leave nothing of the previous run's log."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        os.replace(path, path.with_name(path.name + ".1"))


def use_threads(params: dict) -> int:
    """Apply ``num_threads`` (torch's intra-op threads; unset: what torch picks) and return the
    number this process computes with. The thread count moves results in the third decimal on
    the CPU (other summation orders), so a config can pin it and every log states it."""
    if params.get("num_threads"):
        torch.set_num_threads(int(params["num_threads"]))
    return torch.get_num_threads()


def _set_logger(params: dict, job: str = "") -> None:
    """FuxiCTR's logger (``<model_root>/<dataset_id>/<expid>[.job].log``, rewritten per run;
    the previous run's log is kept as ``<log>.1``)."""
    keep_previous_log(log_path(params, job))
    set_logger(dict(params, model_id=params["model_id"] + (f".{job}" if job else "")))
    logging.info("Versions: %s; torch threads: %d", compat.versions_line(), use_threads(params))
    logging.info("Params: %s", {k: params[k] for k in sorted(params) if k != "feature_cols"})


def build_feature_map(params: dict, output_dir=None):
    """Fit the feature processor on the config (no data rewrite) and load the map.

    Args:
        params: the experiment params.
        output_dir: where the processor writes the map, its vocabulary and pretrained h5
            (training passes a private staging folder, see :mod:`.artifacts`). Default:
            FuxiCTR's ``<data_root>/<dataset_id>/``.
    """
    feature_encoder = MMCTRFeatureProcessor(**params)
    if output_dir is not None:
        feature_encoder.set_output_dir(output_dir)
    build_dataset(feature_encoder, **params)
    feature_map = FeatureMap(params["dataset_id"], feature_encoder.data_dir)
    feature_map.load(feature_encoder.json_file, params)
    return feature_map


def load_feature_map(params: dict, record: Optional[artifacts.CheckpointRecord] = None):
    """The feature map that belongs to the checkpoint of ``params``' expid.

    Read from the folder recorded beside the checkpoint (``record``, or
    :func:`.artifacts.checkpoint_record`); checkpoints written before such records existed fall
    back to FuxiCTR's ``<data_root>/<dataset_id>/feature_map.json``.

    Raises:
        ConfigError: no feature map, or a ``feature_map.json`` that is not a feature map.
    """
    if record is None:
        record = artifacts.checkpoint_record(artifacts.checkpoint_path(params))
    data_dir = record.feature_dir if record is not None else \
        Path(params["data_root"]) / params["dataset_id"]
    json_file = data_dir / artifacts.FEATURE_MAP_JSON
    if not json_file.exists():
        raise ConfigError(f"expid {params['model_id']!r} has no trained model (no feature map at "
                          f"{json_file}): train it first (run_expid.py)")
    feature_map = FeatureMap(params["dataset_id"], str(data_dir))
    try:
        feature_map.load(str(json_file), params)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError too
        raise ConfigError(f"not a readable feature map ({type(exc).__name__}: {exc}); it was "
                          "edited or damaged: retrain the expid (run_expid.py)",
                          path=json_file) from None
    except RuntimeError as exc:  # FuxiCTR: the map's dataset_id is another one
        raise ConfigError(f"{exc}; retrain the expid (run_expid.py)", path=json_file) from None
    return feature_map


def build_model(feature_map, params: dict):
    model = get_model(params["model"])(feature_map, **params)
    model.count_parameters()
    return model


def make_loaders(params: dict, feature_map, stage: str = "train"):
    """FuxiCTR's ``RankDataLoader`` for ``stage`` with this package's ``MMCTRDataLoader``.

    Args:
        params: the experiment params (:func:`load_params`).
        feature_map: the dataset's feature map (:func:`build_feature_map` or
            :func:`load_feature_map`).
        stage: ``"train"`` (train and valid loaders), ``"test"`` (the ``test_data`` loader) or
            ``"both"``. Default: ``"train"``.

    Returns:
        ``(train_gen, valid_gen)`` for ``train``, ``test_gen`` for ``test``, all three for
        ``both``; each yields ``(batch_dict, item_dict, mask)`` batches.
    """
    if stage not in ("train", "test", "both"):
        raise ConfigError(f"stage={stage!r}: expected 'train', 'test' or 'both'")
    return compat.rank_data_loaders(feature_map, stage, **dict(params, data_loader=MMCTRDataLoader))


# ---------------------------------------------------------------------------- jobs

def train(config_dir, expid: str, gpu: int = -1, record: bool = True) -> TrainResult:
    """Train ``expid`` with FuxiCTR's ``BaseModel.fit`` and evaluate the best checkpoint.

    Under ``torchrun`` every process runs this and they train one model data-parallel
    (:mod:`.distributed`): rank 0 alone builds the feature map, logs to the file, writes
    checkpoints and the results CSV, and streams the curves where ``tracking`` says
    (:mod:`.tracking`); every rank returns the same metrics.

    Args:
        record: append the result to the results CSV (a Ray sweep's driver does it instead).
    """
    params = load_params(config_dir, expid, gpu, check_keys=False)
    with process_group.session(gpu, params.get("ddp_timeout")) as cluster:
        if cluster.active:
            params.update(rank=cluster.rank, world_size=cluster.world_size)
            if gpu >= 0:
                params["gpu"] = cluster.local_rank
        # What the run needs at its end (metrics it can compute on this valid split, folders
        # it can write), checked before the hours of training.
        preflight.check_training_run(config_dir, params, record=record, writes=cluster.is_main)
        lock = artifacts.expid_lock(params) if cluster.is_main else contextlib.nullcontext()
        with lock, tracking.tracker_for(params, config_dir, enabled=cluster.is_main) as tracker:
            if cluster.is_main:
                _set_logger(params)
                warn_unknown_keys(params)  # now also in the log file
                readings.announce_readings(config_dir, expid, params)
            else:
                process_group.configure_logging(cluster)
            use_threads(params)
            seed_everything(seed=params.get("seed", 2024))
            feature_map = model = None
            if cluster.is_main:
                # Everything is read and checked before anything shared is written: the feature
                # map goes to a private folder, published once data, loaders and model are OK.
                inputs = artifacts.model_inputs(params)  # what the checkpoint will record
                staging = artifacts.staging_dir(params)
                try:
                    feature_map = build_feature_map(params, output_dir=staging)
                    model = build_model(feature_map, params)
                    train_gen, valid_gen = make_loaders(params, feature_map, "train")
                    feature_map.data_dir = str(artifacts.publish(staging))
                    artifacts.attach_recorder(model, feature_map.data_dir, inputs)
                    tracker.attach(model, log=log_path(params))
                except BaseException:
                    artifacts.discard(staging)
                    raise
            feature_map = distributed.share_feature_map(cluster, feature_map, params)
            try:
                if model is None:  # ranks other than 0, once rank 0 has published the map
                    model = build_model(feature_map, params)
                    train_gen, valid_gen = make_loaders(params, feature_map, "train")
                distributed.attach(model, cluster, train_gen, seed=params.get("seed", 2024))
                model.fit(train_gen, validation_data=valid_gen, **params)
                logging.info("****** Validation evaluation ******")
                valid_metrics = dict(model.evaluate(valid_gen))
                tracker.finish(valid_metrics)
            finally:
                if not cluster.is_main:
                    distributed.release_feature_map(feature_map)
            if cluster.is_main and record:
                results.append_result(config_dir, expid, params["dataset_id"], valid_metrics)
            return TrainResult(expid=expid, valid_metrics=valid_metrics,
                               checkpoint=Path(model.checkpoint))


SPLITS = ("train", "valid", "test")


def _restore(params: dict):
    """The saved feature map and a model holding the best checkpoint of ``params``' expid.

    Refuses weights trained on other settings or item files than ``params`` give now
    (:func:`.artifacts.check_inputs`), before anything is built."""
    record = artifacts.checkpoint_record(artifacts.checkpoint_path(params))
    artifacts.check_inputs(record, params)
    feature_map = load_feature_map(params, record)
    model = build_model(feature_map, params)
    if not os.path.exists(model.checkpoint):
        raise ConfigError(f"expid {params['model_id']!r}: checkpoint {model.checkpoint} not "
                          "found: run run_expid.py first")
    try:
        model.load_weights(model.checkpoint)
    except (EOFError, pickle.UnpicklingError) as exc:  # a truncated or foreign file
        raise ConfigError(f"expid {params['model_id']!r}: checkpoint {model.checkpoint} cannot "
                          f"be read ({type(exc).__name__}: {exc}); retrain it (run_expid.py)") \
            from None
    except RuntimeError as exc:  # torch: the saved tensors do not fit the model built now
        first = str(exc).strip().splitlines()
        raise ConfigError(f"expid {params['model_id']!r}: checkpoint {model.checkpoint} does not "
                          "fit the model built from the current config and feature map "
                          f"({' '.join(first[:2])[:300]}); retrain it (run_expid.py)") from None
    return feature_map, model


def load_trained_model(config_dir, expid: str, gpu: int = -1, splits: Sequence[str] = ()):
    """Load a trained experiment: its params, saved feature map and best checkpoint.

    Nothing is refitted and no split is read (only ``item_info`` must exist, for the item
    side). The checkpoint is ``model.checkpoint`` (``<model_root>/<dataset_id>/<expid>.model``).

    Args:
        config_dir: the config directory of the experiment.
        expid: the experiment id.
        gpu: the GPU index, -1 for CPU. Default: -1.
        splits: the splits you are going to score: their files are checked before the model
            is loaded. Default: none.

    Returns:
        ``(params, feature_map, model)``; the model holds the best weights. Pass the triple to
        :func:`score_split`.

    Raises:
        ConfigError: unknown expid, no feature map or checkpoint yet, or a checkpoint that does
            not fit the model the current config builds.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(f"split(s) {unknown}: expected one of {list(SPLITS)}")
    params = load_params(config_dir, expid, gpu,
                         needs=("item_info", *(f"{s}_data" for s in splits)))
    use_threads(params)
    feature_map, model = _restore(params)
    return params, feature_map, model


def score_split(params: dict, feature_map, model, split: str = "test"):
    """Score one split with a loaded model (see :func:`load_trained_model`).

    Args:
        params, feature_map, model: as returned by :func:`load_trained_model`.
        split: ``valid``, ``test`` or ``train``. Default: ``"test"``.

    Returns:
        A float 1-d array of ``(N,)`` probabilities, one per row of the split, in file order.

    Raises:
        ConfigError: unknown split, or the dataset has no such split file.
    """
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: expected one of {list(SPLITS)}")
    key = f"{split}_data"
    require_files(params, (key,))
    # The loader route for a single split is FuxiCTR's test stage pointed at that file.
    test_gen = make_loaders(dict(params, test_data=params[key]), feature_map, "test")
    logging.info("Scoring the %s split (%s)...", split, params[key])
    return model.predict(test_gen)


def predict_split(config_dir, expid: str, split: str = "test", gpu: int = -1):
    """Score one split with the saved feature map and the best checkpoint of ``expid``.

    Only that split is read (no training loader is built, the feature map is not refitted).

    Args:
        config_dir: the config directory of the experiment.
        expid: the experiment id.
        split: ``valid``, ``test`` or ``train``. Default: ``"test"``.
        gpu: the GPU index, -1 for CPU. Default: -1.

    Returns:
        A float 1-d array, one probability per row of the split, in file order.

    Raises:
        ConfigError: unknown expid or split, no such split in the dataset config, or no
            trained checkpoint.
    """
    return score_split(*load_trained_model(config_dir, expid, gpu, splits=(split,)), split)


def predict(config_dir, expid: str, gpu: int = -1, task: str = "Task2",
            out: Optional[str] = None, all_columns: bool = False) -> PredictResult:
    """Score the test split with the saved feature map and best checkpoint; write the zip.

    Only the test split is read. The zip holds ``prediction.csv`` (``ID`` + ``task``) and is
    checked before it is written: one row per test row, no NaN, values in [0, 1].
    """
    params = load_params(config_dir, expid, gpu, needs=("test_data", "item_info"),
                         check_keys=False)
    zip_path = Path(out) if out else Path("submission") / f"{expid}.zip"
    preflight.check_prediction_run(zip_path)  # before the test split is scored
    n_rows = test_rows(params["test_data"])
    _set_logger(params, "predict")  # keep the training log
    warn_unknown_keys(params)
    readings.announce_readings(config_dir, expid, params)
    feature_map, model = _restore(params)
    y_pred = score_split(params, feature_map, model, "test")
    write_submission({task: y_pred}, zip_path, n_rows=n_rows,
                     all_columns=all_columns)
    logging.info("Submission written: %s", zip_path)
    return PredictResult(expid=expid, zip_path=zip_path, num_rows=len(y_pred))
