"""Run by test_distributed.py under ``torchrun --standalone --nproc_per_node 2`` (gloo, CPU).

    torchrun ... ddp_worker.py CONFIG_DIR OUT_DIR EXPID [EXPID ...]

One launch checks every experiment, because starting torch costs seconds per process:

1. gradients: for the first and the last global batch of the train split (the last one is
   smaller than the world, so rank 1 runs a stand-in row), the gradients after the DDP
   forward/backward on each rank's share are compared, on rank 0, with those of a plain
   single-process model holding the same weights on the whole global batch; then the first two
   batches as ``accumulation_steps: 2`` micro-batches, counting the bytes DDP all-reduces (a comm hook);
2. training: ``experiment.train`` (what ``run_expid.py`` runs) for one epoch, each rank in
   its own working directory ``OUT_DIR/rank<R>`` so that what each rank wrote can be told
   apart. For experiments listed in ``MMCTR_TEST_NO_SHARED_FS``, rank 1 acts as a node that
   cannot see rank 0's files and receives the feature map through the process group.

Each rank writes ``OUT_DIR/result.rank<R>.json`` (outside the working directories).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def gradient_check(config_dir: str, expid: str, rank: int, world: int, scratch: Path) -> dict:
    """Relative difference between DDP and single-process gradients, first and last batch."""
    from fuxictr.pytorch.torch_utils import seed_everything

    from fuxictr_mmctr import process_group
    from fuxictr_mmctr.data.loader import MMCTRDataLoader
    from fuxictr_mmctr.train import distributed, experiment

    params = experiment.load_params(config_dir, expid)
    params.update(verbose=0)
    feature_map = experiment.build_feature_map(params, output_dir=scratch / f"{expid}.{rank}")
    seed_everything(params["seed"])
    model = experiment.build_model(feature_map, params)
    cluster = process_group.Cluster(rank=rank, world_size=world, local_rank=rank, backend="gloo")
    distributed.attach(model, cluster)          # rank 0's weights on every rank
    counter = distributed.AllReduceCounter().attach(model._dist)   # bytes all-reduced

    def loader(rank_, world_):
        return MMCTRDataLoader(feature_map, params["train_data"], item_info=params["item_info"],
                               split="train", batch_size=params["batch_size"], shuffle=False,
                               max_len=params["max_len"],
                               item_side=params.get("item_side", "features"),
                               rank=rank_, world_size=world_)

    shares = list(loader(rank, world))
    reference = None
    if rank == 0:
        reference = experiment.build_model(feature_map, params)   # no DDP
        reference.load_state_dict(model.state_dict())
        whole = list(loader(0, 1))
    out = {}

    def compare(grads, batches):
        reference.train()
        reference.zero_grad(set_to_none=True)
        for batch in batches:                  # accumulation_steps = len(batches)
            loss = reference.compute_loss(reference.forward(batch), reference.get_labels(batch))
            (loss / len(batches)).backward()
        ref = {n: p.grad.detach() for n, p in reference.named_parameters() if p.requires_grad}
        assert set(ref) == set(grads)
        diff = torch.sqrt(sum(((grads[n] - ref[n]) ** 2).sum() for n in ref))
        norm = torch.sqrt(sum((ref[n] ** 2).sum() for n in ref))
        return {"rel_diff": float(diff / norm), "grad_norm": float(norm)}

    for name, index in (("first", 0), ("last", -1)):
        model.train()
        model.zero_grad(set_to_none=True)
        counter.reset()
        model._dist.forward_backward(model, shares[index], sync=True)
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                 if p.requires_grad}
        if rank == 0:
            out[name] = dict(compare(grads, [whole[index]]), rows=int(shares[index].rows),
                             global_rows=int(shares[index].global_rows),
                             all_reduced=counter.bytes)
    # accumulation_steps 2: the first micro-batch runs under no_sync() (no all-reduce at all),
    # the second all-reduces the summed gradients once
    model.accumulation_steps = 2
    model.zero_grad(set_to_none=True)
    counter.reset()
    model._dist.forward_backward(model, shares[0], sync=False)
    after_first = counter.bytes
    model._dist.forward_backward(model, shares[1], sync=True)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if rank == 0:
        trainable = sum(p.numel() * p.element_size() for p in model.parameters()
                        if p.requires_grad)
        out["accumulated"] = dict(compare(grads, whole[:2]), all_reduced_first=after_first,
                                  all_reduced_second=counter.bytes - after_first,
                                  trainable_bytes=trainable)
    return out


def main() -> int:
    config_dir, out_dir, *expids = sys.argv[1:]
    out_dir = Path(out_dir)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from fuxictr_mmctr.train import distributed, experiment

    results = {"world_size": world, "experiments": {}}
    scratch = out_dir / "scratch"
    for expid in expids:
        results["experiments"][expid] = {"gradients": gradient_check(config_dir, expid, rank,
                                                                     world, scratch)}
    dist.barrier()

    workdir = out_dir / f"rank{rank}"
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    no_shared_fs = set(os.environ.get("MMCTR_TEST_NO_SHARED_FS", "").split(","))
    sees = distributed._sees
    for expid in expids:
        distributed._sees = (lambda folder: rank == 0) if expid in no_shared_fs else sees
        result = experiment.train(config_dir, expid, -1)
        results["experiments"][expid]["valid"] = result.valid_metrics
    distributed._sees = sees
    (out_dir / f"result.rank{rank}.json").write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
