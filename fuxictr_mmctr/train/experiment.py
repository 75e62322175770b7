"""Train, predict and sweep FuxiCTR experiments: the logic behind the three entry scripts.

The CLI is FuxiCTR's::

    python run_expid.py --config DIR --expid ID --gpu N
    python prediction.py --config DIR --expid ID --gpu N [--task Task2] [--out ZIP]
    python run_param_tuner.py --config FILE --gpu 0 1 [--tag T]

Paths in configs resolve against the working directory the user runs from (no ``os.chdir``).
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .. import compat
from ..errors import ConfigError, run_guarded

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


def load_params(config_dir, expid: str, gpu: int = -1, needs=TRAIN_FILES) -> dict:
    """FuxiCTR's merged ``Base`` + expid + dataset params, checked for what this package needs.

    ``needs`` names the data files that must exist for the job: training needs train, valid and
    item_info; prediction only the split it scores and item_info.
    """
    from fuxictr.utils import load_config

    config_dir = str(config_dir)
    if not os.path.isdir(config_dir):
        raise ConfigError(f"--config {config_dir}: not a directory")
    try:
        params = load_config(config_dir, expid)
    except AssertionError:
        raise ConfigError(f"expid {expid!r} not found in {config_dir}") from None
    except RuntimeError as exc:
        raise ConfigError(f"{config_dir}: {exc}") from None
    params["gpu"] = gpu
    missing = [k for k in REQUIRED_KEYS if k not in params]
    if missing:
        raise ConfigError(f"expid {expid!r} in {config_dir}: missing key(s) {missing}")
    if params.get("rebuild_dataset", False):
        raise ConfigError(f"dataset {params['dataset_id']}: set `rebuild_dataset: False`; "
                          "MMCTRDataLoader reads the raw MicroLens parquet files directly")
    for key in needs:
        if not params.get(key):
            raise ConfigError(f"dataset {params['dataset_id']}: no {key} in the config")
        if not Path(params[key]).exists():
            raise ConfigError(f"dataset {params['dataset_id']}: {key}={params[key]} not found "
                              f"(paths resolve against {os.getcwd()})")
    return params


def _set_logger(params: dict, job: str = "") -> None:
    """FuxiCTR's logger (``<model_root>/<dataset_id>/<expid>[.job].log``, rewritten per run)."""
    from fuxictr.utils import set_logger

    set_logger(dict(params, model_id=params["model_id"] + (f".{job}" if job else "")))
    logging.info("FuxiCTR %s, fuxictr_mmctr, params: %s", compat.fuxictr_version(),
                 {k: params[k] for k in sorted(params) if k != "feature_cols"})


def build_feature_map(params: dict):
    """Fit the feature processor on the config (no data rewrite) and load the map."""
    from fuxictr.preprocess import build_dataset

    from ..data.features import MMCTRFeatureProcessor

    feature_encoder = MMCTRFeatureProcessor(**params)
    build_dataset(feature_encoder, **params)
    return load_feature_map(params)


def load_feature_map(params: dict):
    """The feature map saved by training (``<data_root>/<dataset_id>/feature_map.json``)."""
    from fuxictr.features import FeatureMap

    data_dir = os.path.join(params["data_root"], params["dataset_id"])
    json_file = os.path.join(data_dir, "feature_map.json")
    if not os.path.exists(json_file):
        raise ConfigError(f"{json_file} not found: train the experiment first (run_expid.py)")
    feature_map = FeatureMap(params["dataset_id"], data_dir)
    feature_map.load(json_file, params)
    return feature_map


def build_model(feature_map, params: dict):
    from ..models import get_model

    model = get_model(params["model"])(feature_map, **params)
    model.count_parameters()
    return model


def _loader_params(params: dict) -> dict:
    from ..data.loader import MMCTRDataLoader

    return dict(params, data_loader=MMCTRDataLoader)


# ---------------------------------------------------------------------------- jobs

def train(config_dir, expid: str, gpu: int = -1) -> TrainResult:
    """Train ``expid`` with FuxiCTR's ``BaseModel.fit`` and evaluate the best checkpoint."""
    from fuxictr.pytorch.torch_utils import seed_everything

    params = load_params(config_dir, expid, gpu)
    _set_logger(params)
    seed_everything(seed=params.get("seed", 2024))
    feature_map = build_feature_map(params)
    model = build_model(feature_map, params)
    train_gen, valid_gen = compat.rank_data_loaders(feature_map, "train", **_loader_params(params))
    model.fit(train_gen, validation_data=valid_gen, **params)
    logging.info("****** Validation evaluation ******")
    valid_metrics = dict(model.evaluate(valid_gen))
    _append_result(config_dir, expid, params["dataset_id"], valid_metrics)
    return TrainResult(expid=expid, valid_metrics=valid_metrics, checkpoint=Path(model.checkpoint))


SPLITS = ("train", "valid", "test")


def _load_trained_model(params: dict):
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


def _predict_loaded(feature_map, model, params: dict, split: str):
    """Score one split with an already loaded model (rows in file order)."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: expected one of {list(SPLITS)}")
    data = params.get(f"{split}_data")
    if not data:
        raise ConfigError(f"dataset {params['dataset_id']}: no {split}_data in the config")
    # The loader route for a single split is FuxiCTR's test stage pointed at that file.
    loader_params = dict(_loader_params(params), test_data=data)
    test_gen = compat.rank_data_loaders(feature_map, "test", **loader_params)
    logging.info("Scoring the %s split (%s)...", split, data)
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
    params = load_params(config_dir, expid, gpu, needs=(f"{split}_data", "item_info"))
    feature_map, model = _load_trained_model(params)
    return _predict_loaded(feature_map, model, params, split)


def predict(config_dir, expid: str, gpu: int = -1, task: str = "Task2",
            out: Optional[str] = None, all_columns: bool = False) -> PredictResult:
    """Score the test split with the saved feature map and best checkpoint; write the zip.

    Only the test split is read. The zip holds ``prediction.csv`` (``ID`` + ``task``) and is
    checked before it is written: one row per test row, no NaN, values in [0, 1].
    """
    from ..submit.submission import count_rows, write_submission

    params = load_params(config_dir, expid, gpu, needs=("test_data", "item_info"))
    _set_logger(params, "predict")  # keep the training log
    feature_map, model = _load_trained_model(params)
    y_pred = _predict_loaded(feature_map, model, params, "test")
    zip_path = Path(out) if out else Path("submission") / f"{expid}.zip"
    write_submission({task: y_pred}, zip_path, n_rows=count_rows(params["test_data"]),
                     all_columns=all_columns)
    logging.info("Submission written: %s", zip_path)
    return PredictResult(expid=expid, zip_path=zip_path, num_rows=len(y_pred))


def _results_file(config_dir) -> Path:
    """FuxiCTR's convention: results append to ``<config name>.csv`` in the working dir."""
    return Path(Path(str(config_dir).rstrip("/")).name.replace(".yaml", "") + ".csv")


def _append_result(config_dir, expid: str, dataset_id: str, metrics: Dict[str, float]) -> None:
    line = " {},[command] python {},[exp_id] {},[dataset_id] {},[train] N.A.,[val] {}\n".format(
        datetime.now().strftime("%Y%m%d-%H%M%S"), " ".join(sys.argv), expid, dataset_id,
        " - ".join(f"{k}: {v:.6f}" for k, v in metrics.items()))
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

def _expid_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default="./config/", help="the config directory")
    parser.add_argument("--expid", required=True, help="the experiment id to run")
    parser.add_argument("--gpu", type=int, default=-1, help="the GPU index, -1 for CPU")
    return parser


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _expid_parser("Train one experiment (FuxiCTR run_expid).")
    args = parser.parse_args(argv)

    def job():
        result = train(args.config, args.expid, args.gpu)
        logging.info("Validation: %s",
                     " - ".join(f"{k}: {v:.6f}" for k, v in result.valid_metrics.items()))
    return run_guarded(job, prog=parser.prog)


def predict_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _expid_parser("Predict the test split and write a Codabench submission zip.")
    parser.add_argument("--task", default="Task2", choices=["Task1", "Task2", "Task1&2"],
                        help="the column of prediction.csv to fill")
    parser.add_argument("--all-columns", action="store_true",
                        help="write ID,Task1,Task2,Task1&2 with unused columns 0")
    parser.add_argument("--out", default=None, help="zip path (default submission/<expid>.zip)")
    args = parser.parse_args(argv)

    def job():
        result = predict(args.config, args.expid, args.gpu, task=args.task, out=args.out,
                         all_columns=args.all_columns)
        logging.info("Wrote %s (%d rows)", result.zip_path, result.num_rows)
    return run_guarded(job, prog=parser.prog)


def tune_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Grid search with FuxiCTR's autotuner.")
    parser.add_argument("--config", required=True, help="the tuner config file")
    parser.add_argument("--tag", default=None, help="run only expids containing this tag")
    parser.add_argument("--gpu", nargs="+", default=["-1"], help="GPU indexes, -1 for CPU")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    failed: List[str] = []
    code = run_guarded(lambda: failed.extend(tune(args.config, args.gpu, args.tag)),
                       prog=parser.prog)
    if failed:
        logger.error("%d experiment(s) failed: %s", len(failed), failed)
        return 1
    return code


if __name__ == "__main__":
    commands = {"train": train_main, "predict": predict_main, "tune": tune_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m fuxictr_mmctr.train.experiment {{{','.join(commands)}}} ...")
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
