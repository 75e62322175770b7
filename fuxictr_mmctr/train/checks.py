"""Types and ranges of the config values the package reads, checked before a run writes anything.

FuxiCTR passes every key of an experiment as ``**kwargs`` and trusts its type: a
``learning_rate: 1e-3`` (a *string* to PyYAML) reaches torch's optimizer, ``max_len: 0`` used
to mean "the whole history" and ``max_len: -5`` 95 items (a Python slice). :func:`check_params`
refuses such values up front with one line naming the expid and the key.

Only keys this package or FuxiCTR give a meaning to are listed; unknown keys are the business of
the unknown-key warning, not of this table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ..errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What one config value must be.

    Args:
        kind: ``int``, ``float``, ``bool``, ``choice``, ``units`` (a list of positive ints) or
            ``regularizer`` (a number >= 0 or FuxiCTR's ``"l2(1.0e-3)"`` form).
        low, high: inclusive bounds (``None``: unbounded).
        high_open: the upper bound itself is not allowed (dropout < 1).
        low_open: the lower bound itself is not allowed (learning rate > 0).
        choices: the allowed values of a ``choice``.
    """

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] = ()


_POSITIVE_INT = Rule("int", low=1)
_NON_NEGATIVE_INT = Rule("int", low=0)
_PROBABILITY = Rule("float", low=0.0, high=1.0, high_open=True)
_BOOL = Rule("bool")
_UNITS = Rule("units")

RULES: Mapping[str, Rule] = {
    # training
    "learning_rate": Rule("float", low=0.0, low_open=True),
    "batch_size": _POSITIVE_INT,
    "epochs": _POSITIVE_INT,
    "early_stop_patience": _POSITIVE_INT,
    "accumulation_steps": _POSITIVE_INT,
    "max_gradient_norm": Rule("float", low=0.0, low_open=True),
    "weight_decay": Rule("float", low=0.0),
    "label_smoothing": _PROBABILITY,
    "embedding_regularizer": Rule("regularizer"),
    "net_regularizer": Rule("regularizer"),
    "seed": Rule("int"),
    "verbose": _NON_NEGATIVE_INT,
    "num_workers": _NON_NEGATIVE_INT,
    "ddp_timeout": Rule("float", low=0.0, low_open=True),
    "monitor_mode": Rule("choice", choices=("max", "min")),
    "shuffle": _BOOL,
    "save_best_only": _BOOL,
    "debug_mode": _BOOL,
    "rebuild_dataset": _BOOL,
    "pickle_feature_encoder": _BOOL,
    # data
    "max_len": _POSITIVE_INT,
    "item_side": Rule("choice", choices=("features", "ids")),
    # models
    "embedding_dim": _POSITIVE_INT,
    "net_dropout": _PROBABILITY,
    "attention_dropout": _PROBABILITY,
    "transformer_dropout": _PROBABILITY,
    "batch_norm": _BOOL,
    "din_use_softmax": _BOOL,
    "use_lr": _BOOL,
    "concat_max_pool": _BOOL,
    "reproduce_published_mask_bug": _BOOL,
    "dnn_hidden_units": _UNITS,
    "attention_hidden_units": _UNITS,
    "mlp_hidden_units": _UNITS,
    "stacked_dnn_hidden_units": _UNITS,
    "parallel_dnn_hidden_units": _UNITS,
    "dcn_hidden_units": _UNITS,
    "num_cross_layers": _NON_NEGATIVE_INT,
    "dcn_cross_layers": _NON_NEGATIVE_INT,
    "transformer_layers": _POSITIVE_INT,
    "num_heads": _POSITIVE_INT,
    "num_experts": _POSITIVE_INT,
    "low_rank": _POSITIVE_INT,
    "first_k_cols": _POSITIVE_INT,
    "dim_feedforward": _POSITIVE_INT,
    "reduction_ratio": Rule("float", low=0.0, low_open=True),
}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _looks_numeric(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _bounds_problem(value: float, rule: Rule) -> Optional[str]:
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
        return f"{value!r} must be {'>' if rule.low_open else '>='} {rule.low:g}"
    if rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high)):
        return f"{value!r} must be {'<' if rule.high_open else '<='} {rule.high:g}"
    return None


def value_problem(value, rule: Rule) -> Optional[str]:
    """Why ``value`` breaks ``rule``, in words, or None when it is fine."""
    if rule.kind == "bool":
        return None if isinstance(value, bool) else f"{value!r} must be True or False"
    if rule.kind == "choice":
        return None if value in rule.choices else \
            f"{value!r} must be one of {list(rule.choices)}"
    if rule.kind == "units":
        if not isinstance(value, (list, tuple)) or \
                not all(_is_int(u) and u >= 1 for u in value):
            return f"{value!r} must be a list of positive integers, e.g. [256, 128]"
        return None
    if rule.kind == "regularizer":
        if isinstance(value, str) and "(" in value:
            return None  # FuxiCTR's "l2(1.0e-3)" form, parsed by FuxiCTR
        rule = Rule("float", low=0.0)
    if isinstance(value, str) and _looks_numeric(value):
        return (f"{value!r} is a string, not a number: PyYAML reads exponents without a dot "
                f"as strings; write {float(value):.1e}".replace("e-0", "e-").replace("e+0", "e+"))
    if rule.kind == "int":
        if not _is_int(value):
            return f"{value!r} must be an integer"
        return _bounds_problem(value, rule)
    if not _is_number(value):
        return f"{value!r} must be a number"
    return _bounds_problem(float(value), rule)


def check_params(params: Mapping[str, Any], where: str = "") -> None:
    """Refuse config values of the wrong type or out of range.

    Args:
        params: the merged experiment params (``Base`` + expid + dataset).
        where: names the config in the message, e.g. ``"config/mmctr_config (expid DIN)"``.

    Raises:
        ConfigError: naming the key (``option``) and the config (``path``).
    """
    for key, rule in RULES.items():
        if key not in params or params[key] is None:
            continue
        problem = value_problem(params[key], rule)
        if problem:
            raise ConfigError(problem, option=key, path=where or None)


def check_device(gpu: int) -> None:
    """Refuse ``--gpu N`` (N >= 0) on a machine where torch sees no CUDA device N."""
    if not _is_int(gpu) or gpu < -1:
        raise ConfigError(f"{gpu!r}: expected -1 (CPU) or a CUDA device index", option="--gpu")
    if gpu < 0:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"{gpu}: CUDA is not available on this machine (torch "
                          f"{torch.__version__}); use --gpu -1 for the CPU", option="--gpu")
    if gpu >= torch.cuda.device_count():
        raise ConfigError(f"{gpu}: this machine has {torch.cuda.device_count()} CUDA "
                          "device(s)", option="--gpu")
