"""Where the Task-1 models run: the device a setting names, and torch's CPU threads meanwhile."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

from ..errors import ConfigError


def resolve_device(device: str = "auto") -> str:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` as a torch device string.

    Raises:
        ConfigError: CUDA is asked for and not available.
    """
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
    return device


def rank_device(device: str, cluster) -> str:
    """Under torchrun, ``auto`` and ``cuda`` mean CUDA device ``LOCAL_RANK`` of this node."""
    if cluster is None or not cluster.active or device not in ("auto", "cuda", "", None):
        return device
    import torch

    return f"cuda:{cluster.local_rank}" if torch.cuda.is_available() else \
        ("cpu" if device in ("auto", "", None) else device)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: leave them), then restore."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
