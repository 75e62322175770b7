"""Train, predict and sweep FuxiCTR experiments: the logic behind the three entry scripts.

The CLI is FuxiCTR's::

    python run_expid.py --config DIR --expid ID --gpu N
    python prediction.py --config DIR --expid ID --gpu N [--task Task2] [--out ZIP]
    python run_param_tuner.py --config FILE --gpu 0 1 [--tag T]
    python run_param_tuner.py --config FILE --ray ADDRESS|local [--gpu 0]  # trials on Ray
    torchrun --nproc_per_node N run_expid.py ...       # one experiment data-parallel

Paths in configs resolve against the working directory the user runs from (no ``os.chdir``).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import yaml

from .. import compat
from ..errors import ConfigError, run_guarded
from . import artifacts, checks, distributed
from .config_keys import warn_unknown_keys

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
            :func:`fuxictr_mmctr.train.config_keys.warn_unknown_keys`). Jobs that set up
            FuxiCTR's log file pass False and warn once the log is open. Default: True.

    Raises:
        ConfigError: no such directory, expid or dataset; a required key or file is missing.
    """
    from fuxictr.utils import load_config

    config_dir = str(config_dir)
    if not os.path.isdir(config_dir):
        raise ConfigError(f"{config_dir}: not a directory", option="--config")
    try:
        params = load_config(config_dir, expid)
    except AssertionError:  # FuxiCTR: no dataset_id after merging Base and the expid
        raise _expid_error(config_dir, expid) from None
    except RuntimeError as exc:
        raise ConfigError(f"{config_dir}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_dir}: a config file is not valid YAML ({exc})") from None
    params["gpu"] = gpu
    checks.check_device(gpu)
    checks.check_params(params, where=f"{config_dir} (expid {expid})")
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ConfigError(f"expid {expid!r} in {config_dir}: missing key(s) {missing}")
    if params.get("rebuild_dataset", False):
        raise ConfigError(f"dataset {params['dataset_id']}: set `rebuild_dataset: False`; "
                          "MMCTRDataLoader reads the raw MicroLens parquet files directly")
    require_files(params, needs)
    if check_keys:
        warn_unknown_keys(params)
    return params


def require_files(params: dict, keys: Sequence[str]) -> None:
    """Refuse a job whose data files (``train_data``, ``item_info``, ...) are unset or absent."""
    for key in keys:
        if not params.get(key):
            raise ConfigError(f"dataset {params['dataset_id']}: no {key} in the config")
        if not Path(params[key]).exists():
            raise ConfigError(f"dataset {params['dataset_id']}: {key}={params[key]} not found "
                              f"(paths resolve against {os.getcwd()})")


def _expid_error(config_dir: str, expid: str) -> ConfigError:
    """Why FuxiCTR found no ``dataset_id`` for ``expid``: the expid is absent, or lacks it."""
    import difflib
    import glob

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
    return ConfigError(f"expid {expid!r} not found{hint}", path=config_dir, option="--expid")


def _set_logger(params: dict, job: str = "") -> None:
    """FuxiCTR's logger (``<model_root>/<dataset_id>/<expid>[.job].log``, rewritten per run)."""
    from fuxictr.utils import set_logger

    set_logger(dict(params, model_id=params["model_id"] + (f".{job}" if job else "")))
    logging.info("Versions: %s", compat.versions_line())
    logging.info("Params: %s", {k: params[k] for k in sorted(params) if k != "feature_cols"})


def build_feature_map(params: dict, output_dir=None):
    """Fit the feature processor on the config (no data rewrite) and load the map.

    Args:
        params: the experiment params.
        output_dir: where the processor writes the map, its vocabulary and pretrained h5
            (training passes a private staging folder, see :mod:`.artifacts`). Default:
            FuxiCTR's ``<data_root>/<dataset_id>/``.
    """
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import build_dataset

    from ..data.features import MMCTRFeatureProcessor

    feature_encoder = MMCTRFeatureProcessor(**params)
    if output_dir is not None:
        feature_encoder.set_output_dir(output_dir)
    build_dataset(feature_encoder, **params)
    feature_map = FeatureMap(params["dataset_id"], feature_encoder.data_dir)
    feature_map.load(feature_encoder.json_file, params)
    return feature_map


def load_feature_map(params: dict):
    """The feature map that belongs to the checkpoint of ``params``' expid.

    Read from the folder recorded beside the checkpoint (:func:`.artifacts.feature_dir_for`);
    checkpoints written before such records existed fall back to FuxiCTR's
    ``<data_root>/<dataset_id>/feature_map.json``.
    """
    from fuxictr.features import FeatureMap

    data_dir = artifacts.feature_dir_for(artifacts.checkpoint_path(params))
    if data_dir is None:
        data_dir = Path(params["data_root"]) / params["dataset_id"]
    json_file = data_dir / artifacts.FEATURE_MAP_JSON
    if not json_file.exists():
        raise ConfigError(f"expid {params['model_id']!r} has no trained model (no feature map at "
                          f"{json_file}): train it first (run_expid.py)")
    feature_map = FeatureMap(params["dataset_id"], str(data_dir))
    feature_map.load(str(json_file), params)
    return feature_map


def build_model(feature_map, params: dict):
    from ..models import get_model

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
    from ..data.loader import MMCTRDataLoader

    if stage not in ("train", "test", "both"):
        raise ConfigError(f"stage={stage!r}: expected 'train', 'test' or 'both'")
    return compat.rank_data_loaders(feature_map, stage, **dict(params, data_loader=MMCTRDataLoader))


# ---------------------------------------------------------------------------- jobs

def train(config_dir, expid: str, gpu: int = -1, record: bool = True) -> TrainResult:
    """Train ``expid`` with FuxiCTR's ``BaseModel.fit`` and evaluate the best checkpoint.

    Under ``torchrun`` every process runs this and they train one model data-parallel
    (:mod:`.distributed`): rank 0 alone builds the feature map, logs to the file, writes
    checkpoints and the results CSV; every rank returns the same metrics.

    Args:
        record: append the result to the results CSV (a Ray sweep's driver does it instead).
    """
    from fuxictr.pytorch.torch_utils import seed_everything

    params = load_params(config_dir, expid, gpu, check_keys=False)
    with distributed.session(gpu, params.get("ddp_timeout")) as cluster:
        if cluster.active:
            params.update(rank=cluster.rank, world_size=cluster.world_size)
            if gpu >= 0:
                params["gpu"] = cluster.local_rank
        lock = artifacts.expid_lock(params) if cluster.is_main else contextlib.nullcontext()
        with lock:
            if cluster.is_main:
                _set_logger(params)
                warn_unknown_keys(params)  # now also in the log file
            else:
                distributed.configure_logging(cluster)
            seed_everything(seed=params.get("seed", 2024))
            feature_map = model = None
            if cluster.is_main:
                # Everything is read and checked before anything shared is written: the feature
                # map goes to a private folder, published once data, loaders and model are OK.
                staging = artifacts.staging_dir(params)
                try:
                    feature_map = build_feature_map(params, output_dir=staging)
                    model = build_model(feature_map, params)
                    train_gen, valid_gen = make_loaders(params, feature_map, "train")
                    feature_map.data_dir = str(artifacts.publish(staging))
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
            finally:
                if not cluster.is_main:
                    distributed.release_feature_map(feature_map)
            if cluster.is_main and record:
                record_result(config_dir, expid, params["dataset_id"], valid_metrics)
            return TrainResult(expid=expid, valid_metrics=valid_metrics,
                               checkpoint=Path(model.checkpoint))


SPLITS = ("train", "valid", "test")


def _restore(params: dict):
    """The saved feature map and a model holding the best checkpoint of ``params``' expid."""
    feature_map = load_feature_map(params)
    model = build_model(feature_map, params)
    if not os.path.exists(model.checkpoint):
        raise ConfigError(f"expid {params['model_id']!r}: checkpoint {model.checkpoint} not "
                          "found: run run_expid.py first")
    try:
        model.load_weights(model.checkpoint)
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
    from ..submit.submission import count_rows, write_submission

    params = load_params(config_dir, expid, gpu, needs=("test_data", "item_info"),
                         check_keys=False)
    _set_logger(params, "predict")  # keep the training log
    warn_unknown_keys(params)
    feature_map, model = _restore(params)
    y_pred = score_split(params, feature_map, model, "test")
    zip_path = Path(out) if out else Path("submission") / f"{expid}.zip"
    write_submission({task: y_pred}, zip_path, n_rows=count_rows(params["test_data"]),
                     all_columns=all_columns)
    logging.info("Submission written: %s", zip_path)
    return PredictResult(expid=expid, zip_path=zip_path, num_rows=len(y_pred))


def _results_file(config_dir) -> Path:
    """FuxiCTR's convention: results append to ``<config name>.csv`` in the working dir."""
    return Path(Path(str(config_dir).rstrip("/")).name.replace(".yaml", "") + ".csv")


def record_result(config_dir, expid: str, dataset_id: str, metrics: Dict[str, float],
                  command: Optional[str] = None) -> None:
    """Append one line to FuxiCTR's results CSV (``command``: this process's command line),
    plus ``[versions]`` (package, FuxiCTR, torch, NumPy, pandas) so the figure can be
    reproduced."""
    command = command if command is not None else " ".join(sys.argv)
    line = (" {},[command] python {},[exp_id] {},[dataset_id] {},[train] N.A.,[val] {},"
            "[versions] {}\n").format(
        datetime.now().strftime("%Y%m%d-%H%M%S"), command, expid, dataset_id,
        " - ".join(f"{k}: {v:.6f}" for k, v in metrics.items()), compat.versions_line())
    with open(_results_file(config_dir), "a") as fh:
        fh.write(line)


# ---------------------------------------------------------------------------- tuner

def finished_expids(config_dir) -> set:
    """Expids already recorded in the results file of ``config_dir`` (for resuming sweeps)."""
    path = _results_file(config_dir)
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        for field in line.split(","):
            if field.startswith("[exp_id] "):
                done.add(field[len("[exp_id] "):].strip())
    return done


def sweep_plan(config_file, tag: Optional[str] = None):
    """FuxiCTR's enumeration of a tuner config: ``(config_dir, expids, expids to run)``.

    The expids to run are those not yet in the results CSV, so a sweep resumes.
    """
    from fuxictr import autotuner

    config_dir = autotuner.enumerate_params(str(config_file))
    expids = autotuner.load_experiment_ids(config_dir)
    if tag is not None:
        expids = [e for e in expids if str(tag) in e]
        if not expids:
            raise ConfigError(f"--tag {tag} matches no expid in {config_dir}")
    done = finished_expids(config_dir)
    return config_dir, expids, [e for e in expids if e not in done]


def tuner_files(config_file) -> List[Path]:
    """The tuner file(s) FuxiCTR's autotuner runs for ``config_file``.

    FuxiCTR's tuner config names one ``dataset_id``. Here it may name a list (the same grid
    over several datasets, e.g. variants and seeds of the sample): one copy per dataset is
    written into the tuner's folder (``<tuner>/<tuner>.<dataset_id>.yaml``, where FuxiCTR
    also writes the enumerated configs), each with one ``dataset_id``.
    """
    import yaml

    config_file = Path(config_file)
    try:
        spec = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config {config_file}: {exc}") from None
    datasets = spec.get("dataset_id") if isinstance(spec, dict) else None
    if not isinstance(datasets, list):
        return [config_file]
    if not datasets or len(set(datasets)) != len(datasets):
        raise ConfigError(f"{config_file}: dataset_id must be one id or a list of distinct ids")
    folder = config_file.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for dataset_id in datasets:
        path = folder / f"{config_file.stem}.{dataset_id}.yaml"
        text = yaml.safe_dump(dict(spec, dataset_id=dataset_id), sort_keys=False)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        files.append(path)
    return files


def tune(config_file, gpus: Sequence[str], tag: Optional[str] = None,
         poll_seconds: float = 1.0) -> List[str]:
    """FuxiCTR's grid search: enumerate the tuner space, run each expid on a free device.

    Expids already in the results file are skipped, so an interrupted sweep resumes. Each run
    is a fresh ``python -m fuxictr_mmctr.train.experiment train`` process with this interpreter.
    A list of ``dataset_id`` runs the grid on each dataset (:func:`tuner_files`).

    Returns:
        the expids that failed (non-zero exit).
    """
    from fuxictr import autotuner

    todo: List[tuple] = []  # (config_dir, expid)
    total = 0
    for path in tuner_files(config_file):
        config_dir = autotuner.enumerate_params(str(path))
        expids = autotuner.load_experiment_ids(config_dir)
        if tag is not None:
            expids = [e for e in expids if str(tag) in e]
        total += len(expids)
        done = finished_expids(config_dir)
        todo += [(config_dir, e) for e in expids if e not in done]
    if tag is not None and not total:
        raise ConfigError(f"--tag {tag} matches no expid of {config_file}")
    logger.info("%d experiments, %d already finished, %d to run on devices %s",
                total, total - len(todo), len(todo), list(gpus))
    running: Dict[str, tuple] = {}  # gpu -> (expid, process)
    failed: List[str] = []
    free = list(gpus)
    while todo or running:
        while todo and free:
            gpu = free.pop(0)
            config_dir, expid = todo.pop(0)
            cmd = [sys.executable, "-u", "-m", "fuxictr_mmctr.train.experiment", "train",
                   "--config", config_dir, "--expid", expid, "--gpu", str(gpu)]
            logger.info("Run %s on gpu %s", expid, gpu)
            running[gpu] = (expid, subprocess.Popen(cmd))
        time.sleep(poll_seconds if running else 0)
        for gpu, (expid, proc) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    logger.error("%s failed with exit code %d", expid, proc.returncode)
                    failed.append(expid)
                del running[gpu]
                free.append(gpu)
    return failed


# ---------------------------------------------------------------------------- CLI
# Each command is ``add_arguments(parser)`` + ``run(args) -> int``: ``mmctr train|predict|tune``
# (fuxictr_mmctr.cli) and the root scripts (``train_main`` ...) share them.

@dataclass(frozen=True)
class Command:
    """One command line: its description, its arguments and what it runs."""

    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    def main(self, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
        """Parse ``argv`` and run under the package's error handler (exit 2 on a user error)."""
        parser = argparse.ArgumentParser(prog=prog, description=self.description)
        self.add_arguments(parser)
        args = parser.parse_args(argv)
        return run_guarded(lambda: self.run(args), prog=parser.prog)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_experiment_options

    add_experiment_options(parser)


def _run_train(args: argparse.Namespace) -> int:
    result = train(args.config, args.expid, args.gpu)
    logging.info("Validation: %s",
                 " - ".join(f"{k}: {v:.6f}" for k, v in result.valid_metrics.items()))
    return 0


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_experiment_options

    add_experiment_options(parser)
    parser.add_argument("--task", default="Task2", choices=["Task1", "Task2", "Task1&2"],
                        help="the column of prediction.csv to fill")
    parser.add_argument("--all-columns", action="store_true",
                        help="write ID,Task1,Task2,Task1&2 with unused columns 0")
    parser.add_argument("--out", default=None, help="zip path (default submission/<expid>.zip)")


def _run_predict(args: argparse.Namespace) -> int:
    result = predict(args.config, args.expid, args.gpu, task=args.task, out=args.out,
                     all_columns=args.all_columns)
    logging.info("Wrote %s (%d rows)", result.zip_path, result.num_rows)
    return 0


def _add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the tuner config file")
    parser.add_argument("--tag", default=None, help="run only expids containing this tag")
    parser.add_argument("--gpu", nargs="+", default=["-1"],
                        help="GPU indexes to spread the runs over, -1 for CPU (default: -1; "
                        "with --ray: any index means one GPU per trial, chosen by Ray)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run the trials as Ray tasks on the cluster at ADDRESS (host:port, "
                        "e.g. from `ray start --head`), or `local` for a private one; needs "
                        "pip install 'fuxictr_mmctr[ray]'")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0,
                        help="with --ray: CPUs reserved for each trial (default 1)")


def _run_tune(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if getattr(args, "ray", None) is None:
        failed = tune(args.config, args.gpu, args.tag)
    else:
        from .ray_sweep import tune_on_ray

        failed = tune_on_ray(args.config, args.ray, args.gpu, args.tag,
                             cpus_per_trial=args.cpus_per_trial)
    if failed:
        logger.error("%d experiment(s) failed: %s", len(failed), failed)
        return 1
    return 0


TRAIN = Command("Train one experiment (FuxiCTR run_expid).", _add_train_arguments, _run_train)
PREDICT = Command("Predict the test split and write a Codabench submission zip.",
                  _add_predict_arguments, _run_predict)
TUNE = Command("Grid search with FuxiCTR's autotuner.", _add_tune_arguments, _run_tune)


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    """``run_expid.py``."""
    return TRAIN.main(argv)


def predict_main(argv: Optional[Sequence[str]] = None) -> int:
    """``prediction.py``."""
    return PREDICT.main(argv)


def tune_main(argv: Optional[Sequence[str]] = None) -> int:
    """``run_param_tuner.py``."""
    return TUNE.main(argv)


if __name__ == "__main__":  # the fresh process of each tuner run
    commands = {"train": TRAIN, "predict": PREDICT, "tune": TUNE}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m fuxictr_mmctr.train.experiment {{{','.join(commands)}}} ...")
    sys.exit(commands[sys.argv[1]].main(sys.argv[2:], prog=f"{sys.argv[0]} {sys.argv[1]}"))
