"""Task-1 item embeddings: a Word2Vec teacher, a CLIP student, a distilled projector and a
fusion, exported as ``item_emb_d128`` of an item_info.parquet (``mmctr build-embeddings``).

Each component takes a small config dataclass and returns a named result; the pipeline
(:func:`build_embeddings`) owns all file I/O::

    from fuxictr_mmctr.embeddings import BuildConfig, build_embeddings
    result = build_embeddings(BuildConfig(data_dir="data/sample", tiny_clip=True))
"""
from .cache import FeatureCache
from .data import ItemSide, SequenceCorpus, read_item_side
from .encoders import ClipEncoder, ClipUnavailableError, Encoder, load_clip
from .export import check_vectors, write_item_info
from .extract import extract_features
from .fusion import FUSIONS, FusionConfig, FusionResult, cosine_gate, fuse
from .pipeline import (BuildConfig, BuildResult, Components, build_components,
                       build_embeddings, fuse_components)
from .projector import ProjectorConfig, ProjectorResult, distill_loss, train_projector
from .student import StudentConfig, StudentResult
from .teacher import TeacherConfig, TeacherResult, impute_from_tags, train_teacher
from .tiny import build_tiny_clip

__all__ = [
    "BuildConfig", "BuildResult", "Components", "build_components", "build_embeddings",
    "fuse_components", "ItemSide", "SequenceCorpus", "read_item_side", "check_vectors",
    "write_item_info", "FUSIONS", "FusionConfig", "FusionResult", "cosine_gate", "fuse",
    "ProjectorConfig", "ProjectorResult", "distill_loss", "train_projector",
    "ClipEncoder", "ClipUnavailableError", "Encoder", "FeatureCache", "StudentConfig",
    "StudentResult", "build_tiny_clip", "extract_features", "load_clip", "TeacherConfig",
    "TeacherResult", "impute_from_tags", "train_teacher",
]
