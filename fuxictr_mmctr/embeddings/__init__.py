"""Task-1 item embeddings: a Word2Vec teacher, a CLIP student, a distilled projector and a
fusion, exported as ``item_emb_d128`` of an item_info.parquet (``mmctr build-embeddings``).

Each component takes a small config dataclass and returns a named result; the pipeline
(:func:`build_embeddings`) owns all file I/O::

    from fuxictr_mmctr.embeddings import BuildConfig, build_embeddings
    result = build_embeddings(BuildConfig(data_dir="data/sample", tiny_clip=True))
"""
from .data import ItemSide, SequenceCorpus, read_item_side
from .export import check_vectors, write_item_info
from .fusion import FUSIONS, FusionConfig, FusionResult, cosine_gate, fuse
from .pipeline import (BuildConfig, BuildResult, Components, build_components,
                       build_embeddings, fuse_components)
from .projector import ProjectorConfig, ProjectorResult, distill_loss, train_projector
from .student import (ClipUnavailableError, FeatureCache, StudentConfig, StudentResult,
                      build_tiny_clip, extract_clip_features, load_clip)
from .teacher import TeacherConfig, TeacherResult, impute_from_tags, train_teacher

__all__ = [
    "BuildConfig", "BuildResult", "Components", "build_components", "build_embeddings",
    "fuse_components", "ItemSide", "SequenceCorpus", "read_item_side", "check_vectors",
    "write_item_info", "FUSIONS", "FusionConfig", "FusionResult", "cosine_gate", "fuse",
    "ProjectorConfig", "ProjectorResult", "distill_loss", "train_projector",
    "ClipUnavailableError", "FeatureCache", "StudentConfig", "StudentResult", "build_tiny_clip",
    "extract_clip_features", "load_clip", "TeacherConfig", "TeacherResult", "impute_from_tags",
    "train_teacher",
]
