"""Does ``mmctr pipeline`` beat every single model, on the worlds where the item side matters?

    python bench/pipeline.py [--worlds partial good] [--seeds 3 4] [--preset longtail]
                             [--models DIN DCNv2 DIN_DCN] [--item-sides given_codes task1_codes]
                             [--epochs 3] [--batch-size 256] [--threads 1]
                             [--data-root data/worlds] [--work-root bench/work/pipeline]
                             [--out bench/results/pipeline.json] [--report]

For each world and data seed it makes the sample (``mmctr make-sample --preset longtail --world
W --seed S``; its manifest holds the oracle) and runs the pipeline twice at the official budget
(3 epochs, batch 256), Task 1 on a tiny random CLIP:

* **the pipeline** (``--models`` on each of ``--item-sides``; default: the pipeline's own
  defaults), which blends across models and item sides on the valid split;
* **the reference**: the same models on the given ``item_emb_d128`` alone (``--item-sides
  given``), what a user without Task 1 and semantic IDs trains.

Every model of both is then scored on the sample's hidden test labels (``truth/test.parquet``),
so the blend (chosen on valid) is compared on rows it never saw with the best single model on
any item side *picked with hindsight on test* (the strict reading of "at least the best single
model") and with the best single model on the given embedding. Defaults of the pipeline are
chosen on data seeds 1-2 (README "Item sides"); this bench reports held-out seeds 3-4.

Work dirs (under ``--work-root``) are the pipeline's own, so a killed bench resumes where it
stopped, and a finished world/seed found in ``--out`` is not rerun. Run from the repository
root.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/models.py, run as a script

import models as bench_models  # noqa: E402  (after the path)

from fuxictr_mmctr.data.sample import make_sample  # noqa: E402
from fuxictr_mmctr.data.sample_files import read_truth  # noqa: E402
from fuxictr_mmctr.pipeline.run import (DEFAULT_MODELS, DEFAULT_SIDES,  # noqa: E402
                                        PipelineConfig, run_pipeline)
from fuxictr_mmctr.submit.metrics import auc  # noqa: E402
from fuxictr_mmctr.train.blend import experiment_predictions  # noqa: E402

logger = logging.getLogger("bench.pipeline")


def test_aucs(report: dict, labels: np.ndarray) -> dict:
    """Hidden-test AUC of every model of a pipeline's report (predictions cached)."""
    config_dir = Path(report["work_dir"]) / "config"
    return {expid: auc(labels, experiment_predictions(config_dir, expid, splits=("test",))["test"])
            for expid in report["models"]}


def one_world(args, world: str, seed: int) -> dict:
    info = make_sample(Path(args.data_root).resolve() / f"{world}_s{seed}", preset=args.preset,
                       seed=seed, variant=args.variant, world=world, images=True,
                       item_vectors=True)
    work = Path(args.work_root).resolve() / f"{world}_s{seed}"
    common = dict(data_dir=info.out_dir, models=tuple(args.models), epochs=args.epochs,
                  batch_size=args.batch_size, tiny_clip=True, settings="sample")
    logger.info("== %s seed %d: the pipeline (%s on %s)", world, seed, args.models,
                args.item_sides)
    pipe = run_pipeline(PipelineConfig(work_dir=work / "pipeline",
                                       item_sides=tuple(args.item_sides), **common)).report
    logger.info("== %s seed %d: the reference (%s on the given embedding)", world, seed,
                args.models)
    ref = run_pipeline(PipelineConfig(work_dir=work / "given", item_sides=("given",),
                                      **common)).report
    _, labels = read_truth(info.out_dir, "test")
    labels = labels.astype(np.float64)
    singles = {**test_aucs(ref, labels), **test_aucs(pipe, labels)}
    valid = {**{e: r["valid"]["AUC"] for e, r in ref["models"].items()},
             **{e: r["valid"]["AUC"] for e, r in pipe["models"].items()}}
    given = [e for e in singles if e.endswith("__given")]
    picked = max(valid, key=valid.get)   # the single model a user would pick on valid
    return dict(
        world=world, seed=seed, preset=args.preset, variant=args.variant,
        models=list(args.models), item_sides=list(args.item_sides),
        epochs=args.epochs, batch_size=args.batch_size,
        oracle_valid=info.oracle["valid"]["AUC"], oracle_test=info.oracle["test"]["AUC"],
        pipeline_test=pipe["hidden_test"]["AUC"], pipeline_valid=pipe["blend"]["valid"]["AUC"],
        members=pipe["blend"]["members"], singles_test=singles, singles_valid=valid,
        best_single=max(singles, key=singles.get), best_given=max(given, key=singles.get),
        picked_on_valid=picked,
        seconds=dict(pipeline=pipe["seconds"], reference=ref["seconds"]))


def summarise(rows) -> str:
    """Markdown: per world and seed, the pipeline against the single models (hidden test AUC)."""
    lines = ["| world | seed | oracle (test) | best on given | best single, any side (hindsight) "
             "| single picked on valid | **pipeline** | pipeline / oracle | - best on given "
             "| - best single | blend members |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s = r["singles_test"]
        given, best, picked = s[r["best_given"]], s[r["best_single"]], s[r["picked_on_valid"]]
        p = r["pipeline_test"]
        members = ", ".join(f"{e} {w:.2f}" for e, w in r["members"].items())
        lines.append(
            f"| {r['world']} | {r['seed']} | {r['oracle_test']:.4f} | {given:.4f} "
            f"({r['best_given'].split('__')[0]}) | {best:.4f} ({r['best_single']}) | "
            f"{picked:.4f} ({r['picked_on_valid']}) | **{p:.4f}** | {p / r['oracle_test']:.3f} | "
            f"{p - given:+.4f} | {p - best:+.4f} | {members} |")
    return "\n".join(lines)


def singles_table(rows) -> str:
    """Markdown: every single model's hidden test AUC per world and seed."""
    expids = sorted({e for r in rows for e in r["singles_test"]},
                    key=lambda e: (e.split("__")[1], e.split("__")[0]))
    lines = ["| model | item side | " + " | ".join(f"{r['world']} s{r['seed']}" for r in rows)
             + " |", "| --- | --- | " + " | ".join("---" for _ in rows) + " |"]
    for e in expids:
        model, side = e.split("__")
        cells = [f"{r['singles_test'][e]:.4f}" if e in r["singles_test"] else "" for r in rows]
        lines.append(f"| {model} | `{side}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", nargs="+", default=["partial", "good"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--preset", default="longtail")
    parser.add_argument("--variant", default="static")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--item-sides", nargs="+", default=list(DEFAULT_SIDES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-root", default="data/worlds")
    parser.add_argument("--work-root", default="bench/work/pipeline")
    parser.add_argument("--out", default="bench/results/pipeline.json",
                        help="rows as JSON; a world/seed with the same recipe there is skipped")
    parser.add_argument("--report", action="store_true",
                        help="print the tables of the rows in --out without running anything")
    args = parser.parse_args(argv)
    out, saved, rows = bench_models.start(args.threads, args.out)

    def recipe(r):
        return (r["world"], r["seed"], tuple(r["models"]), tuple(r["item_sides"]),
                r["epochs"], r["batch_size"])
    for world in ([] if args.report else args.worlds):
        for seed in args.seeds:
            want = (world, seed, tuple(args.models), tuple(args.item_sides), args.epochs,
                    args.batch_size)
            if any(recipe(r) == want for r in rows):
                continue
            rows.append(one_world(args, world, seed))
            bench_models.save_rows(out, rows)
    print(f"\nMachine: {saved.get('machine') if args.report else bench_models.machine()}")
    print(f"Samples: preset {args.preset}, variant {args.variant}; each model's _sample "
          f"settings at {args.epochs} epochs, batch {args.batch_size}; hidden test labels")
    print(summarise(rows))
    print()
    print(singles_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
