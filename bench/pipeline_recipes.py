"""Which pipeline recipe (models x item sides)? Compare them offline from the trainings that
``bench/pipeline.py`` left in its work root.

    python bench/pipeline.py --worlds partial good --seeds 1 2 --models DIN DCNv2 DIN_DCN \
        --item-sides content_codes task1_codes content_task1_codes both_codes  # every model once
    python bench/pipeline_recipes.py --runs partial_s1 partial_s2 good_s1 good_s2 \
        [--work-root bench/work/pipeline] [--data-root data/worlds] [--out FILE.json]

For each recipe (a subset of the models and item sides that were trained) and each world/seed
it does what ``mmctr pipeline`` would have done with that recipe: greedy ensemble selection on
the valid split (:func:`fuxictr_mmctr.submit.blend.select_members`, rank blend, the pipeline's
defaults), then scores the blend on the sample's hidden test labels. Predictions come from the
pipeline's cache, so nothing is trained. Prints each recipe's test AUC per run and the mean
AUC/oracle; the rule for a default is the best mean, and within 0.001 of it the recipe with
fewer trainings. A recipe whose trainings a run lacks is left out. Defaults are picked on data
seeds 1-2 and reported on 3-4 (``bench/pipeline.py``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fuxictr_mmctr.data.sample_files import read_truth  # noqa: E402  (after the path)
from fuxictr_mmctr.data.sample_store import sample_oracle  # noqa: E402
from fuxictr_mmctr.data.schema import DATASET_DIR  # noqa: E402
from fuxictr_mmctr.io import write_json  # noqa: E402
from fuxictr_mmctr.pipeline.configs import expid_for  # noqa: E402
from fuxictr_mmctr.pipeline.stages import Stages  # noqa: E402
from fuxictr_mmctr.submit.blend import blend_predictions, read_labels, select_members  # noqa: E402
from fuxictr_mmctr.submit.metrics import auc  # noqa: E402
from fuxictr_mmctr.train.blend import experiment_predictions  # noqa: E402

THREE = ("DIN", "DCNv2", "DIN_DCN")
# name -> (models, item sides)
RECIPES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "3 models x given_codes, task1_codes": (THREE, ("given_codes", "task1_codes")),
    "3 models x content_codes, task1_codes": (THREE, ("content_codes", "task1_codes")),
    "3 models x given_codes, task1_codes, content_codes":
        (THREE, ("given_codes", "task1_codes", "content_codes")),
    "DCNv2, DIN_DCN x given_codes, task1_codes": (("DCNv2", "DIN_DCN"),
                                                  ("given_codes", "task1_codes")),
    "DCNv2, DIN_DCN x content_codes, task1_codes": (("DCNv2", "DIN_DCN"),
                                                    ("content_codes", "task1_codes")),
    "DCNv2, DIN_DCN x given_codes, task1_codes, content_codes":
        (("DCNv2", "DIN_DCN"), ("given_codes", "task1_codes", "content_codes")),
    # one model on both vectors (content_task1_codes: the content vector and Task 1's, with
    # the codes of Task 1's), alone and beside the one-vector sides
    "3 models x content_task1_codes": (THREE, ("content_task1_codes",)),
    "3 models x content_task1_codes, task1_codes": (THREE, ("content_task1_codes", "task1_codes")),
    "3 models x content_task1_codes, content_codes":
        (THREE, ("content_task1_codes", "content_codes")),
    "3 models x content_codes, task1_codes, content_task1_codes":
        (THREE, ("content_codes", "task1_codes", "content_task1_codes")),
    "3 models x both_codes, task1_codes": (THREE, ("both_codes", "task1_codes")),
    "3 models x content_codes, task1_codes, both_codes":
        (THREE, ("content_codes", "task1_codes", "both_codes")),
    "DCNv2, DIN_DCN x content_codes, task1_codes, content_task1_codes":
        (("DCNv2", "DIN_DCN"), ("content_codes", "task1_codes", "content_task1_codes")),
    "DCNv2, DIN_DCN x content_codes, task1_codes, both_codes":
        (("DCNv2", "DIN_DCN"), ("content_codes", "task1_codes", "both_codes")),
}


def done_trainings(config_dir: Path) -> set:
    """The expids of a pipeline work dir that were trained (a stage record) and that its last
    run's config still holds (a rerun with fewer ``--models`` rewrites the config, not the
    records of the others)."""
    stages = Stages(config_dir.parent)
    in_config = {expid for path in (config_dir / "model_config").glob("*.yaml")
                 for expid in yaml.safe_load(path.read_text()) or {}}
    return {e for e in in_config if stages.load(f"train:{e}") is not None}


def score_recipes(config_dir: Path, data_dir: Path) -> Dict[str, float]:
    """Hidden-test AUC of each recipe's valid-chosen blend on one world/seed (plus ``oracle``)."""
    y_valid = read_labels(data_dir / DATASET_DIR / "valid.parquet")
    _, y_test = read_truth(data_dir, "test")
    row = {"oracle": float(sample_oracle(data_dir)["test"]["AUC"])}
    trained = done_trainings(config_dir)
    for name, (models, sides) in RECIPES.items():
        expids = [expid_for(m, s) for s in sides for m in models]
        if not trained.issuperset(expids):
            continue  # a recipe whose trainings this run did not do
        preds = [experiment_predictions(config_dir, e) for e in expids]
        weights = select_members([p["valid"] for p in preds], y_valid, method="rank",
                                 max_rounds=10)
        members = [(p["test"], w) for p, w in zip(preds, weights) if w > 0]
        test = blend_predictions([p for p, _ in members], method="rank",
                                 weights=[w for _, w in members])
        row[name] = auc(y_test.astype(np.float64), test)
    return row


def table(rows: Dict[str, Dict[str, float]], runs: Sequence[str]) -> str:
    lines = ["| recipe | trainings | " + " | ".join(runs) + " | mean AUC/oracle |",
             "| --- | --- | " + " | ".join("---" for _ in runs) + " | --- |"]
    for name, (models, sides) in RECIPES.items():
        if not all(name in rows[r] for r in runs):
            continue
        ratio = np.mean([rows[r][name] / rows[r]["oracle"] for r in runs])
        lines.append(f"| {name} | {len(models) * len(sides)} | "
                     + " | ".join(f"{rows[r][name]:.4f}" for r in runs) + f" | {ratio:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="<world>_s<seed> folders")
    parser.add_argument("--work-root", default="bench/work/pipeline")
    parser.add_argument("--data-root", default="data/worlds")
    parser.add_argument("--out", help="write the rows as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = {run: score_recipes(Path(args.work_root) / run / "pipeline" / "config",
                               Path(args.data_root) / run) for run in args.runs}
    if args.out:
        write_json(Path(args.out), {"recipes": {k: list(map(list, v))
                                                for k, v in RECIPES.items()}, "rows": rows})
    print("Hidden test AUC of the blend each recipe would have chosen on valid")
    print(table(rows, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
