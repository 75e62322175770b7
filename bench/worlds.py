"""Does the item side matter? DIN on the given embedding against DIN on Task 1's, per world.

    python bench/worlds.py [--worlds partial good] [--seeds 1 2] [--preset longtail]
                           [--variant static] [--data-root data/worlds] [--threads 1]
                           [--out bench/results/worlds.json] [--report]

For each world and data seed it makes the sample (``mmctr make-sample --preset longtail --world
W --seed S``: its manifest holds the oracle, the AUC of the true click probability on valid),
builds Task 1's item_info on it (``mmctr build-embeddings --data-dir DIR --tiny-clip``: Word2Vec
teacher on item_seq, a tiny random CLIP student on the covers and titles, projector, gate;
written beside the given item_info as ``item_info_task1.parquet``), and trains DIN with the
``DIN_sample`` settings at the official budget (3 epochs, batch 256) twice: on the given
``item_emb_d128`` (the ``DIN_sample`` expid, column route) and on Task 1's (``DIN_sample_task1``:
the same, with the dataset's ``item_info`` pointed at Task 1's file). Configs are prepared by
``bench/models.py`` (:func:`models.bench_config`), runs by :func:`models.run_one`. Samples and
Task-1 files are kept under ``--data-root`` and reused; finished runs found in ``--out`` are
not rerun. Run from the repository root.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/models.py, run as a script

import models as bench_models  # noqa: E402  (after the path)

from fuxictr_mmctr.data.sample import make_sample  # noqa: E402
from fuxictr_mmctr.embeddings.pipeline import BuildConfig, build_embeddings  # noqa: E402

logger = logging.getLogger("bench.worlds")
ROOT = Path(__file__).resolve().parents[1]
SIDES = {"given": "DIN_sample", "task1": "DIN_sample_task1"}
DATASET = "MicroLens_sample"


def ensure_world(data_root: Path, preset: str, variant: str, world: str, seed: int):
    """The sample of ``world``/``seed`` and the path of its Task-1 item_info (both made once,
    then reused)."""
    info = make_sample(data_root / f"{world}_s{seed}", preset=preset, seed=seed,
                       variant=variant, world=world, images=True, item_vectors=False)
    cfg = BuildConfig(data_dir=info.out_dir, tiny_clip=True).resolved()
    if not Path(cfg.out).exists():
        result = build_embeddings(cfg)
        if not result.complete:
            raise RuntimeError(f"build-embeddings on {info.out_dir} did not complete")
    return info, Path(cfg.out)


def task1_config(config_dir: Path, item_info: Path) -> None:
    """Add the dataset ``MicroLens_sample_task1`` (``MicroLens_sample`` reading ``item_info``)
    and the expid ``DIN_sample_task1`` (``DIN_sample`` on it) to a prepared config dir."""
    data_cfg = config_dir / "dataset_config.yaml"
    datasets = yaml.safe_load(data_cfg.read_text())
    datasets[f"{DATASET}_task1"] = dict(datasets[DATASET], item_info=str(item_info))
    data_cfg.write_text(yaml.safe_dump(datasets, sort_keys=False))
    din = config_dir / "model_config" / "DIN.yaml"
    models = yaml.safe_load(din.read_text())
    models[SIDES["task1"]] = dict(models[SIDES["given"]], dataset_id=f"{DATASET}_task1")
    din.write_text(yaml.safe_dump(models, sort_keys=False))


def summarise(rows, worlds, seeds) -> str:
    """Markdown: one line per world and seed (and the mean over seeds), both item sides."""
    by = {(r["world"], r["seed"], r["side"]): r for r in rows}
    lines = ["| world | seed | oracle | DIN, given `item_emb_d128` | AUC/oracle "
             "| DIN, Task-1 `item_info` | AUC/oracle | Task 1 - given |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for world in worlds:
        means = defaultdict(list)
        for seed in seeds:
            given, task1 = by.get((world, seed, "given")), by.get((world, seed, "task1"))
            if given is None and task1 is None:
                continue
            ref = given or task1
            cells = []
            for r in (given, task1):
                cells += ([f"{r['auc']:.4f}", f"{r['auc'] / r['oracle_auc']:.3f}"] if r
                          else ["", ""])
            gap = f"{task1['auc'] - given['auc']:+.4f}" if given and task1 else ""
            lines.append(f"| {world} | {seed} | {ref['oracle_auc']:.4f} | "
                         + " | ".join(cells) + f" | {gap} |")
            means["oracle"].append(ref["oracle_auc"])
            for name, r in (("given", given), ("task1", task1)):
                if r:
                    means[name].append(r["auc"])
                    means[name + "_ratio"].append(r["auc"] / r["oracle_auc"])
        if len(means["oracle"]) > 1 and means["given"] and means["task1"]:
            lines.append(f"| {world} | mean | {np.mean(means['oracle']):.4f} | "
                         f"{np.mean(means['given']):.4f} | {np.mean(means['given_ratio']):.3f} | "
                         f"{np.mean(means['task1']):.4f} | {np.mean(means['task1_ratio']):.3f} | "
                         f"{np.mean(means['task1']) - np.mean(means['given']):+.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "mmctr_config"))
    parser.add_argument("--worlds", nargs="+", default=["partial", "good"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES))
    parser.add_argument("--preset", default="longtail")
    parser.add_argument("--variant", default="static")
    parser.add_argument("--data-root", default="data/worlds")
    parser.add_argument("--work-dir", default=None, help="configs and checkpoints (default: tmp)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default="bench/results/worlds.json",
                        help="rows as JSON; finished runs found there are skipped")
    parser.add_argument("--report", action="store_true",
                        help="print the table of the rows in --out without running anything")
    args = parser.parse_args(argv)
    out, saved, rows = bench_models.start(args.threads, args.out)
    done = {(r["world"], r["seed"], r["side"]) for r in rows}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_worlds_"))
    for world in ([] if args.report else args.worlds):
        for seed in args.seeds:
            sides = [s for s in args.sides if (world, seed, s) not in done]
            if not sides:
                continue
            info, task1 = ensure_world(Path(args.data_root).resolve(), args.preset,
                                       args.variant, world, seed)
            tag = f"{world}_s{seed}"
            config_dir = bench_models.bench_config(
                Path(args.config), work / tag / "config", info.out_dir.resolve(),
                work / tag / "checkpoints", bench_models.BUDGETS["fixed"], {SIDES["given"]})
            task1_config(config_dir, task1.resolve())
            for side in sides:
                logger.info("== %s seed %d: DIN on the %s item side", world, seed, side)
                row = dict(world=world, seed=seed, side=side, expid=SIDES[side],
                           preset=args.preset, variant=args.variant, world_knobs=info.world,
                           item_exposure=info.item_exposure,
                           oracle_auc=info.oracle["valid"]["AUC"],
                           **bench_models.run_one(config_dir, SIDES[side]))
                rows.append(row)
                logger.info("%s", row)
                bench_models.save_rows(out, rows)
    print(f"\nMachine: {saved.get('machine') if args.report else bench_models.machine()}")
    print(f"Samples: preset {args.preset}, variant {args.variant}; DIN_sample at 3 epochs, "
          "batch 256; oracle = AUC of the true click probability on valid")
    print(summarise(rows, args.worlds, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
