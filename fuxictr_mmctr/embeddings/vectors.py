"""Row-vector maths every Task-1 component shares: L2 normalisation and PCA to a fixed width."""
from __future__ import annotations

import logging
from typing import Tuple

import numpy as np

logger = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32)


def pca_reduce(x: np.ndarray, dim: int, seed: int) -> Tuple[np.ndarray, float]:
    """PCA of the rows of ``x`` to ``dim`` columns, L2-normalised.

    When there are fewer rows or columns than ``dim`` the kept components are zero-padded to
    ``dim`` (tiny samples), which leaves the norm and the cosines unchanged.

    Returns:
        ``(rows, dim)`` float32 unit rows and the share of variance the components keep.
    """
    from sklearn.decomposition import PCA

    n_comp = min(dim, x.shape[0], x.shape[1])
    if n_comp < dim:
        logger.warning("PCA to %d dims from %d rows x %d columns: keeping %d components, "
                       "zero-padded to %d", dim, x.shape[0], x.shape[1], n_comp, dim)
    pca = PCA(n_components=n_comp, random_state=seed)
    reduced = pca.fit_transform(x.astype(np.float64)).astype(np.float32)
    out = np.zeros((x.shape[0], dim), dtype=np.float32)
    out[:, :n_comp] = reduced
    return l2_normalize(out), float(pca.explained_variance_ratio_.sum())
