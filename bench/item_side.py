"""The two item-side routes of DIN, side by side on the same data and config.

* column route (``DIN_sample``): the loader gathers item_id, item_tags and the 128-d
  ``item_emb_d128`` column for every history position and ships them (official contract);
* pretrained route (``DIN_sample_pretrained``): the embedding is FuxiCTR's frozen pretrained
  table on the model's device; the loader ships ids only (``item_side: ids``).

Prints the train-step throughput (loader + forward + backward + step, samples/s), the bytes
the loader ships per sample, and the ids-only loader against the official per-batch ``.iloc``
collate (floor: 100x). Run from the repository root:

    python bench/item_side.py [--config config/mmctr_config] [--steps 30] [--batch-size 1024]
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.data.loader import MMCTRDataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import IlocCollate, StackedRows  # noqa: E402  (the official-style baseline)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/mmctr_config")
    parser.add_argument("--column-expid", default="DIN_sample")
    parser.add_argument("--pretrained-expid", default="DIN_sample_pretrained")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--loader-batch-size", type=int, default=8192)
    args = parser.parse_args(argv)
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
