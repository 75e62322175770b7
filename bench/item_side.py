"""The two item-side routes of DIN, side by side on the same data and config.

* column route (``DIN_sample``): the loader gathers item_id, item_tags and the 128-d
  ``item_emb_d128`` column for every history position and ships them (official contract);
* pretrained route (``DIN_sample_pretrained``): the embedding is FuxiCTR's frozen pretrained
  table on the model's device; the loader ships ids only (``item_side: ids``).

Prints the train-step throughput (loader + forward + backward + step, samples/s), the bytes
the loader ships per sample, and the ids-only loader against the official per-batch ``.iloc``
collate (floor: 100x). Run from the repository root:

    python bench/item_side.py [--config config/mmctr_config] [--steps 30] [--batch-size 1024]

With ``--auc``, it compares *candidate item sides* instead (README "Item sides"): valid AUC of
each model trained on each item table of one data folder, on the official baseline's budget
(3 epochs, batch 256), beside the oracle of the folder's manifest::

    python bench/item_side.py --auc --data-dir data/sample [--models DIN DIN_DCN]
        [--sides given given_codes task1 task1_codes both both_codes] [--routes column]
        [--out bench/results/item_side.json] [--report]

The tables of the sides are made first (``mmctr item-side``; Task 1's table must be there:
``mmctr build-embeddings --data-dir DIR --tiny-clip``). Each model trains ``<Model>_sample``
with the side's dataset (``MicroLens_sample_<side>[_pretrained]``, as shipped, or any dataset
of ``--datasets FILE`` merged into the config). Rows are appended to ``--out``; runs found there
are not run again.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.data.loader import MMCTRDataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import IlocCollate, StackedRows  # noqa: E402  (the official-style baseline)
from models import BUDGETS, bench_config, machine, run_one, start  # noqa: E402

from fuxictr_mmctr.data.item_side import CANDIDATES, build_candidates  # noqa: E402


def batch_bytes(batch) -> int:
    batch_dict, item_dict, mask = batch
    tensors = list(batch_dict.values()) + list(item_dict.values()) + [mask]
    return sum(t.numel() * t.element_size() for t in tensors)


def full_batches(loader, batch_size):
    """The loader's batches of ``batch_size`` rows, epoch after epoch (a last, smaller batch is
    skipped: it would time another shape). Nothing is kept: batches may live on a GPU."""
    while True:
        produced = False
        for batch in loader:
            if len(batch[2]) == batch_size:
                produced = True
                yield batch
        if not produced:
            raise ValueError(f"the split has fewer rows than one batch of {batch_size}")


def train_throughput(config_dir, expid, steps, batch_size, max_len=None, warmup=3, gpu=-1,
                     **overrides) -> dict:
    """Train-step throughput of ``expid`` (loader, forward, backward, optimizer step).

    ``warmup`` untimed steps first (a compiled model compiles in the first), then ``steps``
    timed ones; on a GPU the clock stops after a synchronize.

    Args:
        max_len: history length; None keeps the expid's. Default: None.
        gpu: -1 for the CPU, else the CUDA device. Default: -1.
        **overrides: further params (``precision``, ``compile``, ``item_side``, ...).

    Returns:
        ``samples_per_s``, ``bytes_per_sample`` (what the loader ships), ``parameters``
        (trainable), ``first_step_s`` (compilation included), ``peak_gpu_bytes`` (None on the
        CPU), ``params``.
    """
    import torch

    params = experiment.load_params(config_dir, expid, gpu)
    params.update(verbose=0, batch_size=batch_size, **overrides)
    if max_len is not None:
        params["max_len"] = max_len
    feature_map = experiment.build_feature_map(params)
    model = experiment.build_model(feature_map, params)
    train_gen, _ = experiment.make_loaders(params, feature_map, "train")
    cuda = model.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
    model.train()
    model._max_gradient_norm, model._steps_per_epoch = 10.0, 10 ** 9
    batches = full_batches(train_gen, batch_size)
    first = time.perf_counter()
    for model._batch_index in range(warmup):
        model.train_step(next(batches))
        if model._batch_index == 0:
            sync()
            first = time.perf_counter() - first
    sync()
    start, shipped = time.perf_counter(), 0
    for step in range(steps):
        batch = next(batches)
        shipped += batch_bytes(batch)
        model._batch_index = step
        model.train_step(batch)
    sync()
    seconds = time.perf_counter() - start
    batches.close()
    return {"samples_per_s": steps * batch_size / seconds,
            "bytes_per_sample": shipped / (steps * batch_size),
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "first_step_s": first if warmup else None,
            "peak_gpu_bytes": torch.cuda.max_memory_allocated(model.device) if cuda else None,
            "params": params}


def loader_rate(loader, n_batches, batch_size):
    start = time.perf_counter()
    for i, _ in enumerate(loader):
        if i + 1 == n_batches:
            break
    return n_batches * batch_size / (time.perf_counter() - start)


# --------------------------------------------------------------------------- --auc
def side_dataset(side: str, route: str) -> str:
    """``MicroLens_sample[_<side>][_pretrained]``: the dataset of a candidate item side."""
    name = "MicroLens_sample" + ("" if side == "given" else f"_{side}")
    return name + ("_pretrained" if route == "pretrained" else "")


def side_expid(model: str, side: str, route: str, seed=None) -> str:
    """``<Model>_sample[_<side>][_pretrained][_s<seed>]``."""
    name = f"{model}_sample" + ("" if side == "given" else f"_{side}")
    name += "_pretrained" if route == "pretrained" else ""
    return name + ("" if seed is None else f"_s{seed}")


def side_config(src: Path, dst: Path, data_dir: Path, model_root: Path, budget: dict, jobs,
                datasets: Path = None) -> Path:
    """bench/models.py's config copy (paths at ``data_dir``, checkpoints at ``model_root``),
    with ``--datasets`` merged and an expid for each ``(model, side, route, seed)`` of ``jobs``:
    ``<Model>_sample[_pretrained]``'s settings on the budget, with the side's dataset (and the
    seed, unless None)."""
    config = bench_config(src, dst, data_dir, model_root, budget, set())
    data_cfg = config / "dataset_config.yaml"
    if datasets:
        extra = Path(datasets).read_text().replace("./data/sample/", f"{data_dir}/")
        data_cfg.write_text(data_cfg.read_text() + "\n" + extra)
    known = yaml.safe_load(data_cfg.read_text())
    for model in sorted({job[0] for job in jobs}):
        path = config / "model_config" / f"{model}.yaml"
        cfg = yaml.safe_load(path.read_text())
        for _m, side, route, seed in [j for j in jobs if j[0] == model]:
            dataset = side_dataset(side, route)
            if dataset not in known:
                raise SystemExit(f"no dataset {dataset} in {data_cfg} (side {side}, route "
                                 f"{route}); define it with --datasets FILE")
            template = cfg[f"{model}_sample" + ("_pretrained" if route == "pretrained" else "")]
            cfg[side_expid(model, side, route, seed)] = dict(
                template, dataset_id=dataset, **budget, **({} if seed is None else {"seed": seed}))
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def _oracle(data_dir: Path):
    manifest = data_dir / "_SUCCESS"
    try:
        return json.loads(manifest.read_text())["oracle"]["valid"]["AUC"]
    except (OSError, ValueError, KeyError):
        return None


def side_table(rows, sides, columns) -> str:
    """Markdown: one row per side, one column per (model, route), valid AUC (the mean over the
    seeds run, +- half their range when there are several)."""
    got = {}
    for r in rows:
        got.setdefault((r["side"], r["model"], r["route"]), []).append(r["auc"])
    oracle = next((r["oracle_auc"] for r in rows if r.get("oracle_auc")), None)
    head = "| item side | " + " | ".join(f"{m} {rt}" for m, rt in columns) + " |"
    lines = [head, "| --- |" + " --- |" * len(columns)]

    def cell(aucs):
        if len(aucs) == 1:
            return f"{aucs[0]:.4f}"
        return f"{sum(aucs) / len(aucs):.4f} +- {(max(aucs) - min(aucs)) / 2:.4f}"

    for side in sides:
        cells = [cell(got[(side, m, rt)]) if (side, m, rt) in got else ""
                 for m, rt in columns]
        if any(cells):
            lines.append(f"| {side} | " + " | ".join(cells) + " |")
    if oracle:
        lines.append(f"\noracle (true click probability) valid AUC: {oracle:.4f}")
    return "\n".join(lines)


def auc_main(args) -> int:
    """Valid AUC of each model on each candidate item side of ``--data-dir``."""
    out, saved, rows = start(args.threads, args.out)
    data_dir = Path(args.data_dir).resolve()
    where = os.path.normpath(args.data_dir)  # rows name the folder as given (a repo path)
    budget = dict(BUDGETS["fixed"], epochs=args.epochs, batch_size=args.batch_size)
    done = {(r["data_dir"], r["model"], r["side"], r["route"], r.get("seed"),
             r["epochs_budget"], r["batch_size"]) for r in rows}
    jobs = [(m, s, rt, seed) for m in args.models for s in args.sides for rt in args.routes
            for seed in args.seeds
            if (where, m, s, rt, seed, budget["epochs"], budget["batch_size"]) not in done]
    if jobs and not args.report:
        shipped = [s for s in args.sides if s in CANDIDATES]
        if shipped:  # the tables of --datasets sides are the user's to make
            build_candidates(data_dir / "MicroLens_1M_x1", names=shipped)
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_item_side_"))
        config = side_config(Path(args.config), work / "config", data_dir, work / "checkpoints",
                             budget, jobs, args.datasets)
        for model, side, route, seed in jobs:
            expid = side_expid(model, side, route, seed)
            logging.info("== %s on %s", expid, data_dir)
            row = dict(data_dir=where, model=model, side=side, route=route, expid=expid,
                       seed=seed, epochs_budget=budget["epochs"], batch_size=budget["batch_size"],
                       oracle_auc=_oracle(data_dir), **run_one(config, expid))
            rows.append(row)
            logging.info("%s", row)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(dict(machine=machine(), rows=rows), indent=1))
            os.replace(tmp, out)
    kept = [r for r in rows if r["data_dir"] == where and r.get("seed") in args.seeds
            and r["epochs_budget"] == budget["epochs"] and r["batch_size"] == budget["batch_size"]]
    print(f"\nMachine: {saved.get('machine') if args.report else machine()}")
    print(f"Data: {where}; {budget['epochs']} epochs, batch {budget['batch_size']}; valid AUC")
    print(side_table(kept, args.sides, [(m, rt) for m in args.models for rt in args.routes]))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/mmctr_config")
    parser.add_argument("--column-expid", default="DIN_sample")
    parser.add_argument("--pretrained-expid", default="DIN_sample_pretrained")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 1024, with --auc 256 (the official baseline's)")
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--loader-batch-size", type=int, default=8192)
    auc = parser.add_argument_group("--auc: valid AUC per candidate item side")
    auc.add_argument("--auc", action="store_true", help="compare item sides, not routes")
    auc.add_argument("--data-dir", default="data/sample",
                     help="the sample root (holds MicroLens_1M_x1/ and the manifest)")
    auc.add_argument("--models", nargs="+", default=["DIN"])
    auc.add_argument("--sides", nargs="+", default=list(CANDIDATES),
                     help="candidate item sides (MicroLens_sample_<side> datasets)")
    auc.add_argument("--routes", nargs="+", default=["column"], choices=["column", "pretrained"])
    auc.add_argument("--epochs", type=int, default=BUDGETS["fixed"]["epochs"])
    auc.add_argument("--seeds", nargs="+", type=int, default=[20242025],
                     help="model seeds, one run each (default: 20242025, every shipped "
                          "expid's)")
    auc.add_argument("--datasets", help="a YAML of more datasets (sample paths as ./data/sample/)")
    auc.add_argument("--work-dir", default=None, help="configs and checkpoints (default: tmp)")
    auc.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    auc.add_argument("--out", default="bench/results/item_side.json")
    auc.add_argument("--report", action="store_true", help="print --out's table, run nothing")
    args = parser.parse_args(argv)
    if args.auc:
        args.batch_size = args.batch_size or BUDGETS["fixed"]["batch_size"]
        return auc_main(args)
    args.batch_size = args.batch_size or 1024
    logging.disable(logging.INFO)
    rows = {}
    for route, expid in (("column (type: embedding)", args.column_expid),
                         ("pretrained (item_side: ids)", args.pretrained_expid)):
        rows[route] = train_throughput(args.config, expid, args.steps, args.batch_size,
                                       args.max_len)
    params = rows["pretrained (item_side: ids)"]["params"]

    # loaders alone, batch 8192: ids-only vs the official-style .iloc collate
    feature_map = experiment.load_feature_map(params)
    bs, L = args.loader_batch_size, args.max_len
    ids_loader = MMCTRDataLoader(feature_map, params["train_data"], item_info=params["item_info"],
                                 batch_size=bs, max_len=L, item_side="ids")
    n = min(10, len(ids_loader))
    rate_ids = loader_rate(ids_loader, n, bs)
    stacked = StackedRows(Path(params["train_data"]))
    keep = {"user_id", "item_seq", "likes_level", "views_level", "item_id", "label"}
    iloc = DataLoader(stacked, batch_size=bs, collate_fn=IlocCollate(
        stacked.index, Path(params["item_info"]), L, keep))
    rate_iloc = loader_rate(iloc, 2, bs)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device cpu")
    print(f"data: {params['train_data']}; DIN, batch {args.batch_size}, history {L}, "
          f"{args.steps} timed train steps")
    print(f"{'route':<30}{'train samples/s':>16}{'loader bytes/sample':>21}{'trainable':>11}")
    for route, row in rows.items():
        print(f"{route:<30}{row['samples_per_s']:>16,.0f}{row['bytes_per_sample']:>21,.0f}"
              f"{row['parameters']:>11,}")
    ratio = rate_ids / rate_iloc
    print(f"loader alone, batch {bs}: ids-only {rate_ids:,.0f} samples/s vs official-style "
          f".iloc collate {rate_iloc:,.0f} samples/s = {ratio:,.0f}x (floor 100x)")
    return 0 if ratio >= 100 else 1


if __name__ == "__main__":
    sys.exit(main())
