"""``mmctr init-config DIR``: write the package's config folder to edit
(:func:`fuxictr_mmctr.resources.write_config`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..resources import CONFIG_NAME, write_config
from .options import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write (e.g. config): DIR/mmctr_config, DIR/tuners")
    parser.add_argument("--force", action="store_true",
                        help="rewrite the shipped files in an existing folder (others are kept)")
    parser.add_argument("--sample-root", default=None,
                        help="where the sample datasets read their files (default: "
                             "./data/sample/ relative to where you run)")


def _run(args: argparse.Namespace) -> int:
    files = write_config(args.dir, force=args.force, sample_root=args.sample_root)
    config_dir = Path(args.dir) / CONFIG_NAME
    sample = args.sample_root or "data/sample"
    print(f"Wrote {len(files)} config files to {args.dir}. Train with: mmctr train --config "
          f"{config_dir} --expid DIN_sample (after `mmctr make-sample --out {sample}`)")
    return 0


INIT_CONFIG = Command("Write the package's config folder to DIR.", _add_arguments, _run)
