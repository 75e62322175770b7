"""``mmctr semantic-ids`` and ``mmctr item-side``: item tables with codes and joined vectors.

Examples::

    # sid_1..sid_3 (codes of item_emb_d128, 64 per level) -> item_info_codes.parquet
    mmctr semantic-ids --item-info data/sample/MicroLens_1M_x1/item_info.parquet \\
        --levels 3 --codebook 64

    # every candidate item side of a data folder (Task 1's when build-embeddings wrote it)
    mmctr item-side --data-dir data/sample

    # one table from parts: item_info + another table's vector under a new name + its codes
    mmctr item-side --base data/MicroLens_1M_x1/item_info.parquet \\
        --add data/item_emb.parquet:item_emb_d128_v3:item_emb_v3 --codes-of item_emb_v3 \\
        --out data/MicroLens_1M_x1/item_info_v3_codes.parquet

Each table gets a ``<stem>.report.json`` beside it (code usage, reconstruction error per level,
collisions). A table already written from the same inputs and settings is left as it is
(``--force`` rewrites it). Exit codes: 0 done, 2 bad input or option.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data.item_side import (CANDIDATES, CODE_PREFIX, GIVEN_COLUMN, ItemSideSpec,
                              VectorSource, build_candidates, build_item_side)
from ..data.schema import DATASET_DIR
from ..data.semantic_ids import QuantizerConfig
from ..errors import ConfigError
from .options import Command

logger = logging.getLogger(__name__)


def _add_quantizer_options(parser: argparse.ArgumentParser) -> None:
    q = parser.add_argument_group("semantic IDs (residual k-means)")
    d = QuantizerConfig()
    q.add_argument("--levels", type=int, default=d.levels,
                   help=f"code levels, one column each (default: {d.levels})")
    q.add_argument("--codebook", type=int, default=d.codebook,
                   help=f"centroids per level (default: {d.codebook})")
    q.add_argument("--seed", type=int, default=d.seed, help=f"default: {d.seed}")
    q.add_argument("--normalize", action="store_true",
                   help="L2-normalise the vectors before quantising (cosine geometry)")
    q.add_argument("--max-iter", type=int, default=d.max_iter,
                   help=f"Lloyd iterations per level at most (default: {d.max_iter})")
    q.add_argument("--n-init", type=int, default=d.n_init,
                   help=f"k-means++ restarts per level (default: {d.n_init})")
    parser.add_argument("--force", action="store_true",
                        help="write even when the output is up to date")


def _quantizer(args: argparse.Namespace) -> QuantizerConfig:
    return QuantizerConfig(levels=args.levels, codebook=args.codebook, seed=args.seed,
                           normalize=args.normalize, max_iter=args.max_iter, n_init=args.n_init)


def _log_result(result) -> None:
    sid = result.report.get("semantic_ids")
    if sid:
        last = sid["per_level"][-1]
        print(f"{result.out}: {sid['levels']} levels x {sid['codebook']} codes of "
              f"{sid['column']}; {sid['distinct_full_codes']} distinct IDs for {sid['items']} "
              f"items ({sid['colliding_items']} items share an ID); unexplained variance "
              f"{last['unexplained']:.4f}; report {result.report_path}")
    else:
        print(f"{result.out}: columns {result.report['columns']}; report {result.report_path}")


# ------------------------------------------------------------------ semantic-ids
def _semantic_ids_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--item-info", type=Path, required=True,
                        help="the item table (row index == item_id, row 0 = padding)")
    parser.add_argument("--column", default=GIVEN_COLUMN,
                        help=f"its list<float> column to quantise (default: {GIVEN_COLUMN})")
    parser.add_argument("--out", type=Path,
                        help="output parquet (default: <item-info stem>_codes.parquet beside it)")
    parser.add_argument("--prefix", default=CODE_PREFIX,
                        help=f"code columns <prefix>_1..<prefix>_L (default: {CODE_PREFIX})")
    parser.add_argument("--overwrite-input", action="store_true",
                        help="allow --out to be --item-info (replaced once the new file is "
                             "validated)")
    _add_quantizer_options(parser)


def _semantic_ids(args: argparse.Namespace) -> int:
    out = args.out or args.item_info.with_name(args.item_info.stem + "_codes.parquet")
    spec = ItemSideSpec(base=args.item_info, out=out, codes_of=args.column,
                        quantizer=_quantizer(args), prefix=args.prefix,
                        overwrite_input=args.overwrite_input)
    _log_result(build_item_side(spec, force=args.force))
    return 0


SEMANTIC_IDS = Command("item_info with semantic-ID codes: residual k-means of a vector column.",
                       _semantic_ids_arguments, _semantic_ids)


# ------------------------------------------------------------------ item-side
def _item_side_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path,
                        help="MicroLens root: write the candidate item sides of "
                             "<data-dir>/MicroLens_1M_x1 (see --candidates)")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=None,
                        help="with --data-dir: which ones (default: every one whose inputs "
                             "exist)")
    parser.add_argument("--task1", type=Path,
                        help="with --data-dir: Task 1's item_info (default: "
                             "<data-dir>/MicroLens_1M_x1/item_info_task1.parquet)")
    parser.add_argument("--content", type=Path,
                        help="with --data-dir: the content-only item_info of `mmctr "
                             "build-embeddings --source columns --fusion pca` (default: "
                             "<data-dir>/MicroLens_1M_x1/item_info_content.parquet)")
    parser.add_argument("--base", type=Path,
                        help="instead of --data-dir: the item_info whose rows and columns the "
                             "output keeps")
    parser.add_argument("--add", action="append", default=[], metavar="PATH[:COLUMN[:NAME]]",
                        help="with --base: join COLUMN (default item_emb_d128) of the item "
                             "table PATH as NAME (default COLUMN); repeatable")
    parser.add_argument("--codes-of", help="with --base: the vector column to quantise")
    parser.add_argument("--prefix", default=CODE_PREFIX,
                        help=f"with --base: code columns <prefix>_1.. (default: {CODE_PREFIX})")
    parser.add_argument("--out", type=Path, help="with --base: the output parquet")
    parser.add_argument("--overwrite-input", action="store_true",
                        help="with --base: allow --out to be --base")
    _add_quantizer_options(parser)


def _item_side(args: argparse.Namespace) -> int:
    if (args.data_dir is None) == (args.base is None):
        raise ConfigError("pass --data-dir (the candidate item sides) or --base (one table)",
                          option="--data-dir")
    if args.data_dir is not None:
        if args.add or args.codes_of or args.out:
            raise ConfigError("--add, --codes-of and --out go with --base", option="--data-dir")
        made = build_candidates(args.data_dir / DATASET_DIR, names=args.candidates,
                                task1=args.task1, content=args.content,
                                quantizer=_quantizer(args), force=args.force)
        for name, path in made.items():
            print(f"{name:<12} {path}")
        return 0
    if args.out is None:
        raise ConfigError("--base needs --out", option="--out")
    if args.candidates or args.task1 or args.content:
        raise ConfigError("--candidates, --task1 and --content go with --data-dir",
                          option="--base")
    spec = ItemSideSpec(base=args.base, out=args.out,
                        add=tuple(VectorSource.parse(a) for a in args.add),
                        codes_of=args.codes_of, quantizer=_quantizer(args), prefix=args.prefix,
                        overwrite_input=args.overwrite_input)
    _log_result(build_item_side(spec, force=args.force))
    return 0


ITEM_SIDE = Command("item tables from parts: the candidate item sides of a data folder, or one "
                    "table joining vectors and codes.", _item_side_arguments, _item_side)
