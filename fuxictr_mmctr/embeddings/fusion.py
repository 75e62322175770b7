"""Fusion of the behavioural teacher and the content student into one vector per item.

``gate`` (default): ``g = clamp((cos(t, s) + 1) / 2, 0, 1)``, ``v = normalize(g t + (1 - g) s)``;
where the teacher is missing, ``v = s``. Alternatives: ``mean`` (0.5 content + 0.5 behaviour),
``pca`` (CLIP text+image mean reduced by PCA), ``teacher`` and ``student``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from ..errors import ConfigError
from .vectors import l2_normalize, pca_reduce

logger = logging.getLogger(__name__)

FUSIONS = ("gate", "mean", "pca", "teacher", "student")

# values of FusionResult.source
SRC_PADDING, SRC_FUSED, SRC_TEACHER, SRC_STUDENT, SRC_CONTENT_PCA = 0, 1, 2, 3, 4
SOURCE_NAMES = {SRC_FUSED: "fused", SRC_TEACHER: "teacher_only", SRC_STUDENT: "student_only",
                SRC_CONTENT_PCA: "content_pca"}


@dataclass
class FusionConfig:
    """Fusion settings.

    Args:
        method: one of ``gate``, ``mean``, ``pca``, ``teacher``, ``student``. Default: gate.
        dim: output dimension (``pca`` only; the others keep the teacher's). Default: 128.
        seed: PCA seed. Default: 2024.
    """

    method: str = "gate"
    dim: int = 128
    seed: int = 2024


@dataclass
class FusionResult:
    """Fused vectors indexed by item_id.

    Attributes:
        vectors: ``(N + 1, dim)`` float32, row 0 zeros, other rows unit norm.
        source: ``(N + 1,)`` int8, what each row came from (``SOURCE_NAMES``).
        gate: ``(N + 1,)`` float32 gate values (NaN where no gate applied).
    """

    vectors: np.ndarray
    source: np.ndarray
    gate: np.ndarray

    def gate_stats(self) -> Dict[str, float]:
        g = self.gate[np.isfinite(self.gate)]
        if g.size == 0:
            return {"count": 0}
        q = np.quantile(g, [0.1, 0.5, 0.9])
        return {"count": int(g.size), "mean": float(g.mean()), "std": float(g.std()),
                "min": float(g.min()), "p10": float(q[0]), "p50": float(q[1]),
                "p90": float(q[2]), "max": float(g.max())}

    def counts(self) -> Dict[str, int]:
        return {name: int((self.source == code).sum()) for code, name in SOURCE_NAMES.items()}


def cosine_gate(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``clamp((cos(t, s) + 1) / 2, 0, 1)`` row-wise."""
    cos = (l2_normalize(t) * l2_normalize(s)).sum(axis=1)
    return np.clip((cos + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)


def fuse(cfg: FusionConfig, teacher: Optional[np.ndarray] = None,
         teacher_mask: Optional[np.ndarray] = None, student: Optional[np.ndarray] = None,
         content: Optional[np.ndarray] = None) -> FusionResult:
    """Combine teacher and student vectors with ``cfg.method``.

    Args:
        cfg: fusion settings.
        teacher: ``(N + 1, D)`` teacher vectors, valid where ``teacher_mask``.
        teacher_mask: ``(N + 1,)`` bool.
        student: ``(N + 1, D)`` projected student vectors (every item but row 0).
        content: ``(N + 1, P)`` raw CLIP content features (``pca`` only).

    Every real item gets a vector: where the teacher is missing the student is used (also
    for ``teacher``, so no row is left empty); ``student`` and ``pca`` ignore the teacher.

    Raises:
        ValueError: unknown method or an input the method needs is missing.
    """
    method = cfg.method
    if method not in FUSIONS:
        raise ConfigError(f"unknown fusion {method!r}; choose one of {FUSIONS}")
    if method == "pca":
        if content is None:
            raise ConfigError("fusion 'pca' needs the CLIP content features")
        rows = content.shape[0]
        vectors = np.zeros((rows, cfg.dim), dtype=np.float32)
        vectors[1:], _ = pca_reduce(l2_normalize(content[1:]), cfg.dim, cfg.seed)
        source = np.full(rows, SRC_CONTENT_PCA, dtype=np.int8)
        source[0] = SRC_PADDING
        return FusionResult(vectors, source, np.full(rows, np.nan, np.float32))
    if student is None:
        raise ConfigError(f"fusion {method!r} needs the projected student vectors")
    rows = student.shape[0]
    s = l2_normalize(student)
    gate = np.full(rows, np.nan, np.float32)
    source = np.full(rows, SRC_STUDENT, dtype=np.int8)
    vectors = s.copy()
    if method != "student":
        if teacher is None or teacher_mask is None:
            raise ConfigError(f"fusion {method!r} needs the teacher vectors")
        has = teacher_mask.copy()
        has[0] = False
        t = l2_normalize(teacher[has])
        if method == "teacher":
            vectors[has] = t
            source[has] = SRC_TEACHER
        else:
            g = cosine_gate(t, s[has]) if method == "gate" else np.full(len(t), 0.5, np.float32)
            vectors[has] = l2_normalize(g[:, None] * t + (1.0 - g[:, None]) * s[has])
            # t == -s with g == 0.5 (mean) cancels out: keep the student there
            zero = np.linalg.norm(vectors, axis=1) < 1e-6
            zero[0] = False
            vectors[zero] = s[zero]
            source[has] = SRC_FUSED
            if method == "gate":
                gate[has] = g
    vectors[0] = 0.0
    source[0] = SRC_PADDING
    return FusionResult(vectors.astype(np.float32), source, gate)
