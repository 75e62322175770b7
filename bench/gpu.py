"""Train throughput and peak GPU memory of every model in fp32, TF32, bf16, compiled, ids route.

At batch 8192 on full-size shapes: each model in fp32, TF32, bf16, bf16 compiled
(``bf16+compile``) and bf16 on the ids route (``bf16+ids``; ``fp32+compile`` on request); the
loader alone with its host-to-device copies; one process under torchrun against a plain one.

    python bench/gpu.py                      # a GPU: cuda:0, the `full` sample (made if missing)
    python bench/gpu.py --device cpu         # here: the `vocab` sample (real vocabularies, 600
                                             # rows), batch 256, a few steps
    python bench/gpu.py [--data-dir DIR] [--train-rows N] [--batch-size B] [--steps S]
                        [--models DIN DCNv2 ...] [--out bench_gpu.json]

Shapes: each model trains with its ``<Model>_default`` settings (DIN's are the official
baseline's: embedding 64, DNN [1024, 512, 256], attention [512, 256], history 64; the others
history 100) on the first ``--train-rows`` rows of the sample's train split (91,717 items, tag
vocabulary 11,740, as MicroLens_1M_x1), column route (``item_emb_d128`` shipped per history
item, about 270 MB per batch of 8192 at history 64) unless the row says ids.

Per model and setting: ``--warmup`` untimed train steps (at least 3 compiled: a model compiles
in the first, whose seconds are printed, and again where a size turns out to change), then
``--steps`` timed ones through the package's train step and loader (FuxiCTR's ``train_step``;
loader, forward, backward, Adam), synchronized at the end; samples/s = steps x batch / seconds.
Peak GPU memory is ``torch.cuda.max_memory_allocated`` over the run. The loader section
iterates ``MMCTRDataLoader`` alone (one assembly thread): host batches only; each copied to the
GPU synchronously from pageable memory; and the loader's own CUDA path (pinned batches, copied
one ahead on a side stream). The evaluation line scores one set of bf16-trained weights as the
package evaluates (eager float32) and under bf16 and fp16 autocast. The torchrun section runs
``bench/ddp.py``'s worker (one epoch of the slice) as a plain process and as the one rank of
``torchrun --nproc_per_node 1``. Run from the repository root; a sample that is missing is
generated first (``full``: about 2 minutes, 0.7 GB on disk).
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from ddp import measure, prepare  # noqa: E402  (bench/ddp.py: slice + config, torchrun runs)
from item_side import batch_bytes, full_batches, train_throughput  # noqa: E402
from models import machine  # noqa: E402  (bench/models.py)

logger = logging.getLogger("bench.gpu")
MODELS = ("DIN", "DCNv2", "TransformerDCN", "DIN_DCN", "FiBiNET")
# column label -> params of the run
SETTINGS = {
    "fp32": {},
    "tf32": {"tf32": True},
    "bf16": {"precision": "bf16"},
    "fp32+compile": {"compile": True},
    "bf16+compile": {"precision": "bf16", "compile": True},
    "bf16+ids": {"precision": "bf16", "item_side": "ids"},
}
DEFAULT_SETTINGS = ("fp32", "tf32", "bf16", "bf16+compile", "bf16+ids")
TORCHRUN_SETTING = "bf16"


def versions(device: torch.device) -> str:
    line = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        line = (f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB, compute capability "
                f"{props.major}.{props.minor}), {line}, cuDNN {torch.backends.cudnn.version()}")
    return f"{line}; host: {machine()}"


def ensure_data(data_dir: Path, preset: str) -> Path:
    """``data_dir`` holding a sample (made with ``preset`` when missing)."""
    if not (data_dir / "MicroLens_1M_x1" / "train.parquet").exists():
        from fuxictr_mmctr.data.sample import make_sample

        logger.info("No sample at %s: making the %s preset (no images, no item vectors)",
                    data_dir, preset)
        make_sample(data_dir, preset=preset, images=False, item_vectors=False)
    return data_dir


def add_expids(config_dir: Path, models, batch_size: int) -> dict:
    """``<Model>_gpu``: ``<Model>_default``'s settings on the sliced sample at ``batch_size``."""
    found = {}
    for path in sorted((config_dir / "model_config").glob("*.yaml")):
        for expid, params in (yaml.safe_load(path.read_text()) or {}).items():
            model = expid[:-len("_default")] if expid.endswith("_default") else None
            if model in models:
                found[model] = dict(params, dataset_id="MicroLens_sample",
                                    batch_size=batch_size, num_workers=1, verbose=0)
    missing = sorted(set(models) - set(found))
    if missing:
        raise SystemExit(f"no <Model>_default expid for {missing}")
    expids = {model: f"{model}_gpu" for model in found}
    (config_dir / "model_config" / "zz_gpu.yaml").write_text(
        yaml.safe_dump({expids[m]: p for m, p in found.items()}, sort_keys=False))
    return expids


def train_rows(args, config_dir, expids, gpu):
    """Every model in every setting: throughput, peak memory, first-step seconds."""
    rows = {}
    for model, expid in expids.items():
        for label in args.settings:
            setting = SETTINGS[label]
            logger.info("%s, %s", model, label)
            # compiled: a size that changes (DIN's real history positions on the CPU) is made
            # dynamic at its first change, a second compilation: both before the clock starts
            warmup = max(args.warmup, 3) if setting.get("compile") else args.warmup
            try:
                rows[model, label] = train_throughput(
                    config_dir, expid, args.steps, args.batch_size, warmup=warmup, gpu=gpu,
                    **setting)
                rows[model, label].pop("params")
            except Exception as exc:  # a row that fails (OOM, ...) is reported, not fatal
                logger.exception("%s, %s failed", model, label)
                rows[model, label] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            gc.collect()  # the compiled forward holds its model in a reference cycle
            torch.compiler.reset()
            if gpu >= 0:
                torch.cuda.empty_cache()
    return rows


def loader_rows(config_dir, expid, batch_size, n_batches, gpu):
    """Samples/s of the loader alone, column and ids routes: host batches, + a synchronous
    pageable copy, + the loader's own pinned side-stream path."""
    from fuxictr_mmctr.data.loader import MMCTRDataLoader
    from fuxictr_mmctr.train import experiment

    params = experiment.load_params(config_dir, expid, gpu)
    feature_map = experiment.build_feature_map(params)
    device = torch.device("cuda", gpu) if gpu >= 0 else torch.device("cpu")
    sync = torch.cuda.synchronize if gpu >= 0 else (lambda: None)
    rows = {}
    for route in ("features", "ids"):
        def loader(on_gpu):
            return MMCTRDataLoader(feature_map, params["train_data"],
                                   item_info=params["item_info"], batch_size=batch_size,
                                   max_len=params["max_len"], item_side=route, num_workers=1,
                                   gpu=gpu if on_gpu else -1)

        def rate(batches, move=None):
            shipped, done = 0, 0
            sync()
            start = time.perf_counter()
            for batch in batches:
                shipped += batch_bytes(batch)
                if move is not None:
                    batch = move(batch)
                done += 1
                if done == n_batches:
                    break
            sync()
            return done * batch_size / (time.perf_counter() - start), shipped / done

        host = loader(False)
        row = {"host": rate(host)}
        if gpu >= 0:
            row["pageable copy"] = rate(host, lambda b: host.to_device(b, device))
            row["pinned, side stream"] = rate(loader(True))
        rows[route] = row
    return rows


def eval_rows(config_dir, expid, batch_size, steps, gpu):
    """Validation metrics of one set of bf16-trained weights (``steps`` train steps), evaluated
    as the package does (eager float32) and under bf16 / fp16 autocast (the last sigmoid in
    float32 either way)."""
    from fuxictr_mmctr.models.speed import MixedPrecision
    from fuxictr_mmctr.train import experiment

    params = experiment.load_params(config_dir, expid, gpu)
    params.update(verbose=0, batch_size=batch_size, precision="bf16")
    feature_map = experiment.build_feature_map(params)
    model = experiment.build_model(feature_map, params)
    train_gen, valid_gen = experiment.make_loaders(params, feature_map, "train")
    model.train()
    model._max_gradient_norm, model._steps_per_epoch = 10.0, 10 ** 9
    batches = full_batches(train_gen, batch_size)
    for model._batch_index in range(steps):
        model.train_step(next(batches))
    batches.close()
    out = {"fp32": dict(model.evaluate(valid_gen))}
    for name in ("bf16", "fp16"):
        with MixedPrecision(name, model.device).autocast():
            out[name] = dict(model.evaluate(valid_gen))
    out["valid_rows"] = valid_gen.num_samples
    return out


def torchrun_rows(config_dir, expid, gpu, warmup):
    """bench/ddp.py's worker, one epoch of the slice: plain process vs torchrun, 1 process."""
    scratch = Path(tempfile.mkdtemp(prefix="bench_gpu_run_"))
    setting = dict(SETTINGS[TORCHRUN_SETTING])
    path = config_dir / "model_config" / "zz_gpu.yaml"
    config = yaml.safe_load(path.read_text())
    config[expid].update(setting)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, str(ROOT / "bench" / "ddp.py"), "--worker", "--config", config_dir,
            "--gpu", gpu, "--expids", expid, "--threads", torch.get_num_threads(),
            "--warmup", warmup]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", 1]
    out = {}
    try:
        for label, cmd in (("plain process", base),
                           ("torchrun, 1 process", torchrun + base[1:])):
            result = measure(label, cmd + ["--worker-out", scratch / "run.json"],
                             scratch / "run.json", env)["results"][expid]
            out[label] = result["samples"] / result["seconds"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def print_tables(args, rows, loaders, evals, runs, gpu, device, load, seconds) -> None:
    gib = 2 ** 30
    labels = list(args.settings)
    print(f"\n{versions(device)}")
    print(f"data: {args.data_dir} (first {args.slice_rows:,} train rows), batch "
          f"{args.batch_size}, {args.warmup} warm-up + {args.steps} timed train steps; load "
          f"average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}; {seconds:.0f} s\n")
    cell = "samples/s (peak GiB)" if gpu >= 0 else "samples/s"
    print(f"Train throughput, {cell}; compiled: seconds of the first (compiling) step\n")
    pairs = [(a, b) for a, b in (("bf16", "fp32"), ("fp32+compile", "fp32"),
                                 ("bf16+compile", "bf16"), ("bf16+compile", "fp32"))
             if a in labels and b in labels]
    print("| model | history | " + " | ".join(labels + [f"{a} vs {b}" for a, b in pairs]) +
          " |")
    print("| --- " * (2 + len(labels) + len(pairs)) + "|")
    for model in args.models:
        cells, rate = [], {}
        for label in labels:
            row = rows.get((model, label), {})
            if "error" in row or not row:
                cells.append(f"failed: {row.get('error', '-')}")
                continue
            rate[label] = row["samples_per_s"]
            text = f"{row['samples_per_s']:,.0f}"
            if row["peak_gpu_bytes"] is not None:
                text += f" ({row['peak_gpu_bytes'] / gib:.1f})"
            if "compile" in label:
                text += f", first step {row['first_step_s']:.0f} s"
            cells.append(text)
        ratios = [f"{rate[a] / rate[b]:.2f}x" if a in rate and b in rate else "-"
                  for a, b in pairs]
        print(f"| {model} | {args.histories[model]} | " + " | ".join(cells + ratios) + " |")
    shipped = {label: row["bytes_per_sample"] for (m, label), row in rows.items()
               if m == args.models[0] and "bytes_per_sample" in row}
    if shipped:
        print(f"\nBytes the loader ships per sample ({args.models[0]}): " +
              ", ".join(f"{label} {n:,.0f}" for label, n in shipped.items()))
    print(f"\nLoader alone ({args.models[0]}'s history, batch {args.batch_size}), samples/s\n")
    kinds = list(next(iter(loaders.values())))
    print("| route | MB per batch | " + " | ".join(kinds) + " |")
    print("| --- " * (2 + len(kinds)) + "|")
    for route, row in loaders.items():
        mb = next(iter(row.values()))[1] / 1e6  # bytes per batch
        print(f"| {'column' if route == 'features' else 'ids'} | {mb:,.1f} | " +
              " | ".join(f"{row[k][0]:,.0f}" for k in kinds) + " |")
    fp32 = evals["fp32"]
    print(f"\nEvaluation precision ({args.models[0]}, the same weights after "
          f"{args.eval_steps} bf16 train steps, {evals['valid_rows']:,} valid rows): "
          f"eager fp32 AUC {fp32['AUC']:.5f}, logloss {fp32['logloss']:.5f}; " +
          "; ".join(f"{name} autocast AUC {evals[name]['AUC']:.5f} "
                    f"({evals[name]['AUC'] - fp32['AUC']:+.5f}), logloss "
                    f"{evals[name]['logloss']:.5f}" for name in ("bf16", "fp16")))
    if runs:
        plain, under = runs["plain process"], runs["torchrun, 1 process"]
        print(f"\n{args.models[0]} {TORCHRUN_SETTING}, one epoch of the slice (bench/ddp.py's "
              f"worker): plain process {plain:,.0f} samples/s, torchrun 1 process "
              f"{under:,.0f} samples/s ({under / plain:.2f}x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a sample root (default: data/full on a GPU, data/vocab on a CPU)")
    parser.add_argument("--train-rows", type=int, default=None,
                        help="train rows of the slice (default 24 batches on a GPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="8192 on a GPU, 256 CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (3 GPU, 1 CPU)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None,
                        help=f"columns of the table (default: {', '.join(DEFAULT_SETTINGS)}; "
                             "tf32 only on a GPU)")
    parser.add_argument("--eval-steps", type=int, default=None,
                        help="bf16 train steps before the evaluation-precision line "
                             "(default: warm-up + timed steps)")
    parser.add_argument("--no-torchrun", action="store_true", help="skip the torchrun rows")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    device = torch.device(args.device)
    gpu = -1
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("CUDA is not available here: run with --device cpu")
        gpu = device.index or 0
        device = torch.device("cuda", gpu)
    on_gpu = gpu >= 0
    args.settings = args.settings or [s for s in DEFAULT_SETTINGS if on_gpu or s != "tf32"]
    args.batch_size = args.batch_size or (8192 if on_gpu else 256)
    args.steps = args.steps or (20 if on_gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    args.train_rows = args.train_rows or args.batch_size * 24
    args.eval_steps = args.eval_steps or args.warmup + args.steps
    args.data_dir = args.data_dir or ROOT / "data" / ("full" if on_gpu else "vocab")
    load = os.getloadavg()
    start = time.perf_counter()
    ensure_data(args.data_dir, "full" if on_gpu else "vocab")
    scratch = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        config_dir = prepare(args.data_dir, args.train_rows, scratch, expids=())
        import pyarrow.parquet as pq

        args.slice_rows = pq.ParquetFile(scratch / "data" / "MicroLens_1M_x1" /
                                         "train.parquet").metadata.num_rows
        expids = add_expids(config_dir, args.models, args.batch_size)
        args.histories = {m: yaml.safe_load((config_dir / "model_config" / "zz_gpu.yaml")
                                            .read_text())[e]["max_len"]
                          for m, e in expids.items()}
        cwd = os.getcwd()
        os.chdir(scratch)  # checkpoints, feature maps: in the scratch folder
        try:
            rows = train_rows(args, config_dir, expids, gpu)
            first = expids[args.models[0]]
            loaders = loader_rows(config_dir, first, args.batch_size, args.steps, gpu)
            evals = eval_rows(config_dir, first, args.batch_size, args.eval_steps, gpu)
            runs = None if args.no_torchrun else torchrun_rows(config_dir, first, gpu,
                                                               args.warmup)
        finally:
            os.chdir(cwd)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_tables(args, rows, loaders, evals, runs, gpu, device, load,
                 time.perf_counter() - start)
    if args.out:
        args.out.write_text(json.dumps({
            "versions": versions(device), "batch_size": args.batch_size,
            "train": {f"{m}/{label}": r for (m, label), r in rows.items()},
            "loader": loaders, "evaluation": evals, "torchrun": runs}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
