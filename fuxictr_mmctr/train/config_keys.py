"""The keys an experiment's components read and the rule of each value, derived from the
components themselves and :mod:`fuxictr_mmctr.config_contract`: the unknown-key warning, the
value checks and the config tests all ask here.

FuxiCTR hands the whole params dict as ``**kwargs`` to the feature processor, the model, the
loaders and ``fit``, and each ignores what it does not know: a misspelt ``max_lenn: 32`` would
silently train with the loader's default ``max_len`` of 100. :func:`warn_unknown_keys` names
such keys, once per process, with the closest known key; :func:`check_params` refuses values of
the wrong type or out of range before a run writes anything (``learning_rate: 1e-3``, a string
to PyYAML; ``max_len: -5``, which a Python slice would read as 95 items).

The known keys of an experiment of ``model`` are the keyword parameters (those with a default,
or keyword-only) of :func:`components` (the model class and its bases up to FuxiCTR's
``BaseModel``, ``BaseModel.fit``, the loaders and the feature processors), plus the contract's
:data:`~fuxictr_mmctr.config_contract.READ_BY_NAME`, less :data:`CALL_ARGUMENTS`.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import logging
import sys
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Set

from fuxictr.preprocess import FeatureProcessor, build_dataset
from fuxictr.pytorch.dataloaders import RankDataLoader
from fuxictr.pytorch.models import BaseModel

from ..config_contract import READ_BY_NAME, Rule, check_value, declared_rule, rule_from_default
from ..data.features import MMCTRFeatureProcessor
from ..data.loader import MMCTRDataLoader
from ..errors import logs_to_stderr
from ..models import MODELS

logger = logging.getLogger(__name__)

# Keyword parameters of the components that their callers always pass themselves: not keys of
# a config (``RankDataLoader(feature_map, stage=..., **params)``, ``DataLoader(..., split=...)``,
# ``fit(train_gen, validation_data=...)``, ``FeatureProcessor.fit(train_ddf=...)``).
CALL_ARGUMENTS = frozenset({"stage", "split", "validation_data", "train_ddf"})

_warned: Set[tuple] = set()


def _model_classes(model: Optional[str]):
    """The model class named ``model`` and its bases up to FuxiCTR's ``BaseModel``; every
    registered model when ``model`` is unknown (the registry refuses it later)."""
    roots = [MODELS[model]] if model in MODELS else list(MODELS.values())
    return {cls for root in roots for cls in root.__mro__ if issubclass(cls, BaseModel)}


def components(model: Optional[str] = None) -> List[Callable]:
    """The callables that receive an experiment's params as ``**kwargs``, for ``model``."""
    readers = [cls.__init__ for cls in _model_classes(model) if "__init__" in vars(cls)]
    return readers + [BaseModel.fit, MMCTRDataLoader.__init__, RankDataLoader.__init__,
                      MMCTRFeatureProcessor.__init__, MMCTRFeatureProcessor.fit,
                      FeatureProcessor.__init__, FeatureProcessor.fit, build_dataset]


def _keyword_parameters(func) -> Dict[str, Any]:
    """``{name: default}`` of the parameters of ``func`` a caller may pass by keyword."""
    found = {}
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is param.KEYWORD_ONLY or (
                param.kind is param.POSITIONAL_OR_KEYWORD and param.default is not param.empty):
            found[name] = param.default
    return found


def _own(func) -> bool:
    """Whether ``func`` is this package's (its defaults are this package's typed contract)."""
    return getattr(func, "__module__", "").startswith("fuxictr_mmctr.")


@functools.lru_cache(maxsize=None)
def known_keys(model: Optional[str] = None) -> FrozenSet[str]:
    """Every config key some component of an experiment of ``model`` reads.

    Args:
        model: the ``model`` of the params (e.g. ``"DIN"``); None or an unknown name: the keys
            of every registered model.
    """
    keys = set(READ_BY_NAME)
    for func in components(model):
        keys |= set(_keyword_parameters(func))
    return frozenset(keys - CALL_ARGUMENTS)


@functools.lru_cache(maxsize=None)
def rules(model: Optional[str] = None) -> Mapping[str, Rule]:
    """The rule of each key of ``model`` that has one: declared by the contract, or implied
    by the type of a default in this package's own signatures (a bool default wants a bool)."""
    found: Dict[str, Rule] = {}
    for func in components(model):
        if _own(func):
            for key, default in _keyword_parameters(func).items():
                rule = rule_from_default(default)
                if rule is not None:
                    found.setdefault(key, rule)
    for key in known_keys(model):
        rule = declared_rule(key)
        if rule is not None:
            found[key] = rule
    return found


def _model_of(params: Mapping[str, Any]) -> Optional[str]:
    return params.get("model") if isinstance(params.get("model"), str) else None


def check_params(params: Mapping[str, Any], where: str = "") -> None:
    """Refuse config values of the wrong type or out of range (:func:`rules`).

    Args:
        params: the merged experiment params (``Base`` + expid + dataset).
        where: names the config in the message, e.g. ``"config/mmctr_config (expid DIN)"``.

    Raises:
        ConfigError: naming the key (``option``) and the config (``path``).
    """
    for key, rule in rules(_model_of(params)).items():
        if key in params:
            check_value(key, params[key], rule, where=where or None)


def unknown_keys(params: dict) -> Dict[str, Optional[str]]:
    """The keys of ``params`` that no component reads, each with the closest known key.

    Returns:
        ``{key: closest known key or None}`` in sorted key order; empty when all are known.
    """
    known = known_keys(_model_of(params))
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
    if not logs_to_stderr():  # else logging's handler has printed it there already
        print(f"warning: {message}", file=sys.stderr)
    return unknown
