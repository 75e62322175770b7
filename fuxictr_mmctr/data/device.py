"""Batches onto a CUDA device while the model computes: pinned host memory, side-stream copies.

On the column route a batch of 8192 rows with a history of 64 carries about 270 MB of item
embedding; copied synchronously from pageable memory, the GPU waits for every byte. Here:

* :func:`host_empty` allocates a batch's arrays in page-locked (pinned) memory, so the loader
  gathers straight into memory the GPU can read by DMA;
* :func:`prefetch_to_device` copies batch ``k+1`` with ``non_blocking=True`` on a side CUDA
  stream while the model computes on batch ``k``; the compute stream waits for the copy only
  when it takes the batch.

On the CPU both are no-ops: plain memory, batches passed through.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Tuple, TypeVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")


def loader_device(gpu) -> torch.device:
    """The device a loader feeds: ``cuda:<gpu>`` when ``gpu >= 0`` and CUDA is available (as
    FuxiCTR's ``get_device`` picks the model's), else the CPU."""
    if gpu is not None and int(gpu) >= 0 and torch.cuda.is_available():
        return torch.device("cuda", int(gpu))
    return torch.device("cpu")


def host_empty(shape: Tuple[int, ...], dtype, pin: bool = False) -> Tuple[torch.Tensor, np.ndarray]:
    """An uninitialised host tensor and the NumPy view of its memory (fill the view).

    Args:
        shape: the array's shape.
        dtype: a NumPy dtype (signed ints, float32: every dtype the loader ships).
        pin: allocate in page-locked memory (needs CUDA; torch caches pinned blocks).

    Returns:
        ``(tensor, array)`` sharing memory.

    Unpinned arrays are NumPy's: NumPy backs large arrays with transparent huge pages, and a
    gather into a fresh ``torch.empty`` of 270 MB spends 4x as long in page faults. Pinned
    blocks come from torch's caching host allocator, reused from batch to batch.
    """
    if not pin:
        array = np.empty(shape, dtype=dtype)
        return torch.from_numpy(array), array
    torch_dtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    tensor = torch.empty(shape, dtype=torch_dtype, pin_memory=True)
    return tensor, tensor.numpy()


def tensors(obj) -> Iterator[torch.Tensor]:
    """Every tensor of a nested batch (tuples, lists, dicts)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from tensors(value)
    elif isinstance(obj, (tuple, list)):
        for value in obj:
            yield from tensors(value)


def prefetch_to_device(batches: Iterable[T], device: torch.device,
                       move: Callable[[T, torch.device, bool], T]) -> Iterator[T]:
    """Yield ``move(batch)`` on ``device``, each copied on a side CUDA stream one batch ahead.

    The copy of the next batch is issued (``non_blocking=True``) before the current one is
    handed over, so it overlaps the model's work on the current batch; the consumer's stream
    waits on the side stream before it gets a batch, and every device tensor is marked as used
    by that stream (``record_stream``) so the caching allocator does not reuse its memory early.

    Args:
        batches: host batches (pinned memory for copies that really overlap).
        device: the target; not CUDA: the batches are yielded as they are.
        move: ``move(batch, device, non_blocking)`` -> the batch on ``device``.
    """
    if device.type != "cuda":
        yield from batches
        return
    side = torch.cuda.Stream(device=device)
    source = iter(batches)

    def issue():
        batch = next(source, None)
        if batch is None:
            return None
        with torch.cuda.stream(side):
            return move(batch, device, True)

    ahead = issue()
    while ahead is not None:
        compute = torch.cuda.current_stream(device)
        compute.wait_stream(side)
        for tensor in tensors(ahead):
            if tensor.device.type == "cuda":
                tensor.record_stream(compute)
        ready, ahead = ahead, issue()
        yield ready
