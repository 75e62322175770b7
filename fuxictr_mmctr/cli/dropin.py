"""``mmctr drop-in PATH``: make a checkout of the official challenge repository run this package
(:mod:`fuxictr_mmctr.integrations.dropin`); ``--undo`` restores it."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..integrations.dropin import CONFIG_NAME, drop_in, undo
from .options import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path,
                        help="a checkout of the official challenge repository (holds "
                             "run_expid.py and src/)")
    parser.add_argument("--undo", action="store_true",
                        help="restore the official src/ and remove what drop-in wrote")
    parser.add_argument("--config", default=None, type=Path,
                        help="this package's config folder to copy "
                             "(default: config/mmctr_config of its source tree)")


def _run(args: argparse.Namespace) -> int:
    if args.undo:
        for line in undo(args.path):
            print(line)
        return 0
    result = drop_in(args.path, config_dir=args.config)
    print(f"{result.repo}: src/ now exposes {', '.join(result.models)} and MMCTRDataLoader")
    print(f"configs: {result.config_dir} (datasets: {', '.join(result.datasets) or 'none'})")
    for dataset_id, reason in result.skipped.items():
        print(f"  left out {dataset_id}: {reason}")
    state = "written" if result.backup_created else "kept from the first drop-in"
    print(f"backup of the official src/: {result.backup / 'src'} ({state}); "
          f"undo with: mmctr drop-in {result.repo} --undo")
    print(f"then, in {result.repo}: python run_expid.py --config config/{CONFIG_NAME} "
          "--expid DIN_default --gpu 0")
    return 0


DROP_IN = Command("Make an official challenge checkout use this package.", _add_arguments, _run)
