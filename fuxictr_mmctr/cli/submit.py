"""``mmctr submit``, ``mmctr check-submission``, ``mmctr popularity`` and ``mmctr blend``:
Codabench submissions, the popularity baseline and blends of trained experiments::

    mmctr submit --pred preds.npy --test data/MicroLens_1M_x1/test.parquet --task Task2 --out sub.zip
    mmctr check-submission sub.zip --test data/MicroLens_1M_x1/test.parquet
    mmctr popularity --data-dir data/sample/MicroLens_1M_x1 --out submission/popularity.zip
    mmctr blend --config config/mmctr_config --expids DIN_sample DCNv2_sample --method rank

``check-submission`` prints ``OK`` with the row count and columns, or the first problem found
and exits 2 (the checks are :func:`fuxictr_mmctr.submit.submission.check_submission_zip`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..submit.blend import METHODS, OBJECTIVES
from ..submit.popularity import run_popularity
from ..submit.submission import (TASK_COLUMNS, check_submission_zip, load_predictions,
                                 test_rows, write_submission)
from ..train.blend import run_blend
from .options import Command, add_gpu_option


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASK_COLUMNS, default="Task2",
                        help="the prediction.csv column to fill (default: Task2)")
    parser.add_argument("--all-columns", action="store_true",
                        help="write ID, Task1, Task2, Task1&2 with unused columns set to 0")


# ---------------------------------------------------------------------------- mmctr submit

def _add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, type=Path,
                        help="predictions, one per test row (.npy, .csv, .parquet): in test order, or "
                             "a table with an ID column (aligned by it)")
    parser.add_argument("--pred-column", default=None,
                        help="column of a csv/parquet predictions file (default: the --task "
                             "column if there is one, else the first float column but ID)")
    parser.add_argument("--test", required=True, type=Path,
                        help="test.parquet of the data set (for the row count)")
    _add_task_options(parser)
    parser.add_argument("--out", required=True, type=Path, help="submission zip to write")


def _run_submit(args: argparse.Namespace) -> int:
    n_rows = test_rows(args.test)
    values = load_predictions(args.pred, column=args.pred_column, n_rows=n_rows,
                              prefer=args.task)
    path = write_submission({args.task: values}, zip_path=args.out, n_rows=n_rows,
                            all_columns=args.all_columns, source=str(args.pred))
    print(f"wrote {path} ({n_rows} rows, task {args.task})")
    return 0


# ---------------------------------------------------------------------------- check-submission

def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("zip", type=Path, metavar="FILE.zip", help="the submission archive")
    parser.add_argument("--test", required=True, type=Path,
                        help="test.parquet of the data set (for the row count)")


def _run_check(args: argparse.Namespace) -> int:
    report = check_submission_zip(args.zip, test_parquet=args.test)
    print(f"OK {report.path}: {report.n_rows} rows, columns {list(report.columns)}")
    return 0


# ---------------------------------------------------------------------------- popularity

def _add_popularity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, type=Path,
                        help="folder with train.parquet, valid.parquet and test.parquet")
    parser.add_argument("--out", required=True, type=Path, help="submission zip to write")
    parser.add_argument("--include-valid", action="store_true",
                        help="refit on train + valid for the submission "
                             "(the AUC is still from a fit on train only)")
    _add_task_options(parser)


def _run_popularity(args: argparse.Namespace) -> int:
    result = run_popularity(args.data_dir, out_zip=args.out, include_valid=args.include_valid,
                            task=args.task, all_columns=args.all_columns)
    print(f"valid AUC {result.valid_auc:.6f} (fitted on train); submission fitted on "
          f"{' + '.join(result.fitted_on)}: {result.zip_path}")
    return 0


# ---------------------------------------------------------------------------- blend

def _add_blend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the config directory of the expids")
    parser.add_argument("--expids", nargs="+", required=True,
                        help="two or more trained experiments over the same valid/test rows")
    parser.add_argument("--method", choices=METHODS, default="mean",
                        help="mean of probabilities or mean of normalised ranks (default: mean)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fit-weights", action="store_true",
                       help="fit non-negative weights summing to 1 on validation (optimistic "
                            "validation AUC)")
    group.add_argument("--weights", nargs="+", type=float, default=None,
                       help="fixed weights, one per expid (normalised to sum to 1)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="auc",
                        help="what --fit-weights optimises (default: auc)")
    _add_task_options(parser)
    parser.add_argument("--out", default="submission/blend.zip",
                        help="submission zip (default: submission/blend.zip)")
    add_gpu_option(parser)
    parser.add_argument("--refresh", action="store_true",
                        help="recompute predictions even when cached")


def _run_blend(args: argparse.Namespace) -> int:
    result = run_blend(args.config, args.expids, method=args.method, weights=args.weights,
                       fit_weights=args.fit_weights, task=args.task, out=args.out,
                       gpu=args.gpu, all_columns=args.all_columns, refresh=args.refresh,
                       objective=args.objective)
    print(result.table())
    print(f"wrote {result.zip_path} ({result.n_test} rows, task {args.task})")
    return 0


SUBMIT = Command("Zip predictions into a Codabench submission.", _add_submit_arguments,
                 _run_submit)
CHECK_SUBMISSION = Command("Check a submission zip the way Codabench will read it.",
                           _add_check_arguments, _run_check)
POPULARITY = Command("The popularity baseline: smoothed per-item CTR.",
                     _add_popularity_arguments, _run_popularity)
BLEND = Command("Blend the predictions of trained experiments into one submission.",
                _add_blend_arguments, _run_blend)
