"""The config contract, declared once: which keys an experiment reads by name, and the type and
range of every key whose type its component's signature does not say.

FuxiCTR passes every key of an experiment as ``**kwargs`` to the feature processor, the model,
the loaders and ``fit``; each takes what its signature names and ignores the rest. So the keys
of an experiment are (see :mod:`fuxictr_mmctr.train.config_keys`, which derives them):

* the keyword parameters of every component that receives the params (from signatures);
* :data:`READ_BY_NAME`: the keys FuxiCTR or this package read by name from the params dict
  (``kwargs["verbose"]``, ``params.get("seed")``), for every model;

and the rule of a key's value is, in this order, :data:`READ_BY_NAME`'s, :data:`RULES`' (ranges
and choices that a default cannot express), or the type of the default in this package's own
signatures (``batch_norm=False`` must be a bool). The constructors check their own arguments
with :func:`check_value`, so a model or loader built outside a config is held to the same rule.

This module sits at the bottom of the package (models, data and train all read it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from .errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What one config value must be.

    Args:
        kind: ``int``, ``float``, ``bool``, ``str``, ``list``, ``choice``, ``units`` (a list of
            positive ints), ``regularizer`` (a number >= 0 or FuxiCTR's ``"l2(1.0e-3)"`` form)
            or ``any``.
        low, high: inclusive bounds (``None``: unbounded).
        low_open: the lower bound itself is not allowed (learning rate > 0).
        high_open: the upper bound itself is not allowed (dropout < 1).
        choices: the allowed values of a ``choice``.
        optional: None is allowed (the component's default applies).
    """

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] = ()
    optional: bool = True


_POSITIVE_INT = Rule("int", low=1)
_NON_NEGATIVE_INT = Rule("int", low=0)
_PROBABILITY = Rule("float", low=0.0, high=1.0, high_open=True)
_BOOL = Rule("bool")
_UNITS = Rule("units")
_STR = Rule("str")
_ANY = Rule("any")

POSITION_ENCODINGS = ("none", "learned")
ITEM_SIDES = ("features", "ids")
PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
TRACKERS = ("none", "tensorboard", "mlflow")

# Keys read by name from the params dict (not through a signature), known for every model.
READ_BY_NAME: Mapping[str, Rule] = {
    # what every experiment must name (fuxictr_mmctr.train.experiment.REQUIRED_KEYS)
    "model": _STR, "dataset_id": _STR, "data_root": _STR, "item_info": _STR,
    "feature_cols": Rule("list"), "label_col": _ANY, "optimizer": _STR, "loss": _STR,
    "learning_rate": Rule("float", low=0.0, low_open=True), "batch_size": _POSITIVE_INT,
    "epochs": _POSITIVE_INT, "model_root": _STR, "metrics": Rule("list"),
    # FuxiCTR: load_config sets model_id; FeatureMap.load, BaseModel and the autotuner read these
    "model_id": _STR, "feature_specs": Rule("list"), "use_features": _ANY, "group_id": _ANY,
    "verbose": _NON_NEGATIVE_INT, "data_format": _STR, "debug_mode": _BOOL,
    "rebuild_dataset": _BOOL, "data_loader": _ANY,
    # FuxiCTR's standard Base experiment keys that its library code no longer reads
    "pickle_feature_encoder": _BOOL, "feature_config": _ANY,
    # this package
    "gpu": Rule("int", low=-1), "seed": Rule("int"),
    "ddp_timeout": Rule("float", low=0.0, low_open=True),
    "num_threads": _POSITIVE_INT,
    # where a run's curves go (fuxictr_mmctr.train.tracking)
    "tracking": Rule("choice", choices=TRACKERS),
}

# Ranges and choices of keys that come from signatures, where the default's type says too little.
RULES: Mapping[str, Rule] = {
    # training (BaseModel and MMCTRModel)
    "early_stop_patience": _POSITIVE_INT,
    "accumulation_steps": _POSITIVE_INT,
    "max_gradient_norm": Rule("float", low=0.0, low_open=True),
    "weight_decay": Rule("float", low=0.0),
    "label_smoothing": _PROBABILITY,
    # the factor of FuxiCTR's learning-rate decay on a plateau (its own is 0.1; QIN's authors 0.5)
    "lr_decay_factor": Rule("float", low=0.0, high=1.0, low_open=True),
    "embedding_regularizer": Rule("regularizer"),
    "net_regularizer": Rule("regularizer"),
    "monitor_mode": Rule("choice", choices=("max", "min")),
    "shuffle": _BOOL,
    "save_best_only": _BOOL,
    # speed (fuxictr_mmctr.models.speed): compile and tf32 are bools by their defaults
    "precision": Rule("choice", choices=PRECISIONS),
    "compile_mode": Rule("choice", choices=COMPILE_MODES),
    "compile_backend": _STR,
    # data
    "num_workers": _NON_NEGATIVE_INT,
    "max_len": _POSITIVE_INT,
    "item_side": Rule("choice", choices=ITEM_SIDES),
    "pin_memory": _BOOL,
    # models
    "embedding_dim": _POSITIVE_INT,
    "net_dropout": _PROBABILITY,
    "attention_dropout": _PROBABILITY,
    "transformer_dropout": _PROBABILITY,
    "position_encoding": Rule("choice", choices=POSITION_ENCODINGS),
    "cross_type": Rule("choice", choices=("matrix", "mix", "vector")),
    "model_structure": Rule("choice",
                            choices=("parallel", "stacked", "stacked_parallel", "crossnet_only")),
    "history_pooling": Rule("choice", choices=("mean", "sum", "max", "multi_interest")),
    "cross_input_norm": Rule("choice", choices=("none", "batch", "layer")),
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
    "num_interests": _POSITIVE_INT,
    "low_rank": _POSITIVE_INT,
    "first_k_cols": _POSITIVE_INT,
    "dim_feedforward": _POSITIVE_INT,
    "reduction_ratio": Rule("float", low=0.0, low_open=True),
    "excitation_activation": Rule("choice", choices=("ReLU", "Sigmoid", "relu", "sigmoid")),
    # target attention (DIN, DIN_DCN, QIN) and QIN's quadratic network
    "attention_heads": _POSITIVE_INT,
    "attention_dim": _POSITIVE_INT,
    "attention_normalization": Rule("choice", choices=("none", "sum", "sum_plus_one")),
    "num_layers": _POSITIVE_INT,
    "num_row": _POSITIVE_INT,
}


def declared_rule(key: str) -> Optional[Rule]:
    """The rule :data:`READ_BY_NAME` or :data:`RULES` declares for ``key``, or None."""
    return READ_BY_NAME.get(key) or RULES.get(key)


def rule_from_default(default) -> Optional[Rule]:
    """The rule a signature default implies: its type (bool, int or float), else None."""
    if isinstance(default, bool):
        return _BOOL
    if isinstance(default, int):
        return Rule("int")
    if isinstance(default, float):
        return Rule("float")
    return None


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
    if value is None:
        return None if rule.optional else "a value is required"
    if rule.kind == "any":
        return None
    if rule.kind == "bool":
        return None if isinstance(value, bool) else f"{value!r} must be True or False"
    if rule.kind == "str":
        return None if isinstance(value, str) else f"{value!r} must be a string"
    if rule.kind == "list":
        return None if isinstance(value, (list, tuple)) else f"{value!r} must be a list"
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


def check_value(key: str, value, rule: Optional[Rule] = None, where: Optional[str] = None):
    """Refuse ``value`` for config key ``key`` unless it keeps ``rule`` (default: the declared
    rule of ``key``); returns ``value``, so a constructor can check while it assigns.

    Raises:
        ConfigError: naming the key (``option``) and the config (``path``, when given).
    """
    rule = rule or declared_rule(key)
    problem = value_problem(value, rule) if rule is not None else None
    if problem:
        raise ConfigError(problem, option=key, path=where)
    return value
