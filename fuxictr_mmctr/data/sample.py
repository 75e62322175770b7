"""A MicroLens-shaped sample dataset with a real (latent-factor) signal, made from a seed.

The sample has the same files, columns, dtypes, list lengths and padding as the
MicroLens_1M_x1 distribution of the WWW 2025 MM-CTR challenge, so every reader, loader,
model and script of the package runs on it unchanged::

    OUT/MicroLens_1M_x1/train.parquet    user_id, item_seq (L=100), likes_level, views_level,
                                         item_id, label
    OUT/MicroLens_1M_x1/valid.parquet    same columns
    OUT/MicroLens_1M_x1/test.parquet     same columns without label (ID = row order)
    OUT/MicroLens_1M_x1/item_info.parquet item_id 0..n, item_tags (5), item_emb_d128 (128)
    OUT/item_feature.parquet             item_id, item_title, item_tags, likes_level, views_level,
                                         txt_emb_BERT (768), img_emb_CLIPRN50 (1024)
    OUT/item_emb.parquet                 item_id 0..n, item_emb_d128_{v1,v2,v3,e4} (128 each)
    OUT/item_seq.parquet                 user_id, item_seq (L=100) for embedding learning
    OUT/item_images/<item_id>.jpg        one cover image per item
    OUT/_truth/test_labels.parquet       hidden test labels (not part of the real distribution)
    OUT/truth/{train,valid,test}.parquet item_id, click_prob (the true click probability), label
                                         per row, in split order (never read by training code)
    OUT/_SUCCESS                         manifest (JSON), written last, with the variant, its
                                         knobs, the oracle's AUC / logloss per split, and
                                         (with an item view) the world and item exposure

How the data is generated (nothing here is tuned to a particular model), one module per
concern, composed by :func:`make_sample`:

* :mod:`.sample_world`: the sizes (:data:`PRESETS`) and the latent item world: items have
  latent vectors ``v_i`` (dim 16) around cluster (category) centres, a Zipf popularity and a
  quality score; the :class:`~.sample_world.Variant` protocol a variant implements; and the
  item views (:data:`WORLDS`, ``world=``), a third axis: how much of what drives clicks the
  item content shows (an audience only co-watching reveals; ``item_emb_d128`` the PCA of the
  text and image vectors, as on the real data).
* the variants, user and row processes over that world: :mod:`.sample_static` (``static``: one
  fixed taste-drawn history per user, ``label ~ Bernoulli(sigmoid(1.6 z(<u, v_i>) + 0.6 q_i +
  0.6 b_u + 0.25 z(likes) + offset))``, the history's mean a sufficient statistic) and
  :mod:`.dynamics` (``dynamic``: every row its own history from a session process with
  multi-interest users, session drift, repeats, popularity skew and noisy multimodal views, and
  a label that depends on the order of that history; each mechanism has a strength knob).
* :mod:`.sample_files`: the writers. Each cluster owns a block of tag ids and a title
  vocabulary; the image colours and stripes are a deterministic function of ``v_i`` plus pixel
  noise; the item embeddings are noisy linear projections of ``v_i``.
* :mod:`.sample_store`: the staging folder, the manifest and reuse.

Everything is drawn from ``np.random.SeedSequence(seed)`` streams, so the same seed gives
byte-identical parquet files. Files are built in a staging directory beside ``OUT`` and moved
into place before the manifest is written; a sample without manifest is incomplete.

Command line::

    mmctr make-sample --out data/sample --preset default [--seed 2025] [--no-images] [--force]
        [--variant static|dynamic] [--recency S] [--repeat S] [--session S] [--multi-interest S]
        [--popularity S] [--multimodal-noise S] [--world classic|good|partial]
        [--content-share X] [--content-noise X] [--communities N] [--topic-impressions X]
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from ..errors import ConfigError
from ..io import PathLike
from .dynamics import Dynamics
from .dynamics import build as build_dynamic
from .sample_files import (FeatureVectors, content_pca, item_embeddings, item_exposure,
                           item_tags, oracle_metrics, read_truth, titles, write_images,
                           write_item_emb, write_item_feature, write_item_info, write_item_seq,
                           write_split)
from .sample_static import StaticVariant
from .sample_store import (DATASET_DIR, FORMAT_VERSION, MANIFEST_NAME, SampleExistsError,
                           SampleInfo, existing_sample, info_from_manifest, move_into_place,
                           relative_paths, staging_dir, write_manifest)
from .sample_world import PRESETS, WORLDS, ItemView, SamplePreset, Variant

__all__ = ["DATASET_DIR", "MANIFEST_NAME", "PRESETS", "VARIANTS", "WORLDS", "ItemView",
           "SampleExistsError", "SampleInfo", "SamplePreset", "make_sample"]

logger = logging.getLogger(__name__)

# name -> builder (preset, seed, dynamics knobs or None, item view or None) of each variant
VARIANTS: Dict[str, Callable[[SamplePreset, int, Optional[Dynamics], Optional[ItemView]],
                             Variant]] = {
    "static": lambda preset, seed, _knobs, view: StaticVariant.build(preset, seed, view),
    "dynamic": lambda preset, seed, knobs, view: build_dynamic(preset, seed,
                                                               knobs or Dynamics(), view),
}


def resolve_world(world: Union[str, ItemView, None]) -> Tuple[str, Optional[ItemView]]:
    """``(name, view)`` of a world given by name (a key of :data:`WORLDS`), as an
    :class:`ItemView` (named after the world it equals, else ``custom``), or None (classic).

    Raises:
        ConfigError: an unknown name.
    """
    if world is None:
        return "classic", None
    if isinstance(world, ItemView):
        return next((k for k, v in WORLDS.items() if v == world), "custom"), world
    if world not in WORLDS:
        raise ConfigError(f"unknown world {world!r}; available: {list(WORLDS)}",
                          option="--world")
    return world, WORLDS[world]


def _write_item_side(variant: Variant, stage: Path, rel: Dict[str, str],
                     item_vectors: bool) -> None:
    """item_info, item_emb and item_feature of the variant's item world."""
    world = variant.world
    latent, noise = variant.view_latent(), variant.view_noise
    features = FeatureVectors(world, latent, noise)
    embs = item_embeddings(world, latent, noise)
    if world.view is not None:
        embs["item_emb_d128"] = content_pca(features)  # as on the real data
    tags = item_tags(world)
    write_item_info(world, stage / rel["item_info"], tags, embs.pop("item_emb_d128"))
    write_item_emb(stage / rel["item_emb"], embs)
    del embs
    write_item_feature(world, stage / rel["item_feature"], tags, titles(world),
                       features if item_vectors else None)


def make_sample(out_dir: PathLike, preset: str = "default", seed: int = 2025,
                images: bool = True, force: bool = False,
                item_vectors: bool = True, variant: str = "static",
                dynamics_knobs: Optional[Dynamics] = None,
                world: Union[str, ItemView, None] = None) -> SampleInfo:
    """Write a MicroLens-shaped sample dataset under ``out_dir`` (see the module docstring).

    Args:
        out_dir: the sample root; ``MicroLens_1M_x1/`` and the item-side files go under it.
        preset: a key of :data:`PRESETS` (``tiny``, ``default``, ``bench``, ``full``).
            Default: default.
        seed: seed of every random draw; the same seed gives identical parquet bytes.
            Default: 2025.
        images: write ``item_images/<item_id>.jpg``. Default: True.
        force: regenerate even when a complete sample is present, and overwrite a sample made
            with another preset/seed. Default: False.
        item_vectors: include ``txt_emb_BERT`` (768) and ``img_emb_CLIPRN50`` (1024) in
            item_feature.parquet (about 650 MB in memory-chunks for ``full``). Default: True.
        variant: ``static`` (a fixed taste match; the history mean is sufficient) or
            ``dynamic`` (clicks depend on the order of the history:
            :mod:`fuxictr_mmctr.data.dynamics`). Default: static.
        dynamics_knobs: strengths of the dynamic mechanisms (``dynamic`` only). Default:
            ``Dynamics()``.
        world: how much of what drives clicks the item content shows: a key of
            :data:`WORLDS` (``classic``, ``good``, ``partial``) or an :class:`ItemView`
            (:mod:`fuxictr_mmctr.data.sample_world`). Its knobs and name, and the items'
            exposure (train rows and item_seq tokens per item), go into the manifest.
            Default: None, the classic sample.

    Returns:
        SampleInfo with the paths, counts and oracle metrics; ``created`` is False when a
        complete sample made with the same settings was already there (nothing is written).

    Raises:
        ConfigError: unknown preset, variant or world, knobs given for the static variant.
        SampleExistsError: ``out_dir`` holds a different sample, or a train split without a
            manifest, and ``force`` is False.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; available: {list(VARIANTS)}",
                          option="--variant")
    if variant == "static" and dynamics_knobs is not None:
        raise ConfigError("dynamics knobs apply to the dynamic variant only",
                          option="--variant")
    knobs = (dynamics_knobs or Dynamics()).to_dict() if variant == "dynamic" else {}
    world_name, view = resolve_world(world)
    world_spec = {"name": world_name, **view.to_dict()} if view is not None else None
    seed = int(seed)
    out_dir = Path(out_dir)
    if not force:
        existing = existing_sample(out_dir, preset, seed, images, item_vectors, variant, knobs,
                                   world_spec)
        if existing is not None:
            logger.info("Sample %s (preset %s, seed %d, %s) already complete; nothing to do "
                        "(force=True regenerates)", out_dir, preset, seed, variant)
            return existing
    p = PRESETS[preset]
    t0 = time.perf_counter()
    logger.info("Making the %s %s sample (seed %d, %s world) in %s: %d items, %d users, "
                "%d/%d/%d rows", variant, preset, seed, world_name, out_dir, p.n_items,
                p.n_users, p.n_train, p.n_valid, p.n_test)
    process = VARIANTS[variant](p, seed, dynamics_knobs, view)
    rel = relative_paths(images)
    counts: Dict[str, int] = {}
    with staging_dir(out_dir) as stage:
        for folder in (DATASET_DIR, "_truth", "truth"):
            (stage / folder).mkdir()
        _write_item_side(process, stage, rel, item_vectors)
        counts["items"] = p.n_items
        logger.info("item side written (%.1fs)", time.perf_counter() - t0)
        positives = {}
        for split, n_rows in (("train", p.n_train), ("valid", p.n_valid), ("test", p.n_test)):
            counts[split], positives[split] = write_split(
                process, stage / rel[split], n_rows, split, with_label=split != "test",
                truth_path=stage / rel[f"truth_{split}"],
                labels_path=stage / rel["test_labels"] if split == "test" else None)
        pos = positives["train"]
        oracle = {split: oracle_metrics(*read_truth(stage, split))
                  for split in ("train", "valid", "test")}
        logger.info("splits written (%.1fs), train positive rate %.3f, oracle valid AUC %.4f",
                    time.perf_counter() - t0, pos / max(p.n_train, 1), oracle["valid"]["AUC"])
        counts["item_seq"] = write_item_seq(process, stage / rel["item_seq"])
        counts["users"] = p.n_users
        logger.info("item_seq written (%.1fs)", time.perf_counter() - t0)
        counts["images"] = write_images(process.world, stage / rel["item_images"]) \
            if images else 0
        if images:
            logger.info("%d images written (%.1fs)", counts["images"], time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        manifest = {"format_version": FORMAT_VERSION, "preset": preset, "seed": seed,
                    "variant": variant, "dynamics": process.knobs(), "oracle": oracle,
                    "images": images, "item_vectors": item_vectors,
                    "preset_sizes": asdict(process.world.preset), "counts": counts,
                    "positive_rate": round(pos / max(p.n_train, 1), 6), "paths": rel}
        if world_spec is not None:  # (the classic manifest stays as it was)
            manifest["world"] = world_spec
            manifest["item_exposure"] = item_exposure(stage, p.n_items)
        move_into_place(stage, out_dir, rel)
        write_manifest(out_dir, manifest)
    logger.info("Sample %s complete in %.1fs", out_dir, seconds)
    return info_from_manifest(out_dir, manifest, created=True, seconds=seconds)
