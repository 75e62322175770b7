"""The student's sources: what each one is (``KIND[:NAME][:OPTIONS]``), and how their features
become one content vector per item.

Kinds:

- ``clip``: both towers of a CLIP-like model (CLIP, SigLIP), image and text summed, the text
  alone where the image fails (today's default; NAME defaults to ``--clip``);
- ``image``: an image model: one tower of CLIP/SigLIP, or any vision ``AutoModel``
  (``pooling=pooled|mean``);
- ``text``: a text model: the text tower of CLIP/SigLIP, a BERT-family ``AutoModel`` or a
  sentence-transformers folder (``pooling=mean|cls|max|lasttoken|mean_sqrt_len|pooled``,
  ``max_length=N``, ``layer=N``);
- ``vlm``: a vision-language model's hidden states (``layer=N``, default -2; ``max_side=N``);
- ``columns``: precomputed vector columns of ``item_feature.parquet`` with no model (NAME: the
  columns, comma-separated; default ``txt_emb_BERT,img_emb_CLIPRN50``), one source per column.

Every kind takes ``dim=N`` (reduce this source by PCA to N before the concatenation) and the
model kinds ``batch_size=N``. The sources' unit vectors are concatenated, each block weighing
the same; the pipeline then reduces them by PCA or projects them into the teacher's space.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError
from .data import DEFAULT_VECTOR_COLUMNS
from .images import STATUS_NAMES
from .student import StudentResult
from .vectors import l2_normalize, pca_reduce

OPTION = "--source"
INT_OPTIONS = ("dim", "batch_size", "layer", "max_side", "max_length")
KIND_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "clip": ("dim", "batch_size"),
    "image": ("dim", "batch_size", "pooling"),
    "text": ("dim", "batch_size", "pooling", "max_length", "layer"),
    "vlm": ("dim", "batch_size", "layer", "max_side"),
    "columns": ("dim",),
}
KINDS = tuple(KIND_OPTIONS)
SPEC_HELP = ("KIND[:NAME][:OPTIONS] with KIND one of " + ", ".join(KINDS)
             + " and OPTIONS key=value pairs separated by commas")


@dataclass(frozen=True)
class SourceSpec:
    """One source of item features.

    Args:
        kind: one of :data:`KINDS`.
        name: the model's Hub name or local folder; for ``columns`` the column(s),
            comma-separated. Empty: the kind's default (``clip``: ``--clip``; ``columns``:
            ``txt_emb_BERT`` and ``img_emb_CLIPRN50``).
        options: ``(key, value)`` pairs, sorted, values as typed (see :data:`KIND_OPTIONS`).
    """

    kind: str
    name: str = ""
    options: Tuple[Tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "SourceSpec":
        """``KIND[:NAME][:OPTIONS]``, e.g. ``text:/models/bge-small:pooling=cls`` or ``columns``.

        Raises:
            ConfigError: an unknown kind or option, or a value of the wrong type.
        """
        text = str(text).strip()
        kind, _, rest = text.partition(":")
        kind = kind.strip().lower()
        if kind not in KIND_OPTIONS:
            raise ConfigError(f"{text!r}: unknown source kind {kind!r}; expected {SPEC_HELP}",
                              option=OPTION)
        name, opts = rest, ""
        head, sep, tail = rest.rpartition(":")
        if sep and "=" in tail:
            name, opts = head, tail
        elif "=" in rest and ":" not in rest and "/" not in rest:
            name, opts = "", rest
        options = {}
        for pair in filter(None, (p.strip() for p in opts.split(","))):
            key, eq, value = pair.partition("=")
            key = key.strip()
            if not eq or key not in KIND_OPTIONS[kind]:
                raise ConfigError(f"{text!r}: {pair!r} is not an option of a {kind} source "
                                  f"(its options: {', '.join(KIND_OPTIONS[kind])})",
                                  option=OPTION)
            if key in INT_OPTIONS:
                try:
                    options[key] = int(value)
                except ValueError:
                    raise ConfigError(f"{text!r}: {key} must be an integer, got {value!r}",
                                      option=OPTION) from None
            else:
                options[key] = value.strip()
        for key in ("dim", "batch_size", "max_side", "max_length"):
            if key in options and options[key] < 1:
                raise ConfigError(f"{text!r}: {key} must be at least 1", option=OPTION)
        if kind in ("image", "text", "vlm") and not name.strip():
            raise ConfigError(f"{text!r}: a {kind} source names its model (a Hub name or a "
                              "folder)", option=OPTION)
        return cls(kind, name.strip(), tuple(sorted(options.items())))

    def option(self, key: str, default=None):
        return dict(self.options).get(key, default)

    def columns(self) -> Tuple["SourceSpec", ...]:
        """A ``columns`` source as one source per column (others: itself)."""
        if self.kind != "columns":
            return (self,)
        names = [c.strip() for c in self.name.split(",") if c.strip()] or \
            list(DEFAULT_VECTOR_COLUMNS)
        return tuple(SourceSpec("columns", c, self.options) for c in names)

    @property
    def has_model(self) -> bool:
        return self.kind != "columns"

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return ":".join([self.kind] + ([self.name] if self.name or opts else [])
                        + ([opts] if opts else []))

    def slug(self, model: str = "") -> str:
        """A folder name for this source's cache: readable, unique per spec and model."""
        tail = re.sub(r"[^A-Za-z0-9._-]+", "_", (model or self.name).rstrip("/").split("/")[-1])
        digest = hashlib.sha1(f"{self}|{model}".encode()).hexdigest()[:8]
        return f"{self.kind}-{tail[:40] or 'default'}-{digest}"


def parse_sources(texts: Sequence) -> Tuple[SourceSpec, ...]:
    """Specs (strings or :class:`SourceSpec`) as a tuple of specs, ``columns`` split per column;
    the same source twice is refused."""
    specs: List[SourceSpec] = []
    for text in texts:
        spec = text if isinstance(text, SourceSpec) else SourceSpec.parse(text)
        specs.extend(spec.columns())
    seen = set()
    for spec in specs:
        if str(spec) in seen:
            raise ConfigError(f"the source {spec} is given twice", option=OPTION)
        seen.add(str(spec))
    return tuple(specs)


@dataclass
class SourceResult:
    """One source's content vector per item.

    Attributes:
        spec: what the source is.
        vectors: ``(N + 1, D)`` float32, unit rows where ``mask``, zeros elsewhere.
        mask: ``(N + 1,)`` bool, items this source gives a feature (row 0 False).
        model: the model's name or folder ("" for a column).
        student: the extraction behind it (model sources), with its timings.
        seconds: wall time to build it in this run (extraction or reading).
        uses_images: whether the source reads the item images.
    """

    spec: SourceSpec
    vectors: np.ndarray
    mask: np.ndarray
    model: str = ""
    student: Optional[StudentResult] = None
    seconds: float = 0.0
    uses_images: bool = False

    @classmethod
    def from_student(cls, spec: SourceSpec, student: StudentResult, model: str,
                     uses_images: bool, seconds: float) -> "SourceResult":
        return cls(spec, student.features(), student.feature_mask(), model, student, seconds,
                   uses_images)

    @property
    def complete(self) -> bool:
        return self.student is None or self.student.complete

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def report(self) -> dict:
        """Its line in the build report: what it is, its coverage and its throughput."""
        out = {"source": str(self.spec), "kind": self.spec.kind,
               "model": self.model or self.spec.name, "dim": self.dim,
               "items_with_feature": int(self.mask[1:].sum()), "seconds": round(self.seconds, 3)}
        if self.student is not None:
            encoded = int(len(self.student.encoded_items))
            out["encoded_this_run"] = encoded
            if encoded and self.student.seconds > 0:
                out["items_per_second"] = round(encoded / self.student.seconds, 1)
            if self.uses_images:
                out.update({k: v for k, v in self.student.counts().items() if k != "encoded"})
        return out


@dataclass
class Content:
    """The sources' vectors side by side: the student's input to PCA or the projector.

    Attributes:
        vectors: ``(N + 1, sum of widths)`` float32; a source's block is zero where it has no
            feature.
        mask: ``(N + 1,)`` bool, items with a feature from at least one source.
        widths: each source's block width, in order.
        explained_variance: source -> share of variance its ``dim=N`` PCA kept.
    """

    vectors: np.ndarray
    mask: np.ndarray
    widths: List[int] = field(default_factory=list)
    explained_variance: Dict[str, float] = field(default_factory=dict)


def combine_sources(results: Sequence[SourceResult], seed: int = 2024) -> Content:
    """Concatenate the sources' unit vectors (after each one's own PCA where it asks for one).

    One source is passed through unchanged.
    """
    blocks, explained = [], {}
    mask = np.zeros(results[0].mask.shape, dtype=bool)
    for res in results:
        vectors = res.vectors
        dim = res.spec.option("dim")
        if dim is not None:
            rows = np.flatnonzero(res.mask)
            vectors = np.zeros((len(res.vectors), dim), dtype=np.float32)
            vectors[rows], explained[str(res.spec)] = pca_reduce(res.vectors[rows], dim, seed)
        blocks.append(vectors)
        mask |= res.mask
    vectors = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    return Content(vectors=vectors, mask=mask, widths=[b.shape[1] for b in blocks],
                   explained_variance=explained)


def column_source(spec: SourceSpec, vectors: np.ndarray, mask: np.ndarray,
                  seconds: float) -> SourceResult:
    """A precomputed column as a source: rows L2-normalised, all-zero rows without a feature."""
    vectors = l2_normalize(vectors)
    mask = mask & (np.abs(vectors).sum(axis=1) > 0)
    mask[0] = False
    vectors[~mask] = 0.0
    return SourceResult(spec, vectors, mask, seconds=seconds)


def image_counts(results: Sequence[SourceResult]) -> Dict[str, int]:
    """Image statuses of the first source that reads images (they all see the same files)."""
    for res in results:
        if res.uses_images and res.student is not None:
            counts = res.student.counts()
            return {name: counts.get(name, 0) for name in STATUS_NAMES.values()}
    return {name: 0 for name in STATUS_NAMES.values()}
