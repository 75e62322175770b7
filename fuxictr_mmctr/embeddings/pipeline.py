"""The build-embeddings pipeline: reads the raw item side, runs the components, writes the file.

Components (teacher, student, projector, fusion) take arrays and configs and return named
results; this module owns every path, cache folder and file written.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional

from ..errors import ConfigError, DataValidationError, require

from .data import CorpusStats, ItemSide, SequenceCorpus, read_item_side
from .export import report_path_for, write_item_info, write_report
from .fusion import FUSIONS, FusionConfig, FusionResult, SRC_STUDENT, fuse
from .projector import ProjectorConfig, ProjectorResult, train_projector
from .cache import FeatureCache, cache_fingerprint, image_file_stats
from .device import rank_device
from .encoders.clip import ClipEncoder, load_clip
from .extract import extract_features
from .shards import extract_across_ranks
from .student import StudentConfig, StudentResult
from .teacher import IMPUTED, SEQUENCE, TeacherConfig, TeacherResult, train_teacher
from .tiny import build_tiny_clip

logger = logging.getLogger(__name__)

DATASET_DIR = "MicroLens_1M_x1"


@dataclass
class BuildConfig:
    """Where the inputs are, where the outputs go, and the component settings.

    Args:
        data_dir: the MicroLens root holding ``item_seq.parquet``, ``item_images/``,
            ``item_feature.parquet`` and ``MicroLens_1M_x1/item_info.parquet``.
        item_seq, item_images, item_feature, item_info: override one input path each.
        out: output parquet. Default: ``item_info_task1.parquet`` beside the input item_info.
        work_dir: cache folder (CLIP memmaps, done-masks, the tiny CLIP). Default:
            ``<out stem>_work/`` beside ``out``.
        fusion: ``gate``, ``mean``, ``pca``, ``teacher`` or ``student``. Default: gate.
        tiny_clip: build a tiny random CLIP instead of loading ``student.clip`` (demo only).
        overwrite_input: allow ``out`` to be the input item_info.
        keep_mod: keep users with ``user_id % keep_mod == 0`` for Word2Vec. Default: 1.
        seed: seeds the teacher, the tiny CLIP, the projector and the PCA. Default: 2024.
    """

    data_dir: Optional[Path] = None
    item_seq: Optional[Path] = None
    item_images: Optional[Path] = None
    item_feature: Optional[Path] = None
    item_info: Optional[Path] = None
    out: Optional[Path] = None
    work_dir: Optional[Path] = None
    fusion: str = "gate"
    tiny_clip: bool = False
    overwrite_input: bool = False
    keep_mod: int = 1
    seed: int = 2024
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)

    def resolved(self) -> "BuildConfig":
        """A copy with every path filled in from ``data_dir`` and the defaults."""
        root = Path(self.data_dir) if self.data_dir is not None else None

        def pick(value, default_rel, flag):
            if value is not None:
                return Path(value)
            if root is None:
                raise ConfigError(f"pass --data-dir or {flag}")
            return root / default_rel

        item_info = pick(self.item_info, f"{DATASET_DIR}/item_info.parquet", "--item-info")
        out = Path(self.out) if self.out is not None else \
            item_info.with_name("item_info_task1.parquet")
        work = Path(self.work_dir) if self.work_dir is not None else \
            out.with_name(out.stem + "_work")
        cfg = BuildConfig(**{**self.__dict__})
        cfg.item_info = item_info
        cfg.item_seq = pick(self.item_seq, "item_seq.parquet", "--item-seq")
        cfg.item_images = pick(self.item_images, "item_images", "--item-images")
        cfg.item_feature = pick(self.item_feature, "item_feature.parquet", "--item-feature")
        cfg.out, cfg.work_dir = out, work
        if cfg.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {cfg.fusion!r}; choose one of {FUSIONS}")
        if out.resolve() == item_info.resolve() and not cfg.overwrite_input:
            raise ConfigError(f"--out {out} is the input item_info; pass --overwrite-input to "
                             "replace it")
        return cfg


@dataclass
class Components:
    """Everything computed before fusion."""

    side: ItemSide
    student: StudentResult
    teacher: Optional[TeacherResult] = None
    projector: Optional[ProjectorResult] = None
    corpus: Optional[CorpusStats] = None
    clip: str = ""
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.student.complete


@dataclass
class BuildResult:
    """What ``build_embeddings`` did.

    Attributes:
        complete: False when CLIP extraction stopped early (``max_batches``); nothing was
            written then and a rerun resumes.
        out: the parquet written (None when incomplete).
        report_path: the JSON report (None when incomplete).
        report: the report content.
        fusion: the fused vectors.
    """

    complete: bool
    out: Optional[Path] = None
    report_path: Optional[Path] = None
    report: dict = field(default_factory=dict)
    fusion: Optional[FusionResult] = None
    components: Optional[Components] = None


def _clip_source(cfg: BuildConfig, side: ItemSide, cluster=None) -> str:
    if not cfg.tiny_clip:
        return cfg.student.clip
    folder = Path(cfg.work_dir) / "tiny_clip"
    main = cluster is None or cluster.is_main
    if main:
        logger.warning("=" * 72)
        logger.warning("--tiny-clip: using a TINY RANDOMLY INITIALISED CLIP (%s). Its features "
                       "carry no pretrained meaning; use it for demos and tests only.", folder)
        logger.warning("=" * 72)
        if not (folder / "config.json").exists():
            build_tiny_clip(folder, side.texts[1:], seed=cfg.seed)
    if cluster is not None:
        cluster.barrier()  # the other ranks load what rank 0 built
    return str(folder)


def build_components(cfg: BuildConfig, need_teacher: bool = True, cluster=None) -> Components:
    """Read the inputs, extract (or resume) CLIP features, train teacher and projector.

    Args:
        cfg: a :meth:`BuildConfig.resolved` config.
        need_teacher: train the teacher and the projector (not needed for ``pca``).
        cluster: under torchrun, the job (:class:`fuxictr_mmctr.process_group.Cluster`):
            the ranks share the CLIP pass out (:mod:`.shards`); only rank 0 goes on to the
            teacher and projector. Default: one process.
    """
    sharded = cluster is not None and cluster.active
    seconds = {}
    t0 = time.perf_counter()
    side = read_item_side(cfg.item_info, cfg.item_feature)
    seconds["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clip = _clip_source(cfg, side, cluster if sharded else None)
    encoder = ClipEncoder(*load_clip(clip, local_files_only=cfg.student.local_files_only),
                          name=clip)
    image_dir = Path(cfg.item_images) if cfg.item_images is not None else None
    folder, rows = Path(cfg.work_dir) / "clip_cache", side.num_items + 1
    fingerprint = cache_fingerprint(clip, side.texts, image_dir, cfg.tiny_clip)
    if sharded:
        student_cfg = replace(cfg.student, device=rank_device(cfg.student.device, cluster),
                              progress=cfg.student.progress and cluster.is_main)
        student = extract_across_ranks(encoder, side.texts, image_dir, folder, rows,
                                       fingerprint, student_cfg, cluster)
    else:
        cache = FeatureCache(folder, rows, encoder.dim, fingerprint, parts=encoder.parts)
        cache.refresh_images(image_file_stats(image_dir, rows))
        student = extract_features(encoder, side.texts, image_dir, cache, cfg.student)
    seconds["clip"] = time.perf_counter() - t0
    comp = Components(side=side, student=student, clip=clip, seconds=seconds)
    if not student.complete or not need_teacher or (sharded and not cluster.is_main):
        return comp

    t0 = time.perf_counter()
    corpus = SequenceCorpus(cfg.item_seq, side.num_items, keep_mod=cfg.keep_mod)
    comp.teacher = train_teacher(corpus, side.tags, cfg.teacher)
    comp.corpus = corpus.stats
    seconds["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    comp.projector = train_projector(student.features(), student.done, comp.teacher.vectors,
                                     comp.teacher.mask, cfg.projector)
    seconds["projector"] = time.perf_counter() - t0
    return comp


def fuse_components(comp: Components, method: str, seed: int = 2024, dim: int = 128
                    ) -> FusionResult:
    """Fuse already computed components with ``method``."""
    cfg = FusionConfig(method=method, dim=dim, seed=seed)
    if method == "pca":
        return fuse(cfg, content=comp.student.features())
    if comp.teacher is None or comp.projector is None:
        raise ConfigError(f"fusion {method!r} needs the teacher and projector")
    return fuse(cfg, teacher=comp.teacher.vectors, teacher_mask=comp.teacher.mask,
                student=comp.projector.vectors)


def make_report(cfg: BuildConfig, comp: Components, fusion: FusionResult) -> dict:
    """The JSON report: counts per source, projector cosine, gate statistics, timings."""
    counts = comp.student.counts()
    sources = {"items": comp.side.num_items,
               "image_fallback": counts["image_missing"] + counts["image_corrupt"],
               "image_missing": counts["image_missing"],
               "image_corrupt": counts["image_corrupt"],
               "student_only": int((fusion.source[1:] == SRC_STUDENT).sum())}
    uses_teacher = cfg.fusion != "pca"          # pca is content only
    if comp.teacher is not None and uses_teacher:
        sources["teacher"] = int((comp.teacher.source == SEQUENCE).sum())
        sources["imputed"] = int((comp.teacher.source == IMPUTED).sum())
        sources["no_teacher"] = comp.teacher.counts()["none"]
    report = {
        "fusion": cfg.fusion, "input": str(cfg.item_info), "out": str(cfg.out),
        "clip": comp.clip, "tiny_clip": cfg.tiny_clip, "clip_dim": comp.student.dim,
        "sources": sources, "fusion_sources": fusion.counts(),
        "text": {"empty_titles": comp.side.empty_titles,
                 "missing_in_item_feature": comp.side.missing_in_feature},
        "gate": fusion.gate_stats(),
        "seconds": {k: round(v, 3) for k, v in comp.seconds.items()},
        "seed": cfg.seed,
    }
    if comp.corpus is not None:
        report["item_seq"] = {"users": comp.corpus.users, "tokens": comp.corpus.tokens,
                              "unknown_item_tokens": comp.corpus.unknown_tokens,
                              "keep_mod": cfg.keep_mod}
    if comp.teacher is not None and uses_teacher:
        report["teacher"] = {"pca_explained_variance": comp.teacher.explained_variance,
                             "config": asdict(cfg.teacher)}
    if comp.projector is not None and uses_teacher:
        p = comp.projector
        report["projector"] = {"val_cosine": p.val_cosine, "best_epoch": p.best_epoch,
                               "epochs_run": len(p.train_losses), "n_train": p.n_train,
                               "n_val": p.n_val, "config": asdict(cfg.projector)}
    return report


def export(cfg: BuildConfig, comp: Components, fusion: FusionResult) -> BuildResult:
    """Write the parquet and the report for one fused variant."""
    out = write_item_info(cfg.item_info, cfg.out, fusion.vectors,
                          overwrite_input=cfg.overwrite_input)
    report = make_report(cfg, comp, fusion)
    report_path = write_report(report_path_for(out), report)
    logger.info("Report: %s", report_path)
    return BuildResult(complete=True, out=out, report_path=report_path, report=report,
                       fusion=fusion, components=comp)


def preflight(cfg: BuildConfig) -> None:
    """Everything that can be checked before the (long) CLIP pass: the optional libraries of the
    ``task1`` extra, the input files the chosen fusion needs, and that the output and work
    folders can be written.

    Raises:
        MissingDependencyError: naming the extra to install.
        DataValidationError: a required input file is missing.
        ConfigError: an output location cannot be written.
    """
    need_teacher = cfg.fusion != "pca"
    purpose = "mmctr build-embeddings"
    require("transformers", "task1", purpose)
    if cfg.tiny_clip:
        require("tokenizers", "task1", f"{purpose} --tiny-clip")
    if need_teacher:
        require("gensim", "task1", f"{purpose} (the Word2Vec teacher)")
    inputs = [cfg.item_info] + ([cfg.item_seq] if need_teacher else [])
    for path in inputs:
        if not Path(path).is_file():
            raise DataValidationError(path, "file not found")
    for folder in (Path(cfg.out).parent, Path(cfg.work_dir)):
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or \
                not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError("cannot write here (not a folder, permission denied or read-only)",
                              path=folder)


def build_embeddings(cfg: BuildConfig, cluster=None) -> BuildResult:
    """Run the whole pipeline (see the package docstring). Resumable: rerun after a kill.

    Under torchrun (``cluster``, see :func:`build_components`) every rank encodes its share of
    the CLIP features; rank 0 alone goes on and writes the outputs, the other ranks return a
    result with ``out`` None once the shares are merged.
    """
    cfg = cfg.resolved()
    preflight(cfg)
    start = time.perf_counter()
    comp = build_components(cfg, need_teacher=cfg.fusion != "pca", cluster=cluster)
    if cluster is not None and cluster.active and not cluster.is_main:
        return BuildResult(complete=comp.complete, components=comp)
    if not comp.complete:
        logger.warning("CLIP features are incomplete (%d of %d items); nothing written. Rerun "
                       "the same command to resume from %s", comp.student.counts()["encoded"],
                       comp.side.num_items, cfg.work_dir)
        return BuildResult(complete=False, components=comp)
    t0 = time.perf_counter()
    fusion = fuse_components(comp, cfg.fusion, seed=cfg.seed, dim=cfg.teacher.dim)
    comp.seconds["fusion"] = time.perf_counter() - t0
    comp.seconds["total"] = time.perf_counter() - start
    return export(cfg, comp, fusion)
