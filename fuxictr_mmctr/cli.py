"""The ``mmctr`` console script: one sub-command per job, each living in its own module.

Every command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``mmctr --help`` stays fast and a command whose
optional dependencies are missing does not break the others. Errors are handled here, once
(:func:`fuxictr_mmctr.errors.run_guarded`): a user error prints one line and exits 2, a bug
keeps its traceback. ``python -m fuxictr_mmctr`` is the same command line.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from . import __version__
from .errors import run_guarded

# command name -> (module, one-line help)
COMMANDS = {
    "demo": ("fuxictr_mmctr.demo", "the main job on the sample: make it, train DIN, write the zip"),
    "make-sample": ("fuxictr_mmctr.data.sample", "write a MicroLens-shaped sample dataset"),
    "validate": ("fuxictr_mmctr.data.schema", "check a MicroLens data directory against the schema"),
    "submit": ("fuxictr_mmctr.submit.submission", "zip predictions into a Codabench submission"),
    "check-submission": ("fuxictr_mmctr.submit.check", "check a submission zip against test.parquet"),
    "popularity": ("fuxictr_mmctr.submit.popularity", "the popularity baseline (per-item smoothed CTR)"),
    "build-embeddings": ("fuxictr_mmctr.embeddings.cli",
                         "item_info with a fused 128-d multimodal item embedding (Task 1)"),
    "blend": ("fuxictr_mmctr.submit.blend", "blend the predictions of trained experiments into one submission"),
    "drop-in": ("fuxictr_mmctr.integrations.dropin", "make an official challenge checkout use this package"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmctr", description=__doc__.splitlines()[0])
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
    module_name, help_text = COMMANDS[known.command]
    module = importlib.import_module(module_name)
    cmd_parser = argparse.ArgumentParser(prog=f"mmctr {known.command}", description=help_text)
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(rest)
    return run_guarded(lambda: module.run(args), prog=f"mmctr {known.command}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
