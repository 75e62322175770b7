"""A model source's extraction across the ranks of a torchrun job, each rank writing its own
shard.

::

    torchrun --nproc_per_node 8 -m fuxictr_mmctr.cli build-embeddings --data-dir data \\
        --source clip:/models/clip-vit-base-patch32 --source vlm:/models/Qwen2.5-VL-7B-Instruct \\
        --device cuda

For each model source in turn, the items not yet in its cache (``<work-dir>/features/<slug>``)
are cut into the batches one process would encode (:func:`~.extract.pending_items` order,
``--batch-size`` items each) and rank ``r`` takes batches ``r, r + N, r + 2N, ...`` (every batch
is the one a single process would run, so the features are the same). Each rank writes only to
its own :class:`~.cache.FeatureCache` in ``<slug>/shards/rank<r>/``, done-mask included; no two
ranks ever write one file. After a barrier rank 0 merges the shards into the cache; once every
source is done the rest of the pipeline (columns, teacher, projector, fusion, export) runs on
rank 0 alone while the other ranks leave.

Resume: a run that was killed leaves shards behind; the next run, with any number of ranks,
first merges them into the cache (rank 0, before anyone starts), so nothing encoded is lost and
the remaining items are shared out again. The work dir must be one folder every rank sees (one
node, or a shared file system).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..process_group import all_gather_objects, broadcast_object
from .cache import FeatureCache, image_file_stats
from .encoders.base import Encoder
from .extract import cache_result, extract_features, pending_items
from .student import StudentConfig, StudentResult

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
    merged = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            shard = FeatureCache.open_readonly(folder)
        except (OSError, ValueError, KeyError):
            shard = None
        if shard is None or shard.meta != cache.meta:
            logger.warning("feature shard %s was made for other inputs (or is unreadable): "
                           "discarded", folder)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        items = np.flatnonzero(shard.done)
        items = items[~cache.done[items]]
        if items.size:
            cache.write(items, {name: np.asarray(array[items])
                                for name, array in shard.arrays.items()},
                        shard.image_status[items])
        shard.close()
        merged += int(items.size)
    cache.sync()
    shutil.rmtree(root, ignore_errors=True)
    if merged:
        logger.info("feature cache %s: %d items merged from rank shards", cache.folder, merged)
    return merged


def extract_across_ranks(encoder: Encoder, texts: Sequence[str], image_dir: Optional[Path],
                         folder, rows: int, fingerprint: dict, cfg: StudentConfig,
                         cluster) -> StudentResult:
    """:func:`~.extract.extract_features` shared out over the ranks of ``cluster``.

    Before sharing out, rank 0 merges what a killed run left and forgets the rows whose image
    file changed since they were encoded (:meth:`~.cache.FeatureCache.refresh_images`).

    Args:
        encoder, texts, image_dir, cfg: as :func:`~.extract.extract_features`.
        folder: the source's cache folder (``<work-dir>/features/<slug>``), seen by every rank.
        rows, fingerprint: as :class:`~.cache.FeatureCache` (the encoder gives dim and parts).
        cluster: the torchrun job (:class:`fuxictr_mmctr.process_group.Cluster`).

    Returns:
        on rank 0 the merged cache content. On the other ranks the merged done-mask and image
        status with no features (``(rows, 0)`` arrays): enough to agree on
        :attr:`StudentResult.complete` while rank 0 goes on alone.
    """
    def open_cache(where) -> FeatureCache:
        return FeatureCache(where, rows, encoder.dim, fingerprint, parts=encoder.parts)

    cache = None
    if cluster.is_main:
        cache = open_cache(folder)
        merge_shards(cache)                    # what a killed run left behind, then
        cache.refresh_images(image_file_stats(image_dir, rows))   # changed image files
    cluster.barrier()
    done = np.load(Path(folder) / "done.npy")
    mine = rank_batches(pending_items(done, texts), cfg.batch_size, cluster.rank,
                        cluster.world_size)
    logger.info("%s, rank %d of %d: %d items to encode (%d not yet in the cache)",
                encoder.label, cluster.rank, cluster.world_size, len(mine),
                int((~done[1:]).sum()))
    shard = open_cache(shard_folder(folder, cluster.rank))
    part = extract_features(encoder, texts, image_dir, shard, cfg, items=mine)
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
    return StudentResult(parts={name: empty for name in encoder.parts}, image_status=masks[1],
                         done=masks[0], encoded_items=part.encoded_items, batches=part.batches,
                         seconds=part.seconds)
