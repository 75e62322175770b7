"""``mmctr report``: one HTML page of a sweep, a config folder's runs or a pipeline work dir::

    mmctr report DIN_sample_tuner_config.csv --out sweep.html
    mmctr report DIN_bench_tuner_config.*.csv --out bench.html   # one sweep over several datasets
    mmctr report work/pipeline                                   # its report.json

The page (tables, plots inlined as PNG; no network, no JavaScript) is
:mod:`fuxictr_mmctr.train.report`'s; it needs matplotlib (``pip install
'fuxictr_mmctr[report]'``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..train.report import write_report
from .options import Command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="a results CSV (a sweep; several CSVs make one sweep over several "
                             "datasets), a config folder (its <name>.csv in the working "
                             "directory), or a pipeline work dir (its report.json)")
    parser.add_argument("--out", type=Path, default=Path("report.html"),
                        help="the HTML file to write (default: report.html)")
    parser.add_argument("--config", type=Path, default=None,
                        help="the config folder of the CSV's runs (default: each row's "
                             "--config, read from the CSV's folder)")
    parser.add_argument("--title", default=None, help="the page's title")


def _run(args: argparse.Namespace) -> int:
    page = write_report(args.paths, args.out, config_dir=args.config, title=args.title)
    print(f"wrote {args.out} ({len(page.tables)} tables, {len(page.plots)} plots)")
    return 0


REPORT = Command("One HTML page of a sweep, a config folder's runs or a pipeline work dir, "
                 "with plots.", _add_arguments, _run)
