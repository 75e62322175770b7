"""The extraction pass: every pending item through an encoder, batch by batch, into the cache.

Images are decoded and preprocessed in DataLoader workers, texts tokenised there too; the model
runs batched under ``torch.inference_mode`` in the main process (fp16 on GPU). Each batch is
written to the :class:`~.cache.FeatureCache` and marked done before the next, so a killed pass
resumes at the first unfinished batch. A missing or unreadable image is logged, counted and
left to the encoder's fallback (the text feature, for CLIP).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .cache import FeatureCache
from .device import available_cpus, resolve_device, torch_threads
from .encoders.base import Encoder, InputsBuilder
from .images import DecodedItem, ItemImages
from .student import StudentConfig, StudentResult

logger = logging.getLogger(__name__)

MAX_LOGGED_ERRORS = 20


def pending_items(done: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Items not yet encoded, in the order they are encoded: by title length (stable), so a
    batch holds titles of similar length and the text tower pads little."""
    pending = np.flatnonzero(~done)
    pending = pending[pending > 0]
    return pending[np.argsort([len(texts[i]) for i in pending], kind="stable")]


def cache_result(cache: FeatureCache, encoded_items: Optional[np.ndarray] = None, **stats
                 ) -> StudentResult:
    """The content of ``cache`` as a :class:`StudentResult` (row 0 zeros, not done);
    ``stats`` fill the counters (``batches``, ``seconds``, ...)."""
    parts = {name: np.asarray(array, dtype=np.float32) for name, array in cache.arrays.items()}
    result = StudentResult(
        parts=parts, image_status=cache.image_status.copy(), done=cache.done.copy(),
        encoded_items=encoded_items if encoded_items is not None else np.zeros(0, np.int64),
        **stats)
    result.done[0] = False
    for array in parts.values():
        array[0] = 0.0
    return result


class _Collate:
    """Runs in the workers: one batch of decoded items -> the model's inputs and bookkeeping."""

    def __init__(self, build_inputs: InputsBuilder):
        self.build_inputs = build_inputs

    def __call__(self, batch: Sequence[DecodedItem]) -> dict:
        t0 = time.perf_counter()
        items = np.array([b.item for b in batch], dtype=np.int64)
        status = np.array([b.status for b in batch], dtype=np.int8)
        errors = [b.error for b in batch if b.error]
        inputs = self.build_inputs(batch, status, errors)
        decode = sum(b.seconds for b in batch) + time.perf_counter() - t0
        return {"items": items, "status": status, "errors": errors, "inputs": inputs,
                "decode_seconds": decode}


@dataclass
class _Pass:
    """What one extraction pass did so far."""

    encoded: List[np.ndarray] = field(default_factory=list)
    batches: int = 0
    wait: float = 0.0
    encode: float = 0.0
    decode: float = 0.0
    unreadable: int = 0

    def log_errors(self, errors: Sequence[str]) -> None:
        for err in errors:
            if self.unreadable < MAX_LOGGED_ERRORS:
                logger.warning("image not used (the item falls back to its text, or has no "
                               "feature from an image-only model): %s", err)
            self.unreadable += 1


def _cpu_threads(cfg: StudentConfig, device: str) -> Optional[int]:
    """torch threads while encoding on CPU: the cores the decoding workers leave free."""
    if device != "cpu":
        return None
    import torch

    return cfg.cpu_threads or min(torch.get_num_threads(),
                                  max(1, available_cpus() - cfg.num_workers))


def _run_batches(encoder: Encoder, texts: Sequence[str], image_dir: Optional[Path],
                 cache: FeatureCache, cfg: StudentConfig, pending: np.ndarray, device: str,
                 run: _Pass) -> None:
    """Encode ``pending`` in batches of ``cfg.batch_size`` (at most ``cfg.max_batches``)."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    transform = encoder.image_transform() if cfg.fast_preprocess else None
    loader = DataLoader(ItemImages(pending, image_dir, transform, cfg.image_limits),
                        batch_size=cfg.batch_size,
                        shuffle=False, num_workers=cfg.num_workers,
                        collate_fn=_Collate(encoder.inputs_builder(texts, transform)),
                        pin_memory=device.startswith("cuda"), persistent_workers=False)
    total = len(loader) if cfg.max_batches is None else min(len(loader), cfg.max_batches)
    bar = tqdm(total=total, desc=encoder.label, unit="batch", disable=not cfg.progress)
    it = iter(loader)
    try:
        while cfg.max_batches is None or run.batches < cfg.max_batches:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            run.wait += t1 - t0
            run.decode += batch["decode_seconds"]
            run.log_errors(batch["errors"])
            parts = encoder.encode(batch["inputs"], batch["status"])
            run.encode += time.perf_counter() - t1
            cache.write(batch["items"], parts, batch["status"])
            run.encoded.append(batch["items"])
            run.batches += 1
            bar.update(1)
    finally:
        bar.close()
        del it
        cache.sync()


def extract_features(encoder: Encoder, texts: Sequence[str], image_dir: Optional[Path],
                     cache: FeatureCache, cfg: Optional[StudentConfig] = None,
                     items: Optional[np.ndarray] = None) -> StudentResult:
    """Encode every item not yet done in ``cache``; return the cache content.

    Args:
        encoder: the model (e.g. :class:`~.encoders.clip.ClipEncoder`).
        texts: ``N + 1`` item texts (row 0 unused).
        image_dir: folder of ``<item_id>.jpg``; None (a text model) or a missing folder
            (logged) makes every image missing.
        cache: the feature cache (from the pipeline), ``rows == len(texts)``, with the
            encoder's parts.
        cfg: batch size, workers, device, ``max_batches``.
        items: encode only these items (those not done yet), in this order, in batches of
            ``cfg.batch_size`` (a rank's share, see :mod:`.shards`). Default: every pending
            item in :func:`pending_items` order.
    """
    cfg = cfg or StudentConfig()
    if len(texts) != cache.rows:
        raise ConfigError(f"{len(texts)} texts for a cache of {cache.rows} rows")
    start = time.perf_counter()
    if image_dir is not None and not Path(image_dir).is_dir():
        logger.warning("image folder %s not found: every item falls back to its text feature",
                       image_dir)
        image_dir = None
    image_dir = Path(image_dir) if image_dir is not None else None
    device = resolve_device(cfg.device)
    encoder.place(device, cfg.fp16)
    if items is None:
        pending = pending_items(cache.done, texts)
    else:
        items = np.asarray(items, dtype=np.int64)
        pending = items[~cache.done[items]]
    run = _Pass()
    if pending.size:
        with torch_threads(_cpu_threads(cfg, device)):
            _run_batches(encoder, texts, image_dir, cache, cfg, pending, device, run)
    if run.unreadable > MAX_LOGGED_ERRORS:
        logger.warning("... %d unusable images in all", run.unreadable)
    result = cache_result(
        cache, np.concatenate(run.encoded) if run.encoded else None, batches=run.batches,
        seconds=time.perf_counter() - start, wait_seconds=run.wait, encode_seconds=run.encode,
        decode_seconds=run.decode)
    if items is not None:
        left = int((~cache.done[items]).sum())
        logger.info("%s: %d batches of this share encoded in %.1fs; %d of its %d items left",
                    encoder.label, run.batches, result.seconds, left, len(items))
    else:
        logger.info("%s: %d batches encoded this run in %.1fs; %s%s", encoder.label,
                    run.batches, result.seconds, result.counts(),
                    "" if result.complete else " (INCOMPLETE: rerun to resume)")
    return result
