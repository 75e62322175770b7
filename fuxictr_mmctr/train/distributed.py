"""Data-parallel training under ``torchrun``: PyTorch DistributedDataParallel around FuxiCTR's fit.

The command is FuxiCTR's, started by torchrun (which owns process management and rendezvous)::

    torchrun --nproc_per_node 8 run_expid.py --config config/mmctr_config --expid ID --gpu 0
    torchrun --nnodes 2 --node_rank $i --rdzv_backend c10d --rdzv_endpoint HOST:29400 \\
        --nproc_per_node 8 run_expid.py ...
    torchrun --nproc_per_node 2 run_expid.py ... --gpu -1      # CPU processes, gloo

torchrun sets ``WORLD_SIZE``; without it nothing here runs and training is one process as
before. ``--gpu >= 0`` puts each process on CUDA device ``LOCAL_RANK`` with NCCL, ``--gpu -1``
on the CPU with gloo. What is done so that N processes train the model one process would:

* **the same optimisation**: ``batch_size`` stays the global batch. Every rank cuts the same
  global batches one process would (the shuffled order is a function of ``(seed, epoch)``:
  :func:`~fuxictr_mmctr.data.loader.epoch_order`) and takes its share
  (:func:`~fuxictr_mmctr.data.loader.batch_share`), so every rank takes the same number of steps.
  Each rank's mean loss is weighted by ``rows / global_rows * world_size`` before DDP averages
  the gradients, which makes the gradient that of the global batch's mean loss even when the
  shares differ in size; a rank whose share is empty (a last batch smaller than the world)
  runs one stand-in row with weight 0 so it still joins the all-reduce. Regularisers are added
  unweighted on every rank (DDP's average leaves them as they are). ``accumulation_steps``
  micro-batches run under ``no_sync()``; gradients are all-reduced once per optimizer step.
* **checkpoints unchanged**: the DDP wrapper stays outside the module tree (it lives on this
  module's :class:`DataParallel`, not as a submodule), so ``state_dict`` keys, ``prediction.py``,
  ``mmctr blend`` and drop-in see the usual model. Buffers are not broadcast every step (the
  device item tables of ``item_side: ids`` are identical on every rank anyway); batch-norm
  running statistics are averaged across ranks before every evaluation.
* **one answer everywhere**: each rank scores its block of the validation split, predictions,
  labels and group ids are gathered in rank order (file order), every rank computes the
  metrics, and rank 0's values are broadcast before early stopping or reduce-on-plateau act.
* **side effects on rank 0 only**: the feature map (built and published by rank 0 and sent to
  the others, which also works across nodes without a shared file system), the log file,
  progress bars, checkpoints (atomic, as in one process) and the results CSV. After training
  rank 0 loads the best checkpoint and broadcasts its weights.
* **faults**: torchrun takes the job down when a rank dies; every collective has a timeout
  (``ddp_timeout`` seconds in the config, default 1800), so no rank waits forever.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from fuxictr.features import FeatureMap
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data.loader import batch_share
from ..process_group import Cluster, all_gather_objects, broadcast_object
from .artifacts import FEATURE_MAP_JSON
from .results import metric_line

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the feature map

def share_feature_map(cluster: Cluster, feature_map, params: dict):
    """Rank 0's published feature map, on every rank.

    Rank 0 built and published it (``feature_map.data_dir``). A rank that sees that folder
    (a shared file system) loads it from there; otherwise rank 0 sends the folder's files and
    the rank keeps them in a private temporary folder, removed by :func:`release_feature_map`.

    Args:
        cluster: this process's place in the job.
        feature_map: rank 0's published map; ignored on the other ranks (pass None).
        params: the experiment params (FuxiCTR's ``FeatureMap.load`` reads ``feature_specs``).
    """
    if not cluster.active:
        return feature_map
    folder = broadcast_object(str(Path(feature_map.data_dir).resolve())
                              if cluster.is_main else None)
    visible = _sees(folder)
    everyone_sees = all(all_gather_objects(visible))
    if not everyone_sees:
        files = None
        if cluster.is_main:
            files = {str(p.relative_to(folder)): p.read_bytes()
                     for p in sorted(Path(folder).rglob("*")) if p.is_file()}
        files = broadcast_object(files)
        if not visible:
            local = Path(tempfile.mkdtemp(prefix=f"mmctr-feature-map-rank{cluster.rank}-"))
            for name, data in files.items():
                (local / name).parent.mkdir(parents=True, exist_ok=True)
                (local / name).write_bytes(data)
            logger.warning("rank %d does not see %s (no shared file system): using a copy "
                           "sent by rank 0 in %s", cluster.rank, folder, local)
            folder = str(local)
    if cluster.is_main:
        return feature_map
    received = FeatureMap(params["dataset_id"], folder)
    received.load(str(Path(folder, FEATURE_MAP_JSON)), params)
    return received


def _sees(folder: str) -> bool:
    """Whether this process can read rank 0's published feature map at ``folder``."""
    return Path(folder, FEATURE_MAP_JSON).is_file()


def release_feature_map(feature_map) -> None:
    """Remove a private copy made by :func:`share_feature_map` (nothing else is touched)."""
    folder = Path(getattr(feature_map, "data_dir", "") or "")
    if folder.name.startswith("mmctr-feature-map-rank") and \
            folder.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------- DDP around a model

def _ddp_kwargs() -> Dict[str, Any]:
    """Buffers are not broadcast at every forward (``forward_sync_buffers`` in torch >= 2.13,
    ``broadcast_buffers`` before)."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


class DataParallel:
    """The DDP side of one model: the wrapper, the train step, evaluation, weights.

    Held by :class:`~fuxictr_mmctr.models.base.MMCTRModel` as ``model._dist`` (a plain
    attribute, not a submodule), whose ``train_step``, ``evaluate``, ``save_weights`` and
    ``load_weights`` hand over to it. Build it with :func:`attach`.
    """

    def __init__(self, model, cluster: Cluster):
        self.cluster = cluster
        device_ids = [model.device.index] if model.device.type == "cuda" else None
        # Buffers outside the checkpoint (the item tables of `item_side: ids`) are read from
        # the same item_info by every rank: DDP neither broadcasts nor checks them (and gloo
        # has no int16 collectives for the narrow tag table).
        saved = set(model.state_dict().keys())
        local = [name for name, _ in model.named_buffers() if name not in saved]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, local)
        self.ddp = DistributedDataParallel(model, device_ids=device_ids, **_ddp_kwargs())

    # ------------------------------------------------------------------ training
    def forward_backward(self, model, batch, sync: bool):
        """Forward through the DDP wrapper and backward, for one share of a global batch.

        Args:
            model: the wrapped model.
            batch: a :class:`~fuxictr_mmctr.data.loader.Share` (any tuple counts as the
                whole batch).
            sync: all-reduce the gradients in this backward (False for the micro-batches
                inside ``accumulation_steps``: ``no_sync()``).

        The forward runs under the model's ``precision`` autocast (and through its compiled
        forward with ``compile: true``: DDP calls ``model.forward``); the loss is float32 and,
        with fp16, scaled by the model's gradient scaler before the backward (the all-reduce
        then carries scaled gradients, unscaled before clipping, as in one process).

        Returns:
            This share's loss (mean task loss + regulariser), detached, for the log.
        """
        rows = getattr(batch, "rows", None)
        global_rows = getattr(batch, "global_rows", None)
        world = self.cluster.world_size
        context = contextlib.nullcontext() if sync else self.ddp.no_sync()
        with context:
            if rows == 0:  # a stand-in row: no batch-norm update, no dropout, weight 0
                was_training = model.training
                model.eval()
                with model.precision.autocast():
                    return_dict = self.ddp(batch)
                model.train(was_training)
                task = return_dict["y_pred"].float().sum() * 0.0
                weighted = task
            else:
                with model.precision.autocast():
                    return_dict = self.ddp(batch)
                task = model.add_loss(return_dict, model.get_labels(batch))
                weight = world if rows is None else rows / global_rows * world
                weighted = task * weight
            regularizer = model.regularization_loss()
            model.precision.backward((weighted + regularizer) / model.accumulation_steps)
        return (task + regularizer).detach()

    # ------------------------------------------------------------------ evaluation
    def sync_buffers(self, model) -> None:
        """Average the floating-point buffers of the checkpoint (batch-norm running
        statistics) across ranks, so every rank scores with the same model."""
        saved = set(model.state_dict().keys())
        buffers = [b for name, b in model.named_buffers()
                   if name in saved and torch.is_floating_point(b)]
        if not buffers:
            return
        flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
        dist.all_reduce(flat)
        flat /= self.cluster.world_size
        offset = 0
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b).to(b.dtype))
            offset += b.numel()

    def evaluate(self, model, data_generator, metrics=None) -> Dict[str, float]:
        """FuxiCTR's ``evaluate`` over every rank's block of the split.

        Predictions, labels and group ids are gathered in rank order (file order), every rank
        computes the metrics, and rank 0's values are returned on every rank, so early
        stopping and reduce-on-plateau take the same decision everywhere.
        """
        model.eval()
        self.sync_buffers(model)
        y_pred, y_true, group_id = [], [], []
        with torch.no_grad():
            batches = data_generator
            if model._verbose > 0:
                batches = tqdm(data_generator, disable=False, file=sys.stdout)
            for batch_data in batches:
                return_dict = model.forward(batch_data)
                y_pred.append(return_dict["y_pred"].data.cpu().numpy().reshape(-1))
                y_true.append(model.get_labels(batch_data).data.cpu().numpy().reshape(-1))
                if model.feature_map.group_id is not None:
                    group_id.append(model.get_group_id(batch_data).numpy().reshape(-1))
        local = tuple(np.concatenate(x) if x else np.zeros(0) for x in (y_pred, y_true, group_id))
        parts = all_gather_objects(local)
        y_pred, y_true, group_id = (np.concatenate([p[i] for p in parts]) for i in range(3))
        y_pred, y_true = y_pred.astype(np.float64), y_true.astype(np.float64)
        group_id = group_id if group_id.size else None
        logs = model.evaluate_metrics(y_true, y_pred,
                                      metrics if metrics is not None else model.validation_metrics,
                                      group_id)
        logs = broadcast_object(dict(logs), src=0)
        logging.info("[Metrics] %s (%d rows from %d ranks)", metric_line(logs), y_pred.size,
                     self.cluster.world_size)
        return logs

    # ------------------------------------------------------------------ weights
    def load_weights(self, model, checkpoint) -> None:
        """Rank 0 reads the checkpoint and broadcasts the weights (other ranks may not see
        rank 0's files)."""
        if self.cluster.is_main:
            model.read_weights(checkpoint)
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


class AllReduceCounter:
    """What DDP all-reduces, counted: a communication hook that does what DDP's default hook
    does (:func:`allreduce_hook`) and adds up the bytes and buckets it hands over.

    ``AllReduceCounter().attach(model._dist)``; read :attr:`bytes` and :attr:`buckets`, and
    :meth:`reset` between measurements (benchmarks and tests of what one step sends).
    """

    def __init__(self):
        self.bytes = 0
        self.buckets = 0

    def reset(self) -> None:
        self.bytes = self.buckets = 0

    def attach(self, parallel: "DataParallel") -> "AllReduceCounter":
        parallel.ddp.register_comm_hook(self, AllReduceCounter._hook)
        return self

    @staticmethod
    def _hook(state: "AllReduceCounter", bucket):
        buffer = bucket.buffer()
        state.bytes += buffer.numel() * buffer.element_size()
        state.buckets += 1
        return allreduce_hook(None, bucket)


def share_sizes(rows: int, world_size: int):
    """Rows of each rank's share of a global batch of ``rows`` (:func:`batch_share`)."""
    return [len(batch_share(np.arange(rows), rank, world_size)) for rank in range(world_size)]


def attach(model, cluster: Cluster, train_gen=None, seed: Optional[int] = None):
    """Wrap ``model`` in DDP for ``cluster`` (nothing happens outside torchrun).

    Rank 0's weights are broadcast to every rank, progress bars are kept to rank 0, and ranks
    other than 0 reseed torch with ``seed + rank`` so their dropout masks differ. The log says
    the world size, the backend, the device and each rank's share of a global batch.

    Returns:
        the :class:`DataParallel` now at ``model._dist`` (None outside torchrun).
    """
    if not cluster.active:
        return None
    parallel = DataParallel(model, cluster)
    model._dist = parallel
    if not cluster.is_main:
        model._verbose = 0
        if seed is not None:
            torch.manual_seed(int(seed) + cluster.rank)
    logging.info("Data parallel (DistributedDataParallel): world size %d, backend %s, device "
                 "%s, process-group timeout %.0f s", cluster.world_size, cluster.backend,
                 model.device, cluster.timeout_s)
    if train_gen is not None:
        batch = int(train_gen.batch_size)
        shares = share_sizes(batch, cluster.world_size)
        last = train_gen.num_samples % batch
        last_note = ""
        if last:
            last_shares = share_sizes(last, cluster.world_size)
            last_note = f"; the last batch of {last} rows: {last_shares}"
            if min(last_shares) == 0:
                last_note += " (an empty share runs one stand-in row with weight 0)"
        logging.info("batch_size %d is the global batch: rank shares %s, rank %d takes %d "
                     "rows%s", batch, shares, cluster.rank, shares[cluster.rank], last_note)
    return parallel
