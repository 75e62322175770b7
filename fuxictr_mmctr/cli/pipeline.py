"""``mmctr pipeline``: validate -> Task 1 -> item sides with semantic IDs -> every model on each
item side -> a blend chosen on valid -> a checked submission, resumable stage by stage::

    mmctr pipeline --data-dir data/sample --work-dir runs/sample --tiny-clip
    mmctr pipeline --data-dir data --work-dir runs/full --clip /models/clip-vit-base-patch32 \\
        --gpu 0 --models DIN DCNv2 DIN_DCN TransformerDCN

Rerun the same command to resume; ``--rerun STAGE`` runs a stage again (``train:`` every
training). The report is ``<work-dir>/report.json``; a one-screen summary is printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.item_side import CANDIDATES
from ..data.semantic_ids import QuantizerConfig
from ..embeddings.encoders.clip import DEFAULT_CLIP
from ..embeddings.fusion import FUSIONS
from ..models import MODELS
from ..pipeline.run import (DEFAULT_MODELS, DEFAULT_SIDES, SIDES_WITHOUT_VECTORS, PipelineConfig,
                            run_pipeline, summary)
from ..submit.blend import METHODS
from ..submit.submission import TASK_COLUMNS
from .options import Command, add_gpu_option


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, type=Path,
                        help="the MicroLens root (MicroLens_1M_x1/, item_seq.parquet, "
                             "item_feature.parquet, item_images/)")
    parser.add_argument("--work-dir", required=True, type=Path,
                        help="where every output goes; rerun with the same one to resume")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        choices=sorted(MODELS), metavar="MODEL",
                        help=f"models to train on each item side (default: "
                             f"{' '.join(DEFAULT_MODELS)}; any of {', '.join(sorted(MODELS))})")
    parser.add_argument("--item-sides", nargs="+", default=[],
                        choices=list(CANDIDATES), metavar="SIDE",
                        help=f"candidate item sides (default: {' '.join(DEFAULT_SIDES)}, or "
                             f"{' '.join(SIDES_WITHOUT_VECTORS)} when item_feature.parquet has "
                             f"no precomputed vectors; any of {', '.join(CANDIDATES)})")
    parser.add_argument("--settings", default="auto", choices=["auto", "sample", "default"],
                        help="each model's <Model>_sample or <Model>_default settings (auto: "
                             "sample on a generated sample, else default)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every model (default: the settings')")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size of every model (default: the settings')")
    add_gpu_option(parser)
    parser.add_argument("--seed", type=int, default=2024,
                        help="seed of Task 1, the codes and every model (default 2024)")
    clip = parser.add_mutually_exclusive_group()
    clip.add_argument("--clip", default=DEFAULT_CLIP,
                      help=f"Task 1's CLIP: a name or a local folder (default: {DEFAULT_CLIP})")
    clip.add_argument("--tiny-clip", action="store_true",
                      help="a tiny random CLIP (offline demo and tests)")
    parser.add_argument("--source", action="append", default=[], metavar="KIND[:NAME][:OPTS]",
                        help="Task 1's student sources, as mmctr build-embeddings --source "
                             "(repeatable; default: the CLIP)")
    parser.add_argument("--fusion", choices=FUSIONS, default="gate",
                        help="Task 1's fusion (default gate)")
    parser.add_argument("--code-levels", type=int, default=QuantizerConfig.levels,
                        help=f"semantic ID levels (default {QuantizerConfig.levels})")
    parser.add_argument("--codebook", type=int, default=QuantizerConfig.codebook,
                        help=f"codes per level (default {QuantizerConfig.codebook})")
    parser.add_argument("--blend", choices=METHODS, default="rank",
                        help="rank or mean average (default rank)")
    parser.add_argument("--task", choices=TASK_COLUMNS, default="Task2",
                        help="the submission column (default Task2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the submission zip (default <work-dir>/submission.zip)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time, each in its own process with the torch "
                             "threads split between them (default 1; 2 on a 2-core CPU "
                             "trains faster)")
    parser.add_argument("--rerun", nargs="+", default=(), metavar="STAGE",
                        help="stages to run even when up to date (train: = every training)")


def _run(args: argparse.Namespace) -> int:
    cfg = PipelineConfig(
        data_dir=args.data_dir, work_dir=args.work_dir, models=tuple(args.models),
        item_sides=tuple(args.item_sides), settings=args.settings, epochs=args.epochs,
        batch_size=args.batch_size, gpu=args.gpu, seed=args.seed, clip=args.clip,
        tiny_clip=args.tiny_clip, sources=tuple(args.source), fusion=args.fusion,
        quantizer=QuantizerConfig(levels=args.code_levels, codebook=args.codebook,
                                  seed=args.seed),
        blend=args.blend, task=args.task, out=args.out, rerun=tuple(args.rerun),
        jobs=args.jobs)
    result = run_pipeline(cfg)
    print(summary(result.report))
    return 0


PIPELINE = Command("Task 1's item sides feeding the models, a blend and a checked submission.",
                   _add_arguments, _run)
