"""``mmctr train|predict|tune`` and the root scripts ``run_expid.py``, ``prediction.py`` and
``run_param_tuner.py`` (FuxiCTR's command lines)::

    python run_expid.py --config DIR --expid ID --gpu N
    python prediction.py --config DIR --expid ID --gpu N [--task Task2] [--out ZIP]
    python run_param_tuner.py --config FILE --gpu 0 1 [--tag T]
    python run_param_tuner.py --config FILE --ray ADDRESS|local [--gpu 0]  # trials on Ray
    torchrun --nproc_per_node N run_expid.py ...       # one experiment data-parallel

The jobs themselves are :mod:`fuxictr_mmctr.train.experiment` (train, predict),
:mod:`fuxictr_mmctr.train.sweep` (tune) and :mod:`fuxictr_mmctr.train.ray_sweep` (``--ray``).
"""
from __future__ import annotations

import argparse
import logging
from typing import Optional, Sequence

from ..submit.submission import TASK_COLUMNS
from ..train import experiment, sweep
from ..train.ray_sweep import tune_on_ray
from ..train.results import metric_line
from .options import Command, add_experiment_options

logger = logging.getLogger(__name__)


def _run_train(args: argparse.Namespace) -> int:
    result = experiment.train(args.config, args.expid, args.gpu)
    logging.info("Validation: %s", metric_line(result.valid_metrics))
    return 0


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_options(parser)
    parser.add_argument("--task", default="Task2", choices=list(TASK_COLUMNS),
                        help="the column of prediction.csv to fill")
    parser.add_argument("--all-columns", action="store_true",
                        help="write ID,Task1,Task2,Task1&2 with unused columns 0")
    parser.add_argument("--out", default=None, help="zip path (default submission/<expid>.zip)")


def _run_predict(args: argparse.Namespace) -> int:
    result = experiment.predict(args.config, args.expid, args.gpu, task=args.task,
                                out=args.out, all_columns=args.all_columns)
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
                        "e.g. from `ray start --head`; `auto`: the one running on this "
                        "machine), or `local` for a private one; needs "
                        "pip install 'fuxictr_mmctr[ray]'")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0,
                        help="with --ray: CPUs reserved for each trial (default 1)")
    parser.add_argument("--ray-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="with --ray ADDRESS: give up reaching the cluster after this many "
                        "seconds (default 60)")


def _run_tune(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.ray is None:
            failed = sweep.tune(args.config, args.gpu, args.tag)
        else:
            failed = tune_on_ray(args.config, args.ray, args.gpu, args.tag,
                                 cpus_per_trial=args.cpus_per_trial,
                                 connect_timeout=args.ray_timeout)
    except sweep.Stopped as stopped:
        logger.error("sweep %s; the trials it was running were ended and recorded nothing: "
                     "rerun the same command to resume", stopped)
        return stopped.exit_code
    if failed:
        logger.error("%d experiment(s) failed: %s", len(failed), failed)
        return 1
    return 0


TRAIN = Command("Train one experiment (FuxiCTR run_expid).", add_experiment_options, _run_train)
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
