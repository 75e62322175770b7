"""A quick look at the bundled sample: make it, train DIN, write the zip (about 2 minutes).

``mmctr demo`` (what ``make demo`` runs) is the same as::

    mmctr make-sample --out data/sample --preset default
    mmctr popularity --data-dir data/sample/MicroLens_1M_x1 ...   # only its valid AUC
    mmctr train   --config config/mmctr_config --expid DIN_demo --gpu -1
    mmctr predict --config config/mmctr_config --expid DIN_demo --gpu -1

``DIN_demo`` is ``DIN_sample`` for one epoch over the last 16 history items; ``mmctr demo
--full`` trains ``DIN_sample`` itself (5 epochs with early stopping, the README's figures,
about 9 minutes on 2 cores).
The config is ``./config/mmctr_config`` when the working directory has one (a source checkout,
or ``mmctr init-config config``), else the one inside the package: the demo runs from any
folder, and writes ``data/sample``, ``checkpoints/`` and ``submission/`` there.
"""
from __future__ import annotations

import argparse
import logging
import time

from ..data.sample import make_sample
from ..resources import default_config_dir
from ..submit.popularity import fit_item_ctr, validation_auc
from ..train import experiment
from .options import Command, add_gpu_option

logger = logging.getLogger(__name__)

QUICK_EXPID = "DIN_demo"
FULL_EXPID = "DIN_sample"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="config directory (default: ./config/mmctr_config if present, "
                             "else the package's)")
    parser.add_argument("--full", action="store_true",
                        help=f"train {FULL_EXPID} (5 epochs, ~9 min on 2 cores) instead of "
                             f"{QUICK_EXPID} (1 epoch, ~2 min)")
    parser.add_argument("--expid", default=None,
                        help=f"experiment to train (default {QUICK_EXPID}; {FULL_EXPID} "
                             "with --full)")
    parser.add_argument("--preset", default="default", help="sample size if it must be made")
    add_gpu_option(parser)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    config = args.config or str(default_config_dir())
    expid = args.expid or (FULL_EXPID if args.full else QUICK_EXPID)
    # The sample is written where the experiment's dataset config looks for it.
    params = experiment.load_params(config, expid, args.gpu, needs=())
    logger.info("Demo: %s from %s; step 1/4: the sample (%s preset) in %s", expid, config,
                args.preset, params["data_root"])
    sample = make_sample(params["data_root"], preset=args.preset)
    logger.info("Step 2/4: the popularity baseline (per-item CTR fitted on train)")
    baseline = validation_auc(fit_item_ctr(sample.paths["train"]), sample.paths["valid"])
    logger.info("Popularity baseline: validation AUC %.4f", baseline)
    logger.info("Step 3/4: train %s (%d epoch(s), batch %d)", expid, params["epochs"],
                params["batch_size"])
    trained = experiment.train(config, expid, gpu=args.gpu)
    logger.info("Step 4/4: predict the test split and write the submission")
    predicted = experiment.predict(config, expid, gpu=args.gpu)
    auc = trained.valid_metrics.get("AUC", float("nan"))
    logloss = trained.valid_metrics.get("logloss", float("nan"))
    minutes, seconds = divmod(int(round(time.perf_counter() - start)), 60)
    more = "" if expid != QUICK_EXPID else \
        f"\n  The longer run: mmctr demo --full ({FULL_EXPID}, 5 epochs, ~9 min on 2 cores)"
    print(f"\nDone in {minutes}m{seconds:02d}s on {sample.counts['train']:,} train rows.\n"
          f"  {expid:<20} validation AUC {auc:.4f}  logloss {logloss:.4f}\n"
          f"  {'popularity baseline':<20} validation AUC {baseline:.4f}  (per-item CTR)\n"
          f"  Submission ({predicted.num_rows:,} test rows): {predicted.zip_path.resolve()}"
          f"{more}")
    return 0


DEMO = Command("A quick look at the sample: make it, train DIN, write the zip.", _add_arguments,
               _run)
