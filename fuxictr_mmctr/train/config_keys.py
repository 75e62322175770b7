"""Which config keys some component reads, and a warning for every other key.

FuxiCTR hands the whole params dict as ``**kwargs`` to the feature processor, the model, the
loaders and ``fit``, and each ignores what it does not know: a misspelt ``max_lenn: 32`` would
silently train with the loader's default ``max_len`` of 100. :func:`warn_unknown_keys` names
such keys, once per process, with the closest known key.

The known keys are derived from the code, not listed by hand, so they follow the components:

* the keyword parameters (those with a default, or keyword-only) of every component that
  receives the params: the model class and its bases up to FuxiCTR's ``BaseModel``,
  ``BaseModel.fit``, :class:`~fuxictr_mmctr.data.loader.MMCTRDataLoader` and FuxiCTR's
  ``RankDataLoader``, :class:`~fuxictr_mmctr.data.features.MMCTRFeatureProcessor`, FuxiCTR's
  ``FeatureProcessor`` (``__init__`` and ``fit``) and ``build_dataset``;
* the keys those components, FuxiCTR's ``FeatureMap.load``, ``set_logger``, the autotuner and :mod:`fuxictr_mmctr.train.experiment` read by name from a params dict
  (``kwargs["verbose"]``, ``params.get("seed")``): found in their source;
* :data:`~fuxictr_mmctr.train.experiment.REQUIRED_KEYS`, ``model_id`` (set by FuxiCTR's
  ``load_config``), and :data:`FUXICTR_BASE_KEYS`: the keys of FuxiCTR's standard ``Base``
  experiment that no library code reads;

less :data:`CALL_ARGUMENTS`, the parameters the callers always pass themselves.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import logging
import re
import sys
from typing import Dict, FrozenSet, Optional, Set

logger = logging.getLogger(__name__)

# Keys of the standard `Base` experiment of FuxiCTR's model zoo (and of the official challenge
# configs) that FuxiCTR 2.3's library code does not read: its example scripts did.
FUXICTR_BASE_KEYS = frozenset({"pickle_feature_encoder", "feature_config"})

# `kwargs["verbose"]`, `params.get("seed")`, `dataset_params["data_format"]`, `para_dict[...]`.
_KEY_READ = re.compile(r"""\b\w*(?:params|kwargs|para_dict)(?:\[|\.get\()\s*["'](\w+)["']""")

# Keyword parameters of the components that their callers always pass themselves: not keys of
# a config (``RankDataLoader(feature_map, stage=..., **params)``, ``DataLoader(..., split=...)``,
# ``fit(train_gen, validation_data=...)``, ``FeatureProcessor.fit(train_ddf=...)``).
CALL_ARGUMENTS = frozenset({"stage", "split", "validation_data", "train_ddf"})

_warned: Set[tuple] = set()


def _reads(func) -> Set[str]:
    """Keys ``func`` takes as keyword parameters or reads by name from its ``**kwargs``."""
    keys = set()
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is param.KEYWORD_ONLY or (
                param.kind is param.POSITIONAL_OR_KEYWORD and param.default is not param.empty):
            keys.add(name)
    return keys | _source_reads(func)


def _source_reads(obj) -> Set[str]:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):  # no source (a compiled or built-in object)
        return set()
    return set(_KEY_READ.findall(source))


def _model_classes(model: Optional[str]):
    """The model class named ``model`` and its bases up to FuxiCTR's ``BaseModel``; every
    registered model when ``model`` is unknown (the registry refuses it later)."""
    from fuxictr.pytorch.models import BaseModel

    from ..models import MODELS

    roots = [MODELS[model]] if model in MODELS else list(MODELS.values())
    return {cls for root in roots for cls in root.__mro__ if issubclass(cls, BaseModel)}


@functools.lru_cache(maxsize=None)
def known_keys(model: Optional[str] = None) -> FrozenSet[str]:
    """Every config key some component of an experiment of ``model`` reads.

    Args:
        model: the ``model`` of the params (e.g. ``"DIN"``); None or an unknown name: the keys
            of every registered model.

    Returns:
        The key names.
    """
    from fuxictr import autotuner, utils
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.models import BaseModel

    from ..data.features import MMCTRFeatureProcessor
    from ..data.loader import MMCTRDataLoader
    from . import experiment

    readers = [cls.__init__ for cls in _model_classes(model) if "__init__" in vars(cls)]
    readers += [BaseModel.fit, MMCTRDataLoader.__init__, RankDataLoader.__init__,
                MMCTRFeatureProcessor.__init__, MMCTRFeatureProcessor.fit,
                FeatureProcessor.__init__, FeatureProcessor.fit, build_dataset]
    keys = set().union(*(_reads(func) for func in readers))
    for source in (FeatureMap.load, utils.set_logger, autotuner.enumerate_params, experiment):
        keys |= _source_reads(source)
    keys |= set(experiment.REQUIRED_KEYS) | FUXICTR_BASE_KEYS | {"model_id"}  # load_config's
    return frozenset(keys - CALL_ARGUMENTS)


def unknown_keys(params: dict) -> Dict[str, Optional[str]]:
    """The keys of ``params`` that no component reads, each with the closest known key.

    Args:
        params: merged experiment params (FuxiCTR's ``load_config``).

    Returns:
        ``{key: closest known key or None}`` in sorted key order; empty when all are known.
    """
    known = known_keys(params.get("model") if isinstance(params.get("model"), str) else None)
    result = {}
    for key in sorted(k for k in params if k not in known):
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        result[key] = close[0] if close else None
    return result


def warn_unknown_keys(params: dict) -> Dict[str, Optional[str]]:
    """Warn about the keys of ``params`` that no component reads (log and stderr).

    Warns once per process for a given expid and set of unknown keys, however often the
    params are loaded. The warning goes to the log, and to stderr: printed there when the
    log handlers do not write to stderr.

    Returns:
        What :func:`unknown_keys` returned.
    """
    from ..errors import logs_to_stderr

    unknown = unknown_keys(params)
    memo = (params.get("model_id"), tuple(unknown))
    if not unknown or memo in _warned:
        return unknown
    _warned.add(memo)
    parts = [f"{key!r}" + (f" (did you mean {close!r}?)" if close else "")
             for key, close in unknown.items()]
    message = (f"expid {params.get('model_id')!r}: config key(s) that no component reads, "
               f"ignored: {', '.join(parts)}")
    logger.warning("%s", message)
    if logger.hasHandlers() and not logs_to_stderr():  # else logging's last resort prints it
        print(f"warning: {message}", file=sys.stderr)
    return unknown
