"""Data-parallel training on this machine: train throughput with 1 process, with 1 process under
torchrun (the DDP wrapper alone) and with N processes, and the bytes DDP all-reduces per step.

    python bench/ddp.py [--data-dir data/sample] [--train-rows 20480] [--models DIN DCNv2 ...]
                        [--procs 2] [--gpu -1] [--out bench_ddp.json]

Each model trains one epoch of its ``<Model>_sample`` expid (the sample's config: global batch
1024, history 32) on the first ``--train-rows`` rows of the sample's train split, through the
same code ``run_expid.py`` runs: FuxiCTR's ``train_epoch`` calling the package's train step,
wrapped by :mod:`fuxictr_mmctr.train.distributed` under torchrun. Only the epoch is timed
(after a barrier; no evaluation, no checkpoint). samples/s = train rows / epoch seconds. The
all-reduced bytes are counted by a DDP communication hook (the gradient buckets it hands to
the all-reduce), next to the size of the trainable parameters. On the CPU four runs: one
process with one thread and with every core, one process under torchrun (the DDP wrapper's
own cost) and N processes splitting the cores; with ``--gpu 0`` one process, one under torchrun,
and N processes on N GPUs. If the sample is missing, the default one is generated. Run from
the repository root.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
logger = logging.getLogger("bench.ddp")
MODELS = ("DIN", "DCNv2", "TransformerDCN", "DIN_DCN", "FiBiNET")


# ---------------------------------------------------------------------------- worker

def worker(args) -> None:
    """One process of a measurement (plain, or one rank under torchrun)."""
    import torch

    from fuxictr.pytorch.torch_utils import seed_everything

    from fuxictr_mmctr import process_group
    from fuxictr_mmctr.train import distributed, experiment

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    results = {}
    with process_group.session(args.gpu) as cluster:
        for expid in args.expids:
            params = experiment.load_params(args.config, expid, args.gpu)
            params.update(verbose=0)
            if cluster.active:
                params.update(rank=cluster.rank, world_size=cluster.world_size)
                params["gpu"] = cluster.local_rank if args.gpu >= 0 else -1
            scratch = Path(tempfile.mkdtemp(prefix="bench-ddp-"))
            feature_map = experiment.build_feature_map(params, output_dir=scratch)
            seed_everything(params["seed"])
            model = experiment.build_model(feature_map, params)
            train_gen, _ = experiment.make_loaders(params, feature_map, "train")
            parallel = distributed.attach(model, cluster, train_gen, seed=params["seed"])
            counter = distributed.AllReduceCounter()
            if parallel is not None:
                counter.attach(parallel)
            # what BaseModel.fit sets up before its first epoch, without evaluation
            model._max_gradient_norm = params.get("max_gradient_norm", 10.0)
            model._steps_per_epoch = len(train_gen)
            model._total_steps, model._batch_index, model._epoch_index = 0, 0, 0
            model._eval_steps = 10 ** 12
            model._stop_training = False
            for index, batch in enumerate(train_gen if args.warmup > 0 else []):
                model._batch_index = index                  # warm-up: allocations, lazy init
                model.train_step(batch)
                if index + 1 == args.warmup:
                    break
            model._batch_index = 0
            counter.reset()
            cluster.barrier()
            start = time.perf_counter()
            model.train_epoch(train_gen)
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            cluster.barrier()
            seconds = time.perf_counter() - start
            steps = len(train_gen)
            trainable = sum(p.numel() * p.element_size() for p in model.parameters()
                            if p.requires_grad)
            results[expid] = {"samples": train_gen.num_samples, "seconds": seconds,
                              "steps": steps, "trainable_bytes": trainable,
                              "allreduce_bytes_per_step": counter.bytes / steps,
                              "buckets_per_step": counter.buckets / steps,
                              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                              / 1e6}
            shutil.rmtree(scratch, ignore_errors=True)
        peaks = process_group.all_gather_objects(
            max(r["peak_rss_gb"] for r in results.values())) if cluster.active else None
        if cluster.is_main:
            Path(args.out).write_text(json.dumps({"results": results, "world_size":
                                                  cluster.world_size, "rank_peak_rss_gb": peaks,
                                                  "threads": args.threads}, indent=1))


# ---------------------------------------------------------------------------- driver

def prepare(data_dir: Path, train_rows: int, scratch: Path, expids) -> Path:
    """A config dir (bench/models.py's :func:`bench_config`) whose sample datasets read the
    first ``train_rows`` train rows of the sample at ``data_dir``."""
    import pyarrow.parquet as pq

    from models import bench_config  # bench/models.py

    split = data_dir / "MicroLens_1M_x1"
    if not (split / "train.parquet").exists():
        from fuxictr_mmctr.data.sample import make_sample

        logger.info("No sample at %s: making the default one", data_dir)
        make_sample(data_dir, preset="default")
    data = scratch / "data" / "MicroLens_1M_x1"
    data.mkdir(parents=True)
    table = pq.read_table(split / "train.parquet")
    pq.write_table(table.slice(0, min(train_rows, table.num_rows)), data / "train.parquet")
    for name in ("valid", "test", "item_info"):
        (data / f"{name}.parquet").symlink_to((split / f"{name}.parquet").resolve())
    return bench_config(ROOT / "config" / "mmctr_config", scratch / "config" / "mmctr_config",
                        scratch / "data", scratch / "checkpoints", {"num_workers": 1}, expids)


def measure(label, cmd, out: Path, env) -> dict:
    logger.info("%s: %s", label, " ".join(map(str, cmd)))
    done = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--train-rows", type=int, default=20480)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--procs", type=int, default=2, help="processes of the N-process run")
    parser.add_argument("--gpu", type=int, default=-1, help="-1: CPU and gloo; >= 0: NCCL")
    parser.add_argument("--warmup", type=int, default=2, help="untimed train steps first")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--expids", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", dest="out_json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.out = args.out_json
        worker(args)
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from models import machine  # bench/models.py

    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    try:
        expids = [f"{m}_sample" for m in args.models]
        config_dir = prepare(args.data_dir, args.train_rows, scratch, expids)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        base = [sys.executable, __file__, "--worker", "--config", config_dir, "--gpu", args.gpu,
                "--expids", *expids]
        # torchrun would set OMP_NUM_THREADS=1; --threads sets torch's intra-op threads
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        per_proc = max(1, cores // args.procs) if args.gpu < 0 else 1
        plan = [("1 process, 1 thread", 0, 1),
                (f"1 process, {cores} threads", 0, cores),
                ("torchrun: 1 process, 1 thread", 1, 1),
                (f"torchrun: {args.procs} processes x {per_proc} thread", args.procs, per_proc)]
        if args.gpu >= 0:
            plan = [("1 process", 0, 1), ("torchrun: 1 process", 1, 1),
                    (f"torchrun: {args.procs} processes", args.procs, 1)]
        runs = {}
        for i, (label, nproc, threads) in enumerate(plan):
            out = scratch / f"run{i}.json"
            cmd = (base if nproc == 0 else torchrun + ["--nproc_per_node", nproc] + base[1:]) + \
                ["--threads", threads, "--warmup", args.warmup, "--worker-out", out]
            runs[label] = measure(label, cmd, out, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    names = list(runs)
    print(f"\nMachine: {machine()}; {'GPU, NCCL' if args.gpu >= 0 else 'CPU, gloo'}; "
          f"{args.train_rows} train rows, one epoch after {args.warmup} warm-up steps, the "
          "global batch of each <Model>_sample expid; load average before: "
          f"{load[0]:.1f}, after: {os.getloadavg()[0]:.1f}\n")
    print("| model | trainable parameters | all-reduced per step | " +
          " | ".join(names) + f" | {names[-1]} vs {names[0]} |")
    print("| --- " * (4 + len(names)) + "|")
    for expid in expids:
        many = runs[names[-1]]["results"][expid]
        rates = [runs[n]["results"][expid]["samples"] / runs[n]["results"][expid]["seconds"]
                 for n in names]
        mb = many["allreduce_bytes_per_step"] / 1e6
        print(f"| {expid.replace('_sample', '')} | {many['trainable_bytes'] // 4:,} | "
              f"{mb:.2f} MB in {many['buckets_per_step']:.0f} bucket(s) | " +
              " | ".join(f"{r:,.0f}" for r in rates) + f" | {rates[-1] / rates[0]:.2f}x |")
    print("\n(samples/s of the training epoch; all-reduced bytes counted by a DDP comm hook)")
    peaks = runs[names[-1]]["rank_peak_rss_gb"]
    print(f"Peak RSS per rank ({names[-1]}): " + ", ".join(f"{p:.2f} GB" for p in peaks))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
