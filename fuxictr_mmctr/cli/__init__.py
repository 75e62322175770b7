"""The ``mmctr`` console script, and every command line of the package: the top floor.

Each command is a :class:`~fuxictr_mmctr.cli.options.Command` (its arguments and what it runs)
in a module of this package; the jobs themselves live in the layers below. Modules are imported
only when their command runs, so ``mmctr --help`` stays fast and a command whose optional
dependencies are missing does not break the others. Errors are handled once
(:func:`fuxictr_mmctr.errors.run_guarded`): a user error prints one line and exits 2, a bug
keeps its traceback. ``python -m fuxictr_mmctr`` and ``python -m fuxictr_mmctr.cli`` are the
same command line; the root scripts ``run_expid.py``, ``prediction.py`` and
``run_param_tuner.py`` are :mod:`.experiment`'s ``train_main``, ``predict_main`` and
``tune_main``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import run_guarded

# command name -> ("module:COMMAND" under fuxictr_mmctr.cli, one-line help)
COMMANDS = {
    "demo": ("demo:DEMO", "a quick look at the sample: make it, train DIN, write the zip"),
    "init-config": ("config:INIT_CONFIG", "write the package's config folder to DIR"),
    "make-sample": ("data:MAKE_SAMPLE", "write a MicroLens-shaped sample dataset"),
    "validate": ("data:VALIDATE", "check a MicroLens data directory against the schema"),
    "train": ("experiment:TRAIN", "train one experiment with FuxiCTR's fit (as run_expid.py)"),
    "predict": ("experiment:PREDICT",
                "score the test split of a trained experiment, write the zip (as prediction.py)"),
    "tune": ("experiment:TUNE", "grid search with FuxiCTR's autotuner (as run_param_tuner.py)"),
    "submit": ("submit:SUBMIT", "zip predictions into a Codabench submission"),
    "check-submission": ("submit:CHECK_SUBMISSION", "check a submission zip against test.parquet"),
    "popularity": ("submit:POPULARITY", "the popularity baseline (per-item smoothed CTR)"),
    "build-embeddings": ("embeddings:BUILD_EMBEDDINGS",
                         "item_info with a fused 128-d multimodal item embedding (Task 1)"),
    "semantic-ids": ("item_side:SEMANTIC_IDS",
                     "item_info with semantic-ID codes (residual k-means of a vector column)"),
    "item-side": ("item_side:ITEM_SIDE",
                  "candidate item tables: given / Task 1 / both vectors, with or without codes"),
    "blend": ("submit:BLEND", "blend the predictions of trained experiments into one submission"),
    "pipeline": ("pipeline:PIPELINE", "Task 1 -> item sides with semantic IDs -> models -> blend "
                 "-> checked zip, resumable"),
    "drop-in": ("dropin:DROP_IN", "make an official challenge checkout use this package"),
    "report": ("report:REPORT", "one HTML page of a sweep, a config's runs or a pipeline, "
                                "with plots"),
}


def load_command(name: str):
    """The object of command ``name`` that has ``add_arguments`` and ``run``."""
    module_name, _, attr = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmctr", description="Multimodal CTR prediction on MicroLens (a FuxiCTR plugin): "
                                  "one command per job; `mmctr COMMAND --help` for its options.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse only the command name here; the module parses its own arguments.
    known, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if known.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = load_command(known.command)
    cmd_parser = argparse.ArgumentParser(prog=f"mmctr {known.command}",
                                         description=COMMANDS[known.command][1])
    command.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(rest)
    return run_guarded(lambda: command.run(args), prog=f"mmctr {known.command}")

