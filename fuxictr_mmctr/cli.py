"""The ``mmctr`` console script: one sub-command per job, each living in its own module.

A command is a module (or an object in one, ``"module:NAME"``) with ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their command runs, so
``mmctr --help`` stays fast and a command whose optional dependencies are missing does not
break the others. Errors are handled here, once (:func:`fuxictr_mmctr.errors.run_guarded`): a
user error prints one line and exits 2, a bug keeps its traceback. ``python -m
fuxictr_mmctr`` and ``python -m fuxictr_mmctr.cli`` are the same command line. Options that
several commands share (``--gpu``, the ``--config``/``--expid`` of one experiment) are
defined once, below.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from . import __version__
from .errors import run_guarded

# command name -> (module or "module:object", one-line help)
COMMANDS = {
    "demo": ("fuxictr_mmctr.demo", "the main job on the sample: make it, train DIN, write the zip"),
    "init-config": ("fuxictr_mmctr.resources", "write the package's config folder to DIR"),
    "make-sample": ("fuxictr_mmctr.data.sample", "write a MicroLens-shaped sample dataset"),
    "validate": ("fuxictr_mmctr.data.schema", "check a MicroLens data directory against the schema"),
    "train": ("fuxictr_mmctr.train.experiment:TRAIN",
              "train one experiment with FuxiCTR's fit (as run_expid.py)"),
    "predict": ("fuxictr_mmctr.train.experiment:PREDICT",
                "score the test split of a trained experiment, write the zip (as prediction.py)"),
    "tune": ("fuxictr_mmctr.train.experiment:TUNE",
             "grid search with FuxiCTR's autotuner (as run_param_tuner.py)"),
    "submit": ("fuxictr_mmctr.submit.submission", "zip predictions into a Codabench submission"),
    "check-submission": ("fuxictr_mmctr.submit.check", "check a submission zip against test.parquet"),
    "popularity": ("fuxictr_mmctr.submit.popularity", "the popularity baseline (per-item smoothed CTR)"),
    "build-embeddings": ("fuxictr_mmctr.embeddings.cli",
                         "item_info with a fused 128-d multimodal item embedding (Task 1)"),
    "blend": ("fuxictr_mmctr.submit.blend", "blend the predictions of trained experiments into one submission"),
    "drop-in": ("fuxictr_mmctr.integrations.dropin", "make an official challenge checkout use this package"),
}


# ---------------------------------------------------------------------------- shared options

def add_gpu_option(parser: argparse.ArgumentParser) -> None:
    """``--gpu N``: FuxiCTR's device index, -1 for CPU."""
    parser.add_argument("--gpu", type=int, default=-1, help="the GPU index, -1 for CPU "
                                                            "(default: -1)")


def add_experiment_options(parser: argparse.ArgumentParser, config: str = "./config/",
                           expid: Optional[str] = None) -> None:
    """``--config DIR --expid ID --gpu N``: one experiment, FuxiCTR's script options.

    Args:
        parser: the command's parser.
        config: the default config directory. Default: ``"./config/"`` (FuxiCTR's).
        expid: the default expid; None makes ``--expid`` required. Default: None.
    """
    parser.add_argument("--config", default=config,
                        help=f"the config directory (default: {config})")
    parser.add_argument("--expid", required=expid is None, default=expid,
                        help="the experiment id" + (f" (default: {expid})" if expid else ""))
    add_gpu_option(parser)


def load_command(name: str):
    """The object of command ``name`` that has ``add_arguments`` and ``run``."""
    target, _ = COMMANDS[name]
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
