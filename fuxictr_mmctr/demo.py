"""The main job on the bundled sample: make the sample if absent, train DIN, write the zip.

``mmctr demo`` (what ``make demo`` runs) is the same as::

    mmctr make-sample --out data/sample --preset default
    python run_expid.py --config config/mmctr_config --expid DIN_sample --gpu -1
    python prediction.py --config config/mmctr_config --expid DIN_sample --gpu -1
"""
from __future__ import annotations

import argparse
import logging

from .train import experiment
from .data.sample import make_sample

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli import add_experiment_options

    add_experiment_options(parser, config="config/mmctr_config", expid="DIN_sample")
    parser.add_argument("--preset", default="default", help="sample size if it must be made")


def run(args: argparse.Namespace) -> int:
    # The sample is written where the experiment's dataset config looks for it.
    params = experiment.load_params(args.config, args.expid, args.gpu, needs=())
    make_sample(params["data_root"], preset=args.preset)
    trained = experiment.train(args.config, args.expid, gpu=args.gpu)
    predicted = experiment.predict(args.config, args.expid, gpu=args.gpu)
    auc = trained.valid_metrics.get("AUC", float("nan"))
    print(f"\nDone. {args.expid}: validation AUC {auc:.4f}, logloss "
          f"{trained.valid_metrics.get('logloss', float('nan')):.4f}\n"
          f"Submission ({predicted.num_rows} test rows): {predicted.zip_path.resolve()}")
    return 0
