"""Keep FuxiCTR 2.3.7 (the version the official challenge repo asserts) and the newest 2.3.x
working side by side with the newest NumPy, scikit-learn and pandas.

* FuxiCTR 2.3.7 uses ``np.Inf``, which NumPy 2.0 removed: alias it back to ``np.inf``.
* FuxiCTR 2.3.7 computes logloss with ``log_loss(..., eps=1e-7)``, which scikit-learn 1.5+
  rejects: :func:`patch_fuxictr_metrics` makes FuxiCTR's metrics clip to ``eps`` themselves.
* FuxiCTR 2.3.10's ``FeatureMap.set_column_index`` reads ``pretrain_dim`` of every
  ``type: embedding`` feature (``KeyError`` without it); 2.3.7 falls back to ``embedding_dim``.
  :func:`fill_pretrain_dim` gives every such spec its ``pretrain_dim``, so the official dataset
  config (``item_emb_d128`` as ``type: embedding, embedding_dim: 128``) runs on both.
* ``RankDataLoader`` is a class with ``make_iterator()`` in 2.3.7 and a plain function that
  returns the generators in 2.3.8+: :func:`rank_data_loaders` hides the difference.
* pandas < 3 parses csv floats with a fast parser that is not round-trip exact unless asked
  (``float_precision="round_trip"``); pandas 3 is exact by default and deprecates the option:
  pass :data:`EXACT_FLOATS_CSV` to ``read_csv``.
* :func:`versions` names the versions a result was produced with (logs, results file).
"""
from __future__ import annotations

from importlib import metadata
from typing import Dict, Optional

import numpy as np

from . import __version__


# NumPy 1 names removed in 2.0 that FuxiCTR 2.3.7 (``np.Inf`` in ``BaseModel.fit``) and its
# dependency keras_preprocessing (``np.unicode_`` in ``pad_sequences``) still use.
_NUMPY1_ALIASES = {"Inf": np.inf, "unicode_": np.str_}


def patch_numpy() -> None:
    """Restore the NumPy 1 aliases that FuxiCTR 2.3.7 still uses (idempotent)."""
    for name, value in _NUMPY1_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


patch_numpy()


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _pandas_major() -> int:
    major = _installed_version("pandas").split(".")[0]
    return int(major) if major.isdigit() else 0


# ``pd.read_csv(..., **EXACT_FLOATS_CSV)`` reads floats back bit for bit on pandas 2 and 3.
EXACT_FLOATS_CSV = {"float_precision": "round_trip"} if _pandas_major() < 3 else {}


def versions() -> Dict[str, str]:
    """``{name: version}`` of this package and the libraries a result depends on.

    Read from the installed distributions' metadata (no heavy import): ``fuxictr_mmctr``,
    ``fuxictr``, ``torch``, ``numpy``, ``pandas``.
    """
    found = {"fuxictr_mmctr": __version__}
    for name in ("fuxictr", "torch", "numpy", "pandas"):
        found[name] = _installed_version(name)
    return found


def versions_line() -> str:
    """``fuxictr_mmctr 0.1.0 fuxictr 2.3.7 torch 2.13.0 ...``: one field, no commas (FuxiCTR's
    results file is comma-separated)."""
    return " ".join(f"{name} {version}" for name, version in versions().items())


def stored_width(col: dict) -> Optional[int]:
    """The width of a ``type: embedding`` column as its spec states it: ``pretrain_dim``, else
    the official config's ``embedding_dim`` (see :func:`fill_pretrain_dim`); None if neither."""
    for key in ("pretrain_dim", "embedding_dim"):
        if col.get(key) is not None:
            return int(col[key])
    return None


def fill_pretrain_dim(col: dict, width: Optional[int] = None) -> dict:
    """Give a ``type: embedding`` feature spec the ``pretrain_dim`` FuxiCTR 2.3.10 requires.

    The width of the stored column is ``pretrain_dim``; the official config states it as
    ``embedding_dim`` (2.3.7 projects ``Linear(pretrain_dim or embedding_dim, embedding_dim)``,
    so taking ``embedding_dim`` as the width changes nothing there). When the spec has neither,
    ``width`` (the column's width read from the data) is used.

    Args:
        col: one entry of ``feature_cols``; changed in place.
        width: the column's width in the data, if known. Default: None.

    Returns:
        ``col``.
    """
    if col.get("type") != "embedding" or col.get("pretrain_dim") is not None:
        return col
    stated = stored_width(col)
    if stated is not None or width is not None:
        col["pretrain_dim"] = stated if stated is not None else int(width)
    return col


def _log_loss_clipping_eps(log_loss):
    """``log_loss`` that takes FuxiCTR 2.3.7's ``eps`` and clips itself (scikit-learn 1.5+ has
    no ``eps``; clipping to ``[eps, 1 - eps]`` is what older versions did with it)."""

    def wrapped(y_true, y_pred, *args, eps=None, **kwargs):
        if eps is not None and eps != "auto":
            y_pred = np.clip(np.asarray(y_pred, dtype=np.float64), eps, 1 - eps)
        return log_loss(y_true, y_pred, *args, **kwargs)

    wrapped.__wrapped__ = log_loss
    wrapped._mmctr_bridge = True
    return wrapped


def patch_fuxictr_metrics() -> None:
    """Make FuxiCTR's ``evaluate_metrics`` work with any scikit-learn (idempotent).

    FuxiCTR 2.3.7 calls ``log_loss(y_true, y_pred, eps=1e-7)``; scikit-learn removed ``eps``
    in 1.5. ``fuxictr.metrics.log_loss`` is replaced by a wrapper that clips to ``eps`` and
    calls scikit-learn without it: the same value as before on every version.
    """
    import fuxictr.metrics as metrics  # FuxiCTR imports torch: only when a model is built

    if not getattr(metrics.log_loss, "_mmctr_bridge", False):
        metrics.log_loss = _log_loss_clipping_eps(metrics.log_loss)


def rank_data_loaders(feature_map, stage: str, **params):
    """Build FuxiCTR's loaders for ``stage`` (``train``, ``test`` or ``both``) on any 2.3.x.

    Returns what ``make_iterator()`` returns in 2.3.7: ``(train_gen, valid_gen)`` for
    ``train``, ``test_gen`` for ``test``, all three for ``both``.
    """
    from fuxictr.pytorch.dataloaders import RankDataLoader  # torch: only when loaders are built

    result = RankDataLoader(feature_map, stage=stage, **params)
    if hasattr(result, "make_iterator"):  # fuxictr <= 2.3.7
        result = result.make_iterator()
    return result
