"""``mmctr check-submission``: check a submission zip the way Codabench will read it.

Usage::

    mmctr check-submission submission.zip --test data/MicroLens_1M_x1/test.parquet

Prints ``OK`` with the row count and columns, or logs the first problem found and exits 2.
The checks themselves live in :func:`fuxictr_mmctr.submit.submission.check_submission_zip`.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .submission import check_submission_zip

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mmctr check-submission``."""
    parser.add_argument("zip", type=Path, metavar="FILE.zip", help="the submission archive")
    parser.add_argument("--test", required=True, type=Path,
                        help="test.parquet of the data set (for the row count)")


def run(args: argparse.Namespace) -> int:
    """Run the check; returns 0 when the archive is accepted."""
    report = check_submission_zip(args.zip, test_parquet=args.test)
    print(f"OK {report.path}: {report.n_rows} rows, columns {list(report.columns)}")
    return 0
