"""The build-embeddings pipeline: reads the raw item side, runs the components, writes the file.

Components (sources, teacher, projector, fusion) take arrays and configs and return named
results; this module owns every path, cache folder and file written::

    <work-dir>/features/<kind>-<model>-<hash>/   one FeatureCache per model source
    <work-dir>/tiny_clip/                        the --tiny-clip model
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, DataValidationError, require
from .cache import FeatureCache, cache_fingerprint, image_file_stats
from .data import (CorpusStats, ItemSide, SequenceCorpus, check_vector_column, read_item_side,
                   read_vector_column)
from .device import rank_device, resolve_device
from .encoders import Encoder, load_encoder
from .encoders.vlm import DEFAULT_PROMPT, check_prompt
from .export import report_path_for, write_item_info, write_report
from .extract import extract_features
from .fusion import FUSIONS, FusionConfig, FusionResult, SRC_STUDENT, fuse
from .images import IMAGE_OK, STATUS_NAMES
from .projector import ProjectorConfig, ProjectorResult, train_projector
from .shards import extract_across_ranks
from .sources import (Content, SourceResult, SourceSpec, column_source, combine_sources,
                      image_counts, parse_sources)
from .student import StudentConfig
from .teacher import IMPUTED, SEQUENCE, TeacherConfig, TeacherResult, train_teacher
from .tiny import build_tiny_clip

logger = logging.getLogger(__name__)

DATASET_DIR = "MicroLens_1M_x1"
FEATURES = "features"
DEFAULT_SOURCES = ("clip",)
# fusions that fall back on the teacher where the content has nothing
TEACHER_FUSIONS = ("gate", "mean", "teacher")


@dataclass
class BuildConfig:
    """Where the inputs are, where the outputs go, and the component settings.

    Args:
        data_dir: the MicroLens root holding ``item_seq.parquet``, ``item_images/``,
            ``item_feature.parquet`` and ``MicroLens_1M_x1/item_info.parquet``.
        item_seq, item_images, item_feature, item_info: override one input path each.
        out: output parquet. Default: ``item_info_task1.parquet`` beside the input item_info.
        work_dir: cache folder (feature memmaps, done-masks, the tiny CLIP). Default:
            ``<out stem>_work/`` beside ``out``.
        sources: the student's sources, ``KIND[:NAME][:OPTIONS]`` strings or
            :class:`~.sources.SourceSpec` (see :mod:`.sources`). Default: ``("clip",)``, the
            CLIP model ``student.clip``.
        fusion: ``gate``, ``mean``, ``pca``, ``teacher`` or ``student``. Default: gate.
        tiny_clip: a ``clip`` source without a model name gets a tiny random CLIP instead of
            ``student.clip`` (demo only).
        vlm_prompt: the text part of a ``vlm`` source's prompt, ``{text}`` = the item text.
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
    sources: Sequence = ()
    fusion: str = "gate"
    tiny_clip: bool = False
    vlm_prompt: str = DEFAULT_PROMPT
    overwrite_input: bool = False
    keep_mod: int = 1
    seed: int = 2024
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)

    def resolved(self) -> "BuildConfig":
        """A copy with every path filled in from ``data_dir`` and the defaults, the sources
        parsed (:class:`~.sources.SourceSpec`, one per column)."""
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
        cfg.sources = parse_sources(self.sources or DEFAULT_SOURCES)
        if any(spec.kind == "vlm" for spec in cfg.sources):
            check_prompt(cfg.vlm_prompt)
        if cfg.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {cfg.fusion!r}; choose one of {FUSIONS}")
        if out.resolve() == item_info.resolve() and not cfg.overwrite_input:
            raise ConfigError(f"--out {out} is the input item_info; pass --overwrite-input to "
                             "replace it")
        return cfg

    @property
    def needs_teacher(self) -> bool:
        return self.fusion != "pca"


@dataclass
class Components:
    """Everything computed before fusion.

    Attributes:
        side: the item side read.
        sources: one result per source, in the configured order.
        content: the sources combined (None until every source is complete).
        teacher, projector, corpus: the behavioural side (None for ``pca``).
        seconds: wall time per stage (``read``, ``sources``, ``teacher``, ...).
    """

    side: ItemSide
    sources: List[SourceResult] = field(default_factory=list)
    content: Optional[Content] = None
    teacher: Optional[TeacherResult] = None
    projector: Optional[ProjectorResult] = None
    corpus: Optional[CorpusStats] = None
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.sources)


@dataclass
class BuildResult:
    """What ``build_embeddings`` did.

    Attributes:
        complete: False when an extraction stopped early (``max_batches``); nothing was
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


def _tiny_clip(cfg: BuildConfig, side: ItemSide, cluster=None) -> str:
    """Build (once) the tiny random CLIP of ``--tiny-clip``; its folder."""
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


def _model_of(cfg: BuildConfig, spec: SourceSpec, side: ItemSide, cluster) -> str:
    """The model a source names; a ``clip`` source without one: ``--clip`` or the tiny CLIP."""
    if spec.name or spec.kind != "clip":
        return spec.name
    return _tiny_clip(cfg, side, cluster) if cfg.tiny_clip else cfg.student.clip


def _extract(cfg: BuildConfig, spec: SourceSpec, encoder: Encoder, side: ItemSide,
             image_dir: Optional[Path], fingerprint: dict, folder: Path, cluster):
    """One model source's features: resumed from its cache, shared out over torchrun ranks."""
    student_cfg = replace(cfg.student, batch_size=spec.option("batch_size",
                                                              cfg.student.batch_size))
    rows = side.num_items + 1
    if cluster is not None and cluster.active:
        student_cfg = replace(student_cfg, device=rank_device(student_cfg.device, cluster),
                              progress=student_cfg.progress and cluster.is_main)
        return extract_across_ranks(encoder, side.texts, image_dir, folder, rows, fingerprint,
                                    student_cfg, cluster)
    cache = FeatureCache(folder, rows, encoder.dim, fingerprint, parts=encoder.parts)
    cache.refresh_images(image_file_stats(image_dir, rows))
    return extract_features(encoder, side.texts, image_dir, cache, student_cfg)


def build_source(cfg: BuildConfig, spec: SourceSpec, side: ItemSide,
                 cluster=None) -> SourceResult:
    """One source's vectors: a column read from item_feature, or a model's features
    extracted (or resumed) into ``<work-dir>/features/<slug>/``.

    Under torchrun every rank takes its share of a model source; a column is read by rank 0
    alone (the other ranks get an empty result).
    """
    t0 = time.perf_counter()
    rows = side.num_items + 1
    if not spec.has_model:
        if cluster is not None and cluster.active and not cluster.is_main:
            return SourceResult(spec, np.zeros((rows, 0), np.float32), np.zeros(rows, bool))
        vectors, mask = read_vector_column(cfg.item_feature, spec.name, side.num_items)
        return column_source(spec, vectors, mask, time.perf_counter() - t0)
    model = _model_of(cfg, spec, side, cluster)
    device = rank_device(cfg.student.device, cluster) if cluster is not None \
        else cfg.student.device
    half = cfg.student.fp16 and resolve_device(device).startswith("cuda")
    encoder = load_encoder(spec.kind, model, dict(spec.options),
                           local_files_only=cfg.student.local_files_only, half=half,
                           vlm_prompt=cfg.vlm_prompt)
    image_dir = Path(cfg.item_images) if encoder.uses_images and cfg.item_images else None
    fingerprint = cache_fingerprint(
        model, side.texts if encoder.uses_texts else [], image_dir,
        tiny=cfg.tiny_clip and spec.kind == "clip" and not spec.name, kind=spec.kind,
        **encoder.settings())
    folder = Path(cfg.work_dir) / FEATURES / spec.slug(model)
    student = _extract(cfg, spec, encoder, side, image_dir, fingerprint, folder, cluster)
    return SourceResult.from_student(spec, student, model, encoder.uses_images,
                                     time.perf_counter() - t0)


def build_components(cfg: BuildConfig, need_teacher: bool = True, cluster=None,
                     reuse: Optional[Components] = None) -> Components:
    """Read the inputs, build (or resume) every source, train teacher and projector.

    Args:
        cfg: a :meth:`BuildConfig.resolved` config.
        need_teacher: train the teacher and the projector (not needed for ``pca``).
        cluster: under torchrun, the job (:class:`fuxictr_mmctr.process_group.Cluster`):
            the ranks share each model source's pass out (:mod:`.shards`); only rank 0 goes on
            to the teacher and projector. Default: one process.
        reuse: components built before from the same inputs: their teacher and the sources
            with the same spec are taken as they are (a benchmark of several variants).
    """
    sharded = cluster is not None and cluster.active
    seconds = {}
    t0 = time.perf_counter()
    side = reuse.side if reuse is not None else read_item_side(cfg.item_info, cfg.item_feature)
    seconds["read"] = time.perf_counter() - t0
    comp = Components(side=side, seconds=seconds)
    done = {str(s.spec): s for s in reuse.sources} if reuse is not None else {}
    t0 = time.perf_counter()
    for spec in cfg.sources:
        result = done.get(str(spec)) or build_source(cfg, spec, side,
                                                     cluster if sharded else None)
        comp.sources.append(result)
        if not result.complete:
            break
    seconds["sources"] = time.perf_counter() - t0
    if not comp.complete or (sharded and not cluster.is_main):
        return comp
    comp.content = combine_sources(comp.sources, cfg.seed)
    if not need_teacher:
        return comp

    t0 = time.perf_counter()
    if reuse is not None and reuse.teacher is not None:
        comp.teacher, comp.corpus = reuse.teacher, reuse.corpus
    else:
        corpus = SequenceCorpus(cfg.item_seq, side.num_items, keep_mod=cfg.keep_mod)
        comp.teacher = train_teacher(corpus, side.tags, cfg.teacher)
        comp.corpus = corpus.stats
    seconds["teacher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    comp.projector = train_projector(comp.content.vectors, comp.content.mask,
                                     comp.teacher.vectors, comp.teacher.mask, cfg.projector)
    seconds["projector"] = time.perf_counter() - t0
    return comp


def check_coverage(comp: Components, method: str) -> None:
    """Every real item needs a vector: a source's feature, or (fusions that use it) the
    teacher's.

    Raises:
        ConfigError: naming how many items have none, a few of them, and the fix.
    """
    covered = comp.content.mask.copy()
    if method in TEACHER_FUSIONS and comp.teacher is not None:
        covered |= comp.teacher.mask
    missing = np.flatnonzero(~covered[1:]) + 1
    if missing.size:
        raise ConfigError(
            f"{missing.size} item(s) (e.g. {missing[:5].tolist()}) have no vector: no source "
            "gives them a feature (an image-only source where the image is missing or unusable, "
            "a column without their row)"
            + (" and the teacher has none" if method in TEACHER_FUSIONS else
               f" and fusion {method!r} does not use the teacher")
            + "; add a source that covers every item, e.g. a text source or --source clip",
            option="--source")


def fuse_components(comp: Components, method: str, seed: int = 2024, dim: int = 128
                    ) -> FusionResult:
    """Fuse already computed components with ``method``."""
    check_coverage(comp, method)
    cfg = FusionConfig(method=method, dim=dim, seed=seed)
    if method == "pca":
        return fuse(cfg, content=comp.content.vectors)
    if comp.teacher is None or comp.projector is None:
        raise ConfigError(f"fusion {method!r} needs the teacher and projector")
    return fuse(cfg, teacher=comp.teacher.vectors, teacher_mask=comp.teacher.mask,
                student=comp.projector.vectors)


def make_report(cfg: BuildConfig, comp: Components, fusion: FusionResult) -> dict:
    """The JSON report: counts per source, projector cosine, gate statistics, timings."""
    images = image_counts(comp.sources)
    fallback = sum(v for k, v in images.items() if k != STATUS_NAMES[IMAGE_OK])
    sources = {"items": comp.side.num_items, "image_fallback": fallback,
               "image_missing": images["image_missing"],
               "image_corrupt": images["image_corrupt"],
               "image_rejected": images["image_rejected"],
               "no_content": int((~comp.content.mask[1:]).sum()),
               "student_only": int((fusion.source[1:] == SRC_STUDENT).sum())}
    uses_teacher = cfg.needs_teacher           # pca is content only
    if comp.teacher is not None and uses_teacher:
        sources["teacher"] = int((comp.teacher.source == SEQUENCE).sum())
        sources["imputed"] = int((comp.teacher.source == IMPUTED).sum())
        sources["no_teacher"] = comp.teacher.counts()["none"]
    clip = next((s for s in comp.sources if s.spec.kind == "clip"), None)
    report = {
        "fusion": cfg.fusion, "input": str(cfg.item_info), "out": str(cfg.out),
        "encoders": [s.report() for s in comp.sources],
        "content_dim": int(comp.content.vectors.shape[1]),
        "clip": clip.model if clip else None, "tiny_clip": cfg.tiny_clip,
        "clip_dim": clip.dim if clip else None,
        "sources": sources, "fusion_sources": fusion.counts(),
        "text": {"empty_titles": comp.side.empty_titles,
                 "missing_in_item_feature": comp.side.missing_in_feature},
        "gate": fusion.gate_stats(),
        "seconds": {k: round(v, 3) for k, v in comp.seconds.items()},
        "seed": cfg.seed,
    }
    if comp.content.explained_variance:
        report["source_pca_explained_variance"] = comp.content.explained_variance
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
    """Everything that can be checked before the (long) extraction: the optional libraries of
    the ``task1`` extra, the input files and columns the sources and the fusion need, and that
    the output and work folders can be written.

    Raises:
        MissingDependencyError: naming the extra to install.
        DataValidationError: a required input file or column is missing.
        ConfigError: an output location cannot be written.
    """
    purpose = "mmctr build-embeddings"
    if any(spec.has_model for spec in cfg.sources):
        require("transformers", "task1", purpose)
    if cfg.tiny_clip and any(s.kind == "clip" and not s.name for s in cfg.sources):
        require("tokenizers", "task1", f"{purpose} --tiny-clip")
    if cfg.needs_teacher:
        require("gensim", "task1", f"{purpose} (the Word2Vec teacher)")
    inputs = [cfg.item_info] + ([cfg.item_seq] if cfg.needs_teacher else [])
    columns = [spec.name for spec in cfg.sources if not spec.has_model]
    if columns:
        inputs.append(cfg.item_feature)
    for path in inputs:
        if not Path(path).is_file():
            raise DataValidationError(path, "file not found")
    for column in columns:
        check_vector_column(cfg.item_feature, column)
    for folder in (Path(cfg.out).parent, Path(cfg.work_dir)):
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or \
                not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError("cannot write here (not a folder, permission denied or read-only)",
                              path=folder)


def build_embeddings(cfg: BuildConfig, cluster=None) -> BuildResult:
    """Run the whole pipeline (see the package docstring). Resumable: rerun after a kill.

    Under torchrun (``cluster``, see :func:`build_components`) every rank encodes its share of
    each model source; rank 0 alone goes on and writes the outputs, the other ranks return a
    result with ``out`` None once the shares are merged.
    """
    cfg = cfg.resolved()
    preflight(cfg)
    start = time.perf_counter()
    comp = build_components(cfg, need_teacher=cfg.needs_teacher, cluster=cluster)
    if cluster is not None and cluster.active and not cluster.is_main:
        return BuildResult(complete=comp.complete, components=comp)
    if not comp.complete:
        last = comp.sources[-1]
        logger.warning("%s: features are incomplete (%d of %d items); nothing written. Rerun "
                       "the same command to resume from %s", last.spec,
                       int(last.student.done[1:].sum()), comp.side.num_items, cfg.work_dir)
        return BuildResult(complete=False, components=comp)
    t0 = time.perf_counter()
    fusion = fuse_components(comp, cfg.fusion, seed=cfg.seed, dim=cfg.teacher.dim)
    comp.seconds["fusion"] = time.perf_counter() - t0
    comp.seconds["total"] = time.perf_counter() - start
    return export(cfg, comp, fusion)
