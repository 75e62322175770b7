"""The torchrun process group and its collectives: the bottom layer every other layer may use.

torchrun (or any ``env://`` launcher) sets ``WORLD_SIZE``; :func:`session` turns that into a
:class:`Cluster` (NCCL on CUDA device ``LOCAL_RANK``, gloo on the CPU) and outside torchrun
yields ``Cluster()``, a plain single process. The collectives carry NumPy arrays and picklable
objects: the loader, the CLIP pass across ranks (:mod:`fuxictr_mmctr.embeddings.shards`) and
data-parallel training (:mod:`fuxictr_mmctr.train.distributed`) all use these, so none of them
reaches up into another layer for them.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, List, Optional

import torch
import torch.distributed as dist

from .errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0


# ---------------------------------------------------------------------------- the process group

@dataclass
class Cluster:
    """Where this process stands in a torchrun job; ``Cluster()`` is a plain single process.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of processes.
        local_rank: rank on this node (the CUDA device index with NCCL).
        backend: ``"nccl"``, ``"gloo"``, or None outside torchrun.
        timeout_s: the process-group timeout of every collective.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def active(self) -> bool:
        """True under torchrun (a process group exists)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def launched_by_torchrun() -> bool:
    """torchrun (or any launcher of ``env://`` rendezvous) sets ``WORLD_SIZE`` for its workers."""
    return "WORLD_SIZE" in os.environ


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        raise ConfigError(f"WORLD_SIZE is set but {name}={os.environ.get(name)!r} is not: start "
                          "data-parallel runs with torchrun") from None


@contextlib.contextmanager
def session(gpu: int = -1, timeout_s: Optional[float] = None, backend: Optional[str] = None,
            final_barrier: bool = True) -> Iterator[Cluster]:
    """The process group of this torchrun job, or ``Cluster()`` outside torchrun.

    Creates the group (NCCL on CUDA device ``LOCAL_RANK`` when ``gpu >= 0``, gloo on the CPU
    when ``gpu == -1``) and destroys it on exit; a group that already exists (a caller made it)
    is used and left alone.

    Args:
        gpu: the ``--gpu`` option: ``>= 0`` for CUDA, -1 for CPU.
        timeout_s: timeout of every collective, in seconds. Default: 1800.
        backend: force a backend (``"gloo"`` for jobs whose collectives carry only small CPU
            objects). Default: chosen from ``gpu``.
        final_barrier: every rank waits for the others before leaving, so that all end
            together. False lets ranks that are done leave while rank 0 goes on alone.

    Raises:
        ConfigError: ``LOCAL_RANK`` names a CUDA device this machine lacks.
    """
    if not launched_by_torchrun():
        yield Cluster()
        return
    timeout_s = float(timeout_s or DEFAULT_TIMEOUT_S)
    world, rank, local_rank = _env_int("WORLD_SIZE"), _env_int("RANK"), _env_int("LOCAL_RANK")
    backend = backend or ("nccl" if gpu >= 0 else "gloo")
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s): start at most that "
                              "many processes per node (--nproc_per_node)", option="--gpu")
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        _import_before_the_group()
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    else:
        backend = dist.get_backend()
    cluster = Cluster(rank=rank, world_size=world, local_rank=local_rank, backend=backend,
                      timeout_s=timeout_s)
    try:
        yield cluster
        if owns and final_barrier:
            dist.barrier()  # everyone ends together: rank 0 has written its files
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()


def _import_before_the_group() -> None:
    """Import ``torch._dynamo`` before the process group exists.

    Imported while a group exists (transformers imports it, so does ``torch.compile``), it keeps
    a reference to the group that :func:`dist.destroy_process_group` cannot drop: the gloo
    threads (``gloo_tcp_loop``, ``pt_gloo_runloop``) then outlive the interpreter and are torn
    down at exit, where now and then one is still joinable and the rank dies of
    ``terminate called without an active exception`` (SIGABRT) after its work is done; torchrun
    then reports the job failed and ends the other ranks (seen in CI: ``torchrun ...
    build-embeddings``, rank 1 leaving while rank 0 trained the teacher). Imported first, it
    holds nothing and ``destroy_process_group`` ends the threads (checked by
    tests/e2e/test_process_group_exit.py)."""
    import torch._dynamo  # noqa: F401  (about 2 s, once per process; the ranks import it anyway)


def configure_logging(cluster: Cluster) -> None:
    """Ranks other than 0 log warnings and errors only, to stderr, prefixed with their rank
    (rank 0 keeps FuxiCTR's log file and console)."""
    logging.basicConfig(level=logging.WARNING, force=True,
                        format=f"[rank {cluster.rank}] %(asctime)s %(levelname)s %(message)s")


# ---------------------------------------------------------------------------- collectives

def _collective_device():
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's picklable ``obj``, in rank order, on every rank."""
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
