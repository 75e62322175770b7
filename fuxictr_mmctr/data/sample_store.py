"""Where a sample lies: its layout, the staging folder, the manifest, and reuse.

Files are built in a staging directory beside ``OUT`` and moved into place before the
manifest ``OUT/_SUCCESS`` (JSON) is written, last; a sample without manifest is incomplete.
A complete sample made with the same settings is reused; one made with other settings is
never overwritten without ``force``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional

from ..errors import MMCTRError
from ..io import atomic_path
from .sample_world import PRESETS
from .schema import DATASET_DIR

logger = logging.getLogger(__name__)

MANIFEST_NAME = "_SUCCESS"
FORMAT_VERSION = 2  # 2: truth/<split>.parquet, oracle metrics and the variant in the manifest


class SampleExistsError(MMCTRError, FileExistsError):
    """``out_dir`` already holds data that ``make_sample`` will not overwrite without ``force``."""


@dataclass
class SampleInfo:
    """Where a sample lies and what it holds.

    Attributes:
        out_dir: the sample root (``OUT``).
        data_dir: ``OUT/MicroLens_1M_x1``.
        preset: preset name.
        seed: the seed it was made from.
        paths: file name -> path (``train``, ``valid``, ``test``, ``item_info``,
            ``item_feature``, ``item_emb``, ``item_seq``, ``test_labels``, ``truth_train``,
            ``truth_valid``, ``truth_test``, ``manifest``, and ``item_images`` when images were
            written).
        counts: row counts per file plus ``images`` (0 without images).
        positive_rate: share of positive labels in train.
        images: whether item images were written.
        item_vectors: whether item_feature holds the 768/1024-d vectors.
        created: False when an existing complete sample was reused.
        seconds: generation time (0 when reused).
        variant: ``static`` or ``dynamic``.
        dynamics: the knobs of the dynamic variant (empty for static).
        oracle: per split, the AUC / logloss / positive rate of the true click probability.
        world: the item view's name and knobs (empty for the classic sample).
        item_exposure: train rows and item_seq tokens per item (item-view samples only).
    """

    out_dir: Path
    data_dir: Path
    preset: str
    seed: int
    paths: Dict[str, Path]
    counts: Dict[str, int]
    positive_rate: float
    images: bool = True
    item_vectors: bool = True
    created: bool = True
    seconds: float = 0.0
    variant: str = "static"
    dynamics: Dict[str, float] = field(default_factory=dict)
    oracle: Dict[str, Dict[str, float]] = field(default_factory=dict)
    world: Dict[str, float] = field(default_factory=dict)
    item_exposure: Dict[str, float] = field(default_factory=dict)

    @property
    def images_dir(self) -> Optional[Path]:
        return self.paths.get("item_images")


def relative_paths(images: bool) -> Dict[str, str]:
    """File name -> path relative to the sample root."""
    paths = {
        "train": f"{DATASET_DIR}/train.parquet", "valid": f"{DATASET_DIR}/valid.parquet",
        "test": f"{DATASET_DIR}/test.parquet", "item_info": f"{DATASET_DIR}/item_info.parquet",
        "item_feature": "item_feature.parquet", "item_emb": "item_emb.parquet",
        "item_seq": "item_seq.parquet", "test_labels": "_truth/test_labels.parquet",
        "truth_train": "truth/train.parquet", "truth_valid": "truth/valid.parquet",
        "truth_test": "truth/test.parquet",
    }
    if images:
        paths["item_images"] = "item_images"
    return paths


def _read_manifest(out_dir: Path) -> Optional[dict]:
    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sample_oracle(out_dir) -> Dict[str, Dict[str, float]]:
    """The oracle metrics per split (``{"valid": {"AUC": ...}}``) in the manifest of the
    sample at ``out_dir`` (a dataset's ``data_root``); ``{}`` where there is no sample."""
    manifest = _read_manifest(Path(out_dir))
    return dict((manifest or {}).get("oracle") or {})


def info_from_manifest(out_dir: Path, manifest: dict, created: bool,
                       seconds: float) -> SampleInfo:
    """The :class:`SampleInfo` a manifest describes."""
    rel = manifest["paths"]
    paths = {k: out_dir / v for k, v in rel.items()}
    paths["manifest"] = out_dir / MANIFEST_NAME
    return SampleInfo(out_dir=out_dir, data_dir=out_dir / DATASET_DIR,
                      preset=manifest["preset"], seed=int(manifest["seed"]), paths=paths,
                      counts=dict(manifest["counts"]),
                      positive_rate=float(manifest["positive_rate"]),
                      images=bool(manifest["images"]),
                      item_vectors=bool(manifest["item_vectors"]), created=created,
                      seconds=seconds, variant=manifest.get("variant", "static"),
                      dynamics=dict(manifest.get("dynamics") or {}),
                      oracle=dict(manifest.get("oracle") or {}),
                      world=dict(manifest.get("world") or {}),
                      item_exposure=dict(manifest.get("item_exposure") or {}))


def existing_sample(out_dir: Path, preset: str, seed: int, images: bool,
                    item_vectors: bool, variant: str = "static",
                    knobs: Optional[Dict[str, float]] = None,
                    world: Optional[Dict[str, float]] = None) -> Optional[SampleInfo]:
    """The complete existing sample if it matches the request; raise if something else is
    there; None when there is nothing (or only an incomplete or older-format sample written by
    make_sample) to keep.

    Raises:
        SampleExistsError: ``out_dir`` holds a sample made with other settings, or a train
            split without a manifest.
    """
    manifest = _read_manifest(out_dir)
    if manifest is None:
        if (out_dir / DATASET_DIR / "train.parquet").exists():
            raise SampleExistsError(
                f"{out_dir} already holds {DATASET_DIR}/train.parquet but no {MANIFEST_NAME} "
                "manifest: an incomplete sample or data not written by make_sample; pass "
                "force=True (--force) to overwrite it")
        return None
    want = {"preset": preset, "seed": seed, "variant": variant, "dynamics": knobs or {},
            "world": world or {}}
    have = {"preset": manifest.get("preset"), "seed": manifest.get("seed"),
            "variant": manifest.get("variant", "static"),
            "dynamics": manifest.get("dynamics") or {}, "world": manifest.get("world") or {}}
    lacking = [name for name, asked in (("images", images), ("item_vectors", item_vectors))
               if asked and not manifest.get(name)]
    if have != want or lacking:
        extra = f", without {' and '.join(lacking)}" if lacking else ""
        knob_text = "".join(f", {k}={v}" for k, v in sorted(have["dynamics"].items()))
        had_world = f", world={have['world'].get('name')!r}" if have["world"] else ""
        asked_world = f", world={world.get('name')!r}" if world else ""
        raise SampleExistsError(
            f"{out_dir} holds a sample made with preset={have['preset']!r}, "
            f"seed={have['seed']}, variant={have['variant']!r}{knob_text}{had_world}{extra}; "
            f"asked for preset={preset!r}, seed={seed}, variant={variant!r}{asked_world}: pass "
            "force=True (--force) to regenerate it, or choose another output directory")
    if manifest.get("format_version") != FORMAT_VERSION:
        logger.warning("%s: a sample of format %s (now %d); regenerating", out_dir,
                       manifest.get("format_version"), FORMAT_VERSION)
        return None
    preset_sizes = PRESETS[preset]
    counts = manifest.get("counts") or {}
    stale = {name: (counts.get(name), size) for name, size in (
        ("items", preset_sizes.n_items), ("train", preset_sizes.n_train),
        ("valid", preset_sizes.n_valid), ("test", preset_sizes.n_test))
        if counts.get(name) != size}
    if stale:
        # the preset's sizes changed since this sample was made: it is not what it names
        logger.warning("%s: made when preset %s had other sizes (%s); regenerating", out_dir,
                       preset, ", ".join(f"{k} {had} -> {now}" for k, (had, now) in
                                         sorted(stale.items())))
        return None
    missing = [v for v in manifest["paths"].values() if not (out_dir / v).exists()]
    if missing:
        logger.warning("%s: manifest present but %s missing; regenerating", out_dir, missing)
        return None
    return info_from_manifest(out_dir, manifest, created=False, seconds=0.0)


@contextlib.contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside ``out_dir`` (same file system), removed afterwards."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into_place(staging: Path, out_dir: Path, rel_paths: Dict[str, str]) -> None:
    """Move every generated file (and the image folder) from staging onto its final name.

    The old manifest is removed first, so an interruption leaves a sample that reads as
    incomplete; each file arrives by one ``os.replace`` and is never half-written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out_dir / MANIFEST_NAME).unlink()
    for rel in rel_paths.values():
        src, dst = staging / rel, out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            if dst.exists():
                trash = staging / f".old-{dst.name}"
                os.replace(dst, trash)
            os.replace(src, dst)
        else:
            os.replace(src, dst)
    if "item_images" not in rel_paths and (out_dir / "item_images").is_dir():
        # A regenerated sample without images must not keep the previous sample's covers.
        os.replace(out_dir / "item_images", staging / ".old-item_images")


def write_manifest(out_dir: Path, manifest: dict) -> None:
    """``OUT/_SUCCESS``, written atomically and last: the sample is complete."""
    with atomic_path(out_dir / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the sample is meant to be shared
