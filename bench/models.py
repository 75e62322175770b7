"""Every model against the oracle: valid AUC as a fraction of the true click probability's AUC.

    python bench/models.py [--variants static dynamic] [--seeds 1 2] [--budgets fixed full]
                           [--models DIN DCNv2 ...] [--routes column pretrained]
                           [--preset bench] [--data-root data/bench] [--out bench_models.json]

For each variant and seed a sample is generated (``mmctr make-sample --preset bench --variant V
--seed S``, kept under ``--data-root`` and reused), whose manifest holds the oracle: the AUC of
the true click probability on the valid split. Each model trains its ``<Model>_sample`` expid
(column route: ``item_emb_d128`` as a ``type: embedding`` column) and ``<Model>_sample_pretrained``
(pretrained route: the frozen table on ``item_id``) through
:func:`fuxictr_mmctr.train.experiment.train` on a copy of ``config/`` pointed at that sample,
at two budgets:

* ``fixed``: the official baseline's, 3 epochs of batch 256 (best checkpoint of the three);
* ``full``: batch 256, up to ``--full-epochs`` epochs with FuxiCTR's early stopping.

The reference row ``DIN_official`` is DIN with the official baseline's settings (the
``DIN_default`` expid: embedding 64, DNN [1024, 512, 256], attention [512, 256], max_len 64,
batch norm) on the same sample and budget.

Per run: valid AUC and logloss of the best checkpoint, oracle valid AUC, AUC / oracle, train
samples/s (train rows x epochs run / wall time of the whole run, evaluation included), trainable
parameters. The table aggregates seeds: mean and spread (half the max-min range, so with two
seeds ``mean +- spread`` covers both). Runs already in ``--out`` are not rerun (resume).
Run from the repository root.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Optional, Tuple
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml

from fuxictr_mmctr.resources import point_at_sample
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.models import MODELS
from fuxictr_mmctr.train.report import runs_from_records, runs_page
from fuxictr_mmctr.train.report_page import write_page

logger = logging.getLogger("bench.models")
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "DIN_official"
BUDGETS = {"fixed": dict(epochs=3, batch_size=256), "full": dict(batch_size=256)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def ensure_sample(data_root: Path, preset: str, variant: str, seed: int, world=None):
    """The sample of ``variant``/``seed`` (and item view ``world``; generated once, then
    reused) and its info."""
    from fuxictr_mmctr.data.sample import make_sample

    return make_sample(data_root / f"{variant}_s{seed}", preset=preset, seed=seed,
                       variant=variant, images=False, item_vectors=False, world=world)


def start(threads, out) -> Tuple[Path, dict, list]:
    """What a bench script does first: INFO logging (gensim quiet), ``threads`` torch threads
    (None or 0: torch's own), and ``(out, saved, rows)``: the file :func:`save_rows` wrote
    there before (``{}`` and ``[]`` when there is none)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    return out, saved, saved.get("rows", [])


def save_rows(out: Path, rows) -> None:
    """Write ``{"machine": ..., "rows": rows}`` to ``out`` (JSON), replacing it atomically;
    any other key the file held (earlier runs kept beside the rows, a note) is kept."""
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(out.read_text()) if out.exists() else {}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({**kept, "machine": machine(), "rows": rows}, indent=1))
    os.replace(tmp, out)


def _expid_name(model: str, route: str) -> str:
    """The expid of a row: ``<Model>_sample[_pretrained]``, ``DIN_official[_pretrained]``, or
    any other expid of the config given as is (column route only)."""
    if model == REFERENCE:
        return REFERENCE if route == "column" else f"{REFERENCE}_pretrained"
    if model not in MODELS:
        return model
    return f"{model}_sample" if route == "column" else f"{model}_sample_pretrained"


def bench_config(src: Path, dst: Path, sample_root: Path, model_root: Path, budget: dict,
                 expids, normalize_vectors: Optional[str] = None) -> Path:
    """A copy of config dir ``src`` whose sample datasets read ``sample_root``, whose checkpoints
    go to ``model_root``, and whose ``expids`` train on the budget's epochs and batch size.

    ``DIN_official`` (and ``_pretrained``) are added: ``DIN_default``'s settings on the sample,
    reading the given vectors as the official code does (``MicroLens_sample_official``: no
    ``normalize_vectors``). ``normalize_vectors`` sets that key on every dense item vector of
    the sample's other datasets (default: as shipped).
    """
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    point_at_sample(dst, sample_root)
    datasets_file = dst / "dataset_config.yaml"
    datasets = yaml.safe_load(datasets_file.read_text())
    for name in ("MicroLens_sample", "MicroLens_sample_pretrained"):
        datasets[f"{name}_official"] = _with_vector_norm(datasets[name], None)
        if normalize_vectors is not None:
            datasets[name] = _with_vector_norm(datasets[name], normalize_vectors)
    datasets_file.write_text(yaml.safe_dump(datasets, sort_keys=False))
    base = dst / "model_config" / "Base.yaml"
    base_cfg = yaml.safe_load(base.read_text())
    base_cfg["Base"]["model_root"] = str(model_root) + "/"
    base.write_text(yaml.safe_dump(base_cfg, sort_keys=False))
    din = dst / "model_config" / "DIN.yaml"
    din_cfg = yaml.safe_load(din.read_text())
    official = dict(din_cfg["DIN_default"])
    din_cfg[REFERENCE] = dict(official, dataset_id="MicroLens_sample_official")
    din_cfg[f"{REFERENCE}_pretrained"] = dict(official,
                                             dataset_id="MicroLens_sample_pretrained_official")
    din.write_text(yaml.safe_dump(din_cfg, sort_keys=False))
    for path in (dst / "model_config").glob("*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        changed = False
        for expid in cfg:
            if expid in expids:
                cfg[expid].update(budget)
                changed = True
        if changed:
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def _with_vector_norm(dataset: dict, mode: Optional[str]) -> dict:
    """``dataset`` with ``normalize_vectors: mode`` on each dense item vector (its item
    embedding column, or the pretrained table of ``item_id``); None removes the key."""
    dataset = copy.deepcopy(dataset)
    for feature in dataset["feature_cols"]:
        if feature.get("type") == "embedding" or "pretrained_emb" in feature:
            feature.pop("normalize_vectors", None)
            if mode is not None:
                feature["normalize_vectors"] = mode
    return dataset


def count_parameters(config_dir: Path, expid: str) -> int:
    params = experiment.load_params(config_dir, expid)
    params["verbose"] = 0
    model = experiment.build_model(experiment.load_feature_map(params), params)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_rows(config_dir: Path, expid: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(experiment.load_params(config_dir, expid)["train_data"]).metadata.num_rows


def epochs_run(checkpoint: Path) -> int:
    """Epochs ``fit`` ran (early stopping may end it early), read from FuxiCTR's log (beside
    the checkpoint, ``<expid>.log``)."""
    log = Path(checkpoint).with_suffix(".log")
    text = log.read_text() if log.exists() else ""
    return max(1, text.count("Train loss:") or text.count("Epoch=") - 1)


def run_one(config_dir: Path, expid: str) -> dict:
    start = time.perf_counter()
    result = experiment.train(config_dir, expid)
    wall = time.perf_counter() - start
    n_epochs = epochs_run(result.checkpoint)
    return dict(auc=result.valid_metrics["AUC"], logloss=result.valid_metrics["logloss"],
                epochs=n_epochs, seconds=round(wall, 1),
                samples_per_s=train_rows(config_dir, expid) * n_epochs / wall,
                parameters=count_parameters(config_dir, expid))


def _spread(values) -> float:
    return (max(values) - min(values)) / 2.0 if len(values) > 1 else 0.0


def summarise(rows, budgets, variants):
    """Markdown tables (one per budget): per model and route, each variant's mean +- spread."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["budget"], r["model"], r["route"], r["variant"])].append(r)
    lines = []
    for budget in budgets:
        desc = ("3 epochs, batch 256" if budget == "fixed"
                else "batch 256, early stopping")
        lines += ["", f"Budget `{budget}` ({desc}); mean +- spread over seeds "
                      f"{sorted({r['seed'] for r in rows})}", ""]
        head = "| model | route |"
        sep = "| --- | --- |"
        for v in variants:
            head += f" {v} AUC | {v} oracle | {v} AUC/oracle |"
            sep += " --- | --- | --- |"
        head += " train samples/s | parameters |"
        sep += " --- | --- |"
        lines += [head, sep]
        keys = sorted({(m, rt) for (b, m, rt, _v) in groups if b == budget},
                      key=lambda k: (k[0] != REFERENCE, k[0], k[1]))
        for model, route in keys:
            line = f"| {model} | {route} |"
            speeds, params = [], []
            for v in variants:
                runs = groups.get((budget, model, route, v), [])
                if not runs:
                    line += " | | |"
                    continue
                aucs = [r["auc"] for r in runs]
                oracles = [r["oracle_auc"] for r in runs]
                ratios = [r["auc"] / r["oracle_auc"] for r in runs]
                line += (f" {np.mean(aucs):.4f} +- {_spread(aucs):.4f} | "
                         f"{np.mean(oracles):.4f} | {np.mean(ratios):.3f} +- "
                         f"{_spread(ratios):.3f} |")
                speeds += [r["samples_per_s"] for r in runs]
                params += [r["parameters"] for r in runs]
            line += f" {np.mean(speeds):,.0f} | {int(np.median(params)):,} |"
            lines.append(line)
    return "\n".join(lines)


def _mean_by(rows, *keys):
    """{key tuple: mean AUC} over the seeds of ``rows``."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r["auc"])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def checks(rows, budget: str = "fixed", variant: str = "dynamic",
           other: str = "static", tolerance: float = 0.01, pretrained_gap: float = 0.005):
    """The issue's acceptance checks on ``rows`` (one budget), as lines of text.

    * every column-route model beats ``DIN_official`` on ``variant`` on every seed;
    * the best model's mean AUC / oracle on ``variant``;
    * the pretrained route against the column route of the same model (mean AUC gap);
    * ranking stability: a model's AUC gap to the best model on ``variant`` minus its gap on
      ``other``; more than ``tolerance`` is flagged.
    """
    rows = [r for r in rows if r["budget"] == budget]
    lines = []
    on = [r for r in rows if r["variant"] == variant]
    ref = {r["seed"]: r["auc"] for r in on if r["model"] == REFERENCE and r["route"] == "column"}
    column = sorted({r["model"] for r in on if r["route"] == "column" and r["model"] in MODELS})
    for model in column:
        runs = {r["seed"]: r["auc"] for r in on if r["model"] == model and r["route"] == "column"}
        seeds = sorted(set(runs) & set(ref))
        if not seeds:
            continue
        margins = [runs[s] - ref[s] for s in seeds]
        verdict = "beats" if min(margins) > 0 else "does NOT beat"
        lines.append(f"{variant}: {model} {verdict} {REFERENCE} on seeds {seeds} "
                     f"(AUC margin {', '.join(f'{m:+.4f}' for m in margins)})")
    ratios = defaultdict(list)
    for r in on:
        if r["route"] == "column" and r["model"] in column:
            ratios[r["model"]].append(r["auc"] / r["oracle_auc"])
    if ratios:
        best = max(ratios, key=lambda m: np.mean(ratios[m]))
        lines.append(f"{variant}: best column model {best}, AUC/oracle "
                     f"{np.mean(ratios[best]):.3f} (per seed "
                     f"{', '.join(f'{x:.3f}' for x in ratios[best])})")
    means = _mean_by(rows, "variant", "model", "route")
    for (v, name, route), auc in sorted(means.items()):
        base = name.split("_sample")[0]
        if v == variant and name not in MODELS and name != REFERENCE and base in MODELS \
                and (v, base, "column") in means:
            lines.append(f"{v}: {name} {auc:.4f} vs {base} {means[(v, base, 'column')]:.4f} "
                         f"AUC ({means[(v, base, 'column')] - auc:+.4f} for the fix)")
    for (v, model, route), auc in sorted(means.items()):
        if route == "pretrained" and (v, model, "column") in means:
            gap = auc - means[(v, model, "column")]
            flag = "within" if gap >= -pretrained_gap else "NOT within"
            lines.append(f"{v}: {model} pretrained - column = {gap:+.4f} AUC "
                         f"({flag} {pretrained_gap})")
    gaps = {}
    for v in (other, variant):
        col = {m: a for (vv, m, rt), a in means.items() if vv == v and rt == "column"
               and m in column}
        if col:
            top = max(col.values())
            gaps[v] = {m: top - a for m, a in col.items()}
    if len(gaps) == 2:
        for model in column:
            if model in gaps[other] and model in gaps[variant]:
                change = gaps[variant][model] - gaps[other][model]
                flag = "  <- more than %.2f: explain" % tolerance if change > tolerance else ""
                lines.append(f"ranking: {model} gap to the best {other} {gaps[other][model]:.4f}"
                             f" -> {variant} {gaps[variant][model]:.4f} ({change:+.4f}){flag}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "mmctr_config"))
    parser.add_argument("--models", nargs="+", default=None,
                        help=f"default: {REFERENCE} and every registered model; another expid "
                             "of the config (e.g. TransformerDCN_sample_published_mask_bug) "
                             "adds its row (column route)")
    parser.add_argument("--routes", nargs="+", default=["column", "pretrained"],
                        choices=["column", "pretrained"])
    parser.add_argument("--pretrained-models", nargs="+", default=None,
                        help="models that also run the pretrained route (default: all)")
    parser.add_argument("--variants", nargs="+", default=["static", "dynamic"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--budgets", nargs="+", default=["fixed"], choices=sorted(BUDGETS))
    parser.add_argument("--full-epochs", type=int, default=20,
                        help="epoch cap of the full budget (early stopping ends it sooner)")
    parser.add_argument("--preset", default="bench")
    parser.add_argument("--world", default=None, choices=["classic", "good", "partial"],
                        help="item view of the samples (mmctr make-sample --world); use its own "
                             "--data-root and --out")
    parser.add_argument("--data-root", default="data/bench")
    parser.add_argument("--work-dir", default=None, help="configs and checkpoints (default: tmp)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--normalize-vectors", default=None, choices=["none", "mean_norm", "l2", "standard"],
                        help="the given item vector's normalize_vectors for every model but "
                             "DIN_official (default: as shipped)")
    parser.add_argument("--out", default="bench_models.json",
                        help="rows as JSON; finished runs found there are skipped")
    parser.add_argument("--report", action="store_true",
                        help="print the table of the rows in --out without running anything")
    parser.add_argument("--html", default=None, metavar="FILE",
                        help="also write the rows as an HTML page with plots (mmctr report's)")
    args = parser.parse_args(argv)
    out, saved, rows = start(args.threads, args.out)
    names = args.models or [REFERENCE] + sorted(MODELS, key=lambda n: (n != "DIN", n))
    pre_models = set(args.pretrained_models or [n for n in names
                                                 if n == REFERENCE or n in MODELS])
    done = {(r["budget"], r["variant"], r["seed"], r["model"], r["route"]) for r in rows}
    work = None
    for variant in ([] if args.report else args.variants):
        for seed in args.seeds:
            info = ensure_sample(Path(args.data_root).resolve(), args.preset, variant, seed,
                                 args.world)
            oracle = info.oracle["valid"]
            for budget in args.budgets:
                settings = dict(BUDGETS[budget])
                if budget == "full":
                    settings["epochs"] = args.full_epochs
                jobs = [(m, rt) for m in names for rt in args.routes
                        if rt == "column" or m in pre_models]
                jobs = [j for j in jobs if (budget, variant, seed) + j not in done]
                if not jobs:
                    continue
                # one work folder for the whole run (runs are kept apart by their tag)
                work = work or Path(args.work_dir or tempfile.mkdtemp(prefix="bench_models_"))
                tag = f"{variant}_s{seed}_{budget}"
                config_dir = bench_config(Path(args.config), work / tag / "config",
                                          info.out_dir.resolve(), work / tag / "checkpoints",
                                          settings, {_expid_name(m, rt) for m, rt in jobs},
                                          args.normalize_vectors)
                for model, route in jobs:
                    expid = _expid_name(model, route)
                    logger.info("== %s %s seed %d: %s", budget, variant, seed, expid)
                    row = dict(budget=budget, variant=variant, seed=seed, model=model,
                               route=route, expid=expid, oracle_auc=oracle["AUC"],
                               oracle_logloss=oracle["logloss"], **run_one(config_dir, expid))
                    rows.append(row)
                    logger.info("%s", row)
                    save_rows(out, rows)
    # --report prints the machine the rows were measured on, not this one
    print(f"\nMachine: {saved.get('machine') if args.report else machine()}")
    print(f"Samples: preset {args.preset}, variants {args.variants}, seeds {args.seeds}; "
          "oracle = AUC of the true click probability on valid")
    kept = [r for r in rows if r["variant"] in args.variants and r["seed"] in args.seeds]
    print(summarise(kept, args.budgets, args.variants))
    for budget in args.budgets:
        print(f"\nChecks, budget `{budget}`:")
        for line in checks(kept, budget=budget):
            print("  " + line)
    if args.html:
        runs = runs_from_records(kept, expid=("model", "route", "variant", "seed", "budget"),
                                 metrics={"AUC": "auc", "logloss": "logloss",
                                          "samples/s": "samples_per_s"},
                                 params=("model", "route", "budget"), dataset=("variant", "seed"),
                                 oracle="oracle_auc")
        write_page(runs_page({"every model, variant and seed": runs}, "bench/models.py",
                             saved.get("machine") or machine()), args.html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
