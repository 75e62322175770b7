"""``mmctr make-sample`` and ``mmctr validate``: a MicroLens-shaped sample, and a data folder
checked against the schema::

    mmctr make-sample --out data/sample --preset default [--variant dynamic] [--seed N]
    mmctr make-sample --out data/partial --preset longtail --world partial
    mmctr validate data/sample/MicroLens_1M_x1
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Optional, Union

from ..data.dynamics import Dynamics
from ..data.sample import PRESETS, VARIANTS, WORLDS, ItemView, make_sample
from ..data.schema import validate_data_dir
from ..errors import ConfigError
from .options import Command

logger = logging.getLogger(__name__)


def _add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data/sample", help="sample root (default data/sample)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="sample size (default: default)")
    parser.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    parser.add_argument("--variant", default="static", choices=list(VARIANTS),
                        help="static: a fixed taste match (today's sample); dynamic: clicks "
                             "depend on the order of the history (default static)")
    for name in Dynamics.knob_names():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                            metavar="S", help=f"dynamic variant: strength of {name} "
                                              "(0 = off, default 1)")
    parser.add_argument("--world", default=None, choices=list(WORLDS),
                        help="how much of what drives clicks the item content (and so the "
                             "given item_emb_d128) shows: good, partial, or classic (the "
                             "default: today's sample)")
    for name, what in (("content_share", "weight of the content part of the taste match, "
                                         "0..1"),
                       ("content_noise", "noise of the content features, >= 0"),
                       ("communities", "audiences that only co-watching shows, >= 1"),
                       ("topic_impressions", "share of impressions from the user's "
                                             "categories, any audience, 0..1")):
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, metavar="X",
                            type=int if name == "communities" else float,
                            help=f"item view: {what} (overrides --world's)")
    parser.add_argument("--no-images", action="store_true", help="skip item_images/*.jpg")
    parser.add_argument("--no-item-vectors", action="store_true",
                        help="leave txt_emb_BERT / img_emb_CLIPRN50 out of item_feature")
    parser.add_argument("--force", action="store_true",
                        help="regenerate even if a complete sample is there")


def _knobs_from_args(args: argparse.Namespace) -> Optional[Dynamics]:
    given = {name: getattr(args, name) for name in Dynamics.knob_names()
             if getattr(args, name, None) is not None}
    if not given:
        return None
    if getattr(args, "variant", "static") != "dynamic":
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise ConfigError(f"{flags} apply to --variant dynamic only", option="--variant")
    return Dynamics(**given)


def _world_from_args(args: argparse.Namespace) -> Union[str, ItemView, None]:
    """The named world, or an :class:`ItemView` when knobs override it."""
    names = [f.name for f in dataclasses.fields(ItemView)]
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    world = getattr(args, "world", None)
    if not given:
        return world
    if world == "classic":
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise ConfigError(f"{flags} describe an item view; --world classic has none",
                          option="--world")
    return dataclasses.replace(WORLDS[world] if world else ItemView(), **given)


def _run_sample(args: argparse.Namespace) -> int:
    info = make_sample(args.out, preset=args.preset, seed=args.seed,
                       images=not args.no_images, force=args.force,
                       item_vectors=not getattr(args, "no_item_vectors", False),
                       variant=getattr(args, "variant", "static"),
                       dynamics_knobs=_knobs_from_args(args), world=_world_from_args(args))
    state = "written" if info.created else "already present"
    oracle = info.oracle.get("valid", {})
    world = info.world.get("name", "classic")
    print(f"Sample {state}: {info.data_dir} ({info.variant} variant, {world} world, "
          f"preset {info.preset}, "
          f"seed {info.seed}; train {info.counts['train']}, valid {info.counts['valid']}, "
          f"test {info.counts['test']} rows; {info.counts['items']} items; "
          f"{info.counts['images']} images; train positives {info.positive_rate:.3f}; "
          f"oracle valid AUC {oracle.get('AUC', float('nan')):.4f})")
    return 0


def _add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="folder holding train/valid/test/item_info.parquet")


def _run_validate(args: argparse.Namespace) -> int:
    counts = validate_data_dir(args.data_dir)
    logger.info("OK: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


MAKE_SAMPLE = Command("Write a MicroLens-shaped sample dataset.", _add_sample_arguments,
                      _run_sample)
VALIDATE = Command("Check a MicroLens data directory against the schema.",
                   _add_validate_arguments, _run_validate)
