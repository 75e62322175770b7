"""CLIP extraction across the ranks of a torchrun job, each rank writing its own shard.

::

    torchrun --nproc_per_node 8 -m fuxictr_mmctr.cli build-embeddings --data-dir data \\
        --clip /models/clip-vit-base-patch32 --device cuda

The items not yet in the cache (``<work-dir>/clip_cache``) are cut into the batches one process
would encode (:func:`~.student.pending_items` order, ``--batch-size`` items each) and rank ``r``
takes batches ``r, r + N, r + 2N, ...`` (every batch is the one a single process would run, so
the features are the same). Each rank writes only to its own :class:`~.student.FeatureCache`
in ``clip_cache/shards/rank<r>/``, done-mask included; no two ranks ever write one file. After
a barrier rank 0 merges the shards into the cache and the rest of the pipeline (teacher,
projector, fusion, export) runs on rank 0 alone while the other ranks leave.

Resume: a run that was killed leaves shards behind; the next run, with any number of ranks,
first merges them into the cache (rank 0, before anyone starts), so nothing encoded is lost and
the remaining items are shared out again. The work dir must be one folder every rank sees (one
node, or a shared file system).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..process_group import all_gather_objects, broadcast_object
from .student import (FeatureCache, StudentConfig, StudentResult, cache_result,
                      extract_clip_features, pending_items)

logger = logging.getLogger(__name__)

SHARDS = "shards"


def rank_batches(pending: np.ndarray, batch_size: int, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s items: batches ``rank, rank + world_size, ...`` of ``pending`` cut into
    batches of ``batch_size``, in order. Put together over the ranks, every item once.

    Args:
        pending: ``(P,)`` items in encoding order.
        batch_size: items per batch.
        rank, world_size: this process's place in the job.

    Returns:
        ``(P_rank,)`` the items of this rank, whole batches in ``pending`` order.
    """
    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    mine = batches[rank::world_size]
    return np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64)


def shard_folder(cache_folder, rank: int) -> Path:
    return Path(cache_folder) / SHARDS / f"rank{rank}"


def merge_shards(cache: FeatureCache) -> int:
    """Copy every finished row of every shard under ``cache`` into it, then delete the shards.

    A shard made for other inputs (another fingerprint) is deleted without merging. Rows are
    written before the cache's done-mask marks them (:meth:`FeatureCache.write`), and a shard
    is deleted only after the cache is synced, so a kill in between merges it again.

    Returns:
        the number of items merged.
    """
    root = Path(cache.folder) / SHARDS
    if not root.is_dir():
        return 0
    want = json.loads((Path(cache.folder) / "meta.json").read_text())
    merged = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            meta = json.loads((folder / "meta.json").read_text())
            done = np.load(folder / "done.npy")
            status = np.load(folder / "image_status.npy")
        except (OSError, ValueError):
            meta = None
        if meta != want:
            logger.warning("CLIP shard %s was made for other inputs (or is unreadable): "
                           "discarded", folder)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        items = np.flatnonzero(done)
        items = items[~cache.done[items]]
        if items.size:
            shape = (cache.rows, cache.dim)
            image = np.memmap(folder / "image.f16", dtype=np.float16, mode="r", shape=shape)
            text = np.memmap(folder / "text.f16", dtype=np.float16, mode="r", shape=shape)
            cache.write(items, np.asarray(image[items]), np.asarray(text[items]), status[items])
            del image, text
        merged += int(items.size)
    cache.sync()
    shutil.rmtree(root, ignore_errors=True)
    if merged:
        logger.info("CLIP cache %s: %d items merged from rank shards", cache.folder, merged)
    return merged


def extract_across_ranks(model, processor, texts: Sequence[str], image_dir: Optional[Path],
                         folder, rows: int, dim: int, fingerprint: dict,
                         cfg: StudentConfig, cluster,
                         image_stats: Optional[np.ndarray] = None) -> StudentResult:
    """:func:`~.student.extract_clip_features` shared out over the ranks of ``cluster``.

    Args:
        model, processor, texts, image_dir, cfg: as :func:`~.student.extract_clip_features`.
        folder: the cache folder (``<work-dir>/clip_cache``), seen by every rank.
        rows, dim, fingerprint: as :class:`~.student.FeatureCache`.
        cluster: the torchrun job (:class:`fuxictr_mmctr.process_group.Cluster`).
        image_stats: rank 0's :func:`~.student.image_file_stats`: after merging what a killed
            run left, rows whose image file changed since are encoded again
            (:meth:`~.student.FeatureCache.refresh_images`).

    Returns:
        on rank 0 the merged cache content. On the other ranks the merged done-mask and image
        status with no features (``(rows, 0)`` arrays): enough to agree on
        :attr:`StudentResult.complete` while rank 0 goes on alone.
    """
    cache = None
    if cluster.is_main:
        cache = FeatureCache(folder, rows, dim, fingerprint)
        merge_shards(cache)                    # what a killed run left behind, then
        if image_stats is not None:            # forget rows whose image file changed since
            cache.refresh_images(image_stats)
    cluster.barrier()
    done = np.load(Path(folder) / "done.npy")
    mine = rank_batches(pending_items(done, texts), cfg.batch_size, cluster.rank,
                        cluster.world_size)
    logger.info("CLIP rank %d of %d: %d items to encode (%d not yet in the cache)",
                cluster.rank, cluster.world_size, len(mine), int((~done[1:]).sum()))
    shard = FeatureCache(shard_folder(folder, cluster.rank), rows, dim, fingerprint)
    part = extract_clip_features(model, processor, texts, image_dir, shard, cfg, items=mine)
    del shard
    stats = all_gather_objects((part.encoded_items, part.batches, part.seconds,
                                part.wait_seconds, part.encode_seconds, part.decode_seconds))
    merged = None
    if cluster.is_main:
        merge_shards(cache)
        merged = cache_result(cache, np.concatenate([s[0] for s in stats]),
                              batches=sum(s[1] for s in stats), seconds=max(s[2] for s in stats),
                              wait_seconds=sum(s[3] for s in stats),
                              encode_seconds=sum(s[4] for s in stats),
                              decode_seconds=sum(s[5] for s in stats))
    masks = broadcast_object((merged.done, merged.image_status) if cluster.is_main else None)
    if cluster.is_main:
        return merged
    empty = np.zeros((rows, 0), dtype=np.float32)
    return StudentResult(image=empty, text=empty, image_status=masks[1], done=masks[0],
                         encoded_items=part.encoded_items, batches=part.batches,
                         seconds=part.seconds)
