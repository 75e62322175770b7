"""Which reading of an ambiguous config was taken, said once per process in the log and on stderr.

FuxiCTR merges configs silently, and some merges surprise: :func:`config_readings` names them.

* A key the expid (or Base) sets and the dataset sets too: FuxiCTR's ``load_config`` takes the
  *dataset's* value (``max_len: 32`` in the expid loses to ``max_len: 100`` in the dataset).
* A key given twice in one YAML mapping: PyYAML keeps the last one, silently.
* An expid (or Base) defined in several ``model_config/*.yaml`` files: FuxiCTR reads the one its
  unsorted file listing reaches last before it has both.
* ``feature_specs`` that change a dataset feature (``pretrain_usage: sum`` over the dataset's
  ``concat``); ``feature_specs`` naming a feature the dataset does not have are refused
  (:func:`check_feature_specs`; FuxiCTR would fail with a ``KeyError``).
* ``item_side: ids`` with item-side columns: the model, not the loader, gathers them.
* A feature with its own ``embedding_dim``, which wins over the model's.

Conflicts are warnings; readings that are as intended (``feature_specs``, ``item_side``,
a feature's own width) are info lines.
"""
from __future__ import annotations

import glob
import logging
import os
import sys
from typing import Dict, List, Mapping, Optional, Set, Tuple

import yaml

from ..data.features import feature_sides
from ..errors import ConfigError, logs_to_stderr

logger = logging.getLogger(__name__)

_announced: Set[Tuple[Optional[str], str]] = set()


def _show(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text[:-4] if text.endswith("\n...") else text
    return text if len(text) <= 60 else text[:57] + "..."


def _model_files(config_dir: str) -> List[str]:
    """The model config files in FuxiCTR's order (``load_model_config``: unsorted glob)."""
    files = glob.glob(os.path.join(config_dir, "model_config.yaml"))
    return files or glob.glob(os.path.join(config_dir, "model_config", "*.yaml"))


def _dataset_files(config_dir: str) -> List[str]:
    files = glob.glob(os.path.join(config_dir, "dataset_config.yaml"))
    return files or glob.glob(os.path.join(config_dir, "dataset_config", "*.yaml"))


# libyaml's loader where PyYAML has it: these files are read at every job start.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(path: str):
    try:
        with open(path) as fh:
            return yaml.compose(fh, Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return None  # unreadable: load_params has said so already


def _load(path: str):
    try:
        with open(path) as fh:
            return yaml.load(fh, Loader=_LOADER) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _mentions(path: str, names) -> bool:
    """Whether ``path`` may define one of ``names`` (a cheap text test before parsing)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return False
    return any(name in text for name in names)


def _duplicate_keys(path: str, wanted: Set[str]) -> List[str]:
    """Keys given twice in the top mapping of ``path`` or in the mappings of ``wanted`` names
    (merge keys ``<<:`` excepted: overriding them is what they are for)."""
    root = _compose(path)
    if not isinstance(root, yaml.MappingNode):
        return []
    found = []

    def scan(node: yaml.MappingNode, where: str) -> None:
        seen: Dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                continue
            line = key.start_mark.line + 1
            if key.value in seen:
                found.append(f"{path}: {where}key {key.value!r} is given twice (lines "
                             f"{seen[key.value]} and {line}); YAML keeps the last one, "
                             f"{_show(yaml.safe_load(yaml.serialize(value)))}")
            seen[key.value] = line

    scan(root, "")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value in wanted and \
                isinstance(value, yaml.MappingNode):
            scan(value, f"in {key.value!r}, ")
    return found


def _model_sections(config_dir: str, expid: str):
    """Every model config file's ``Base`` and ``expid`` mappings, and the file FuxiCTR's
    ``load_model_config`` takes each from (its loop replayed: the files in its order, the last
    holder of each name before it holds both).

    Returns:
        ``(defined, taken)``: name -> {file: mapping}, name -> file.
    """
    taken: Dict[str, str] = {}
    defined: Dict[str, Dict[str, object]] = {"Base": {}, expid: {}}
    stopped = False  # FuxiCTR stops reading files once it holds both Base and the expid
    for path in _model_files(config_dir):
        data = _load(path)
        for name in defined:
            if isinstance(data, dict) and name in data:
                defined[name][path] = data[name]
                if not stopped:
                    taken[name] = path
        stopped = stopped or len(taken) == 2
    return defined, taken


def _defined_in_several_files(config_dir: str, defined, taken) -> List[str]:
    """An expid or Base defined in more than one model config file, differently."""
    messages = []
    for name, where in defined.items():
        if len(where) > 1 and len({repr(v) for v in where.values()}) > 1:
            file = taken.get(name)
            others = [os.path.basename(p) for p in where if p != file]
            messages.append(f"{name!r} is defined in several model config files of "
                            f"{config_dir}: {os.path.basename(file)} and {', '.join(others)}, "
                            f"differently; FuxiCTR reads {os.path.basename(file)}'s")
    return messages


def _dataset_over_expid(config_dir: str, expid: str, defined, taken,
                        params: Mapping) -> List[str]:
    """Keys both the expid (with Base) and its dataset set: the dataset's value is used."""
    model: Dict[str, object] = {}
    for name in ("Base", expid):
        section = defined[name].get(taken.get(name, ""), {})
        model.update(section if isinstance(section, dict) else {})
    dataset_id = model.get("dataset_id")
    dataset = next((d[dataset_id] for d in map(_load, _dataset_files(config_dir))
                    if isinstance(d, dict) and isinstance(d.get(dataset_id), dict)), None)
    if dataset is None:
        return []
    messages = []
    for key in sorted(set(model) & set(dataset) - {"dataset_id"}):
        if model[key] != dataset[key]:
            messages.append(f"{key} is set by the expid ({_show(model[key])}) and by dataset "
                            f"{dataset_id!r} ({_show(dataset[key])}); FuxiCTR's "
                            f"load_config takes the dataset's: {_show(params.get(key))}")
    return messages


def _active_names(params: Mapping) -> List[str]:
    names = []
    for col in params.get("feature_cols") or []:
        if isinstance(col, Mapping) and col.get("active", True):
            names += col["name"] if isinstance(col.get("name"), list) else [col.get("name")]
    return names


def check_feature_specs(params: Mapping) -> None:
    """Refuse ``feature_specs`` that are not a list of ``{name: ..., key: value}`` naming active
    features of the dataset (FuxiCTR's ``FeatureMap.load`` fails with a ``KeyError``).

    Raises:
        ConfigError: naming the expid, the feature and the dataset's features.
    """
    specs = params.get("feature_specs")
    if not specs:
        return
    where = f"expid {params.get('model_id')!r}"
    if not isinstance(specs, list) or not all(isinstance(s, Mapping) and "name" in s
                                              for s in specs):
        raise ConfigError(f"{where}: feature_specs must be a list of {{name: FEATURE, key: "
                          f"value}}, got {_show(specs)}", option="feature_specs")
    active = _active_names(params)
    for spec in specs:
        for name in spec["name"] if isinstance(spec["name"], list) else [spec["name"]]:
            if name not in active:
                raise ConfigError(f"{where}: feature_specs names {name!r}, not an active "
                                  f"feature of dataset {params.get('dataset_id')!r} ({active})",
                                  option="feature_specs")


def _feature_specs(params: Mapping) -> List[str]:
    """What ``feature_specs`` change in the dataset's features."""
    specs = params.get("feature_specs") or []
    columns = {}
    for col in params.get("feature_cols") or []:
        if isinstance(col, Mapping):
            for name in col["name"] if isinstance(col.get("name"), list) else [col.get("name")]:
                columns[name] = col
    changes = []
    for spec in specs if isinstance(specs, list) else []:
        if not isinstance(spec, Mapping):
            continue
        for name in spec["name"] if isinstance(spec.get("name"), list) else [spec.get("name")]:
            for key, value in spec.items():
                if key == "name":
                    continue
                old = columns.get(name, {}).get(key)
                if old != value:
                    was = f"{_show(old)} in the dataset" if key in columns.get(name, {}) else \
                        "unset in the dataset"
                    changes.append(f"{name}.{key} = {_show(value)} ({was})")
    return [f"feature_specs override the dataset's features: {'; '.join(changes)}"] \
        if changes else []


def _item_side(params: Mapping) -> List[str]:
    if params.get("item_side") != "ids":
        return []
    columns = feature_sides(params.get("feature_cols") or []).item_columns
    if not columns:
        return []
    return [f"item_side: ids: the loader ships item ids only, and the model gathers "
            f"{', '.join(columns)} from item_info on its device (the same values as "
            "item_side: features)"]


def _own_widths(params: Mapping) -> List[str]:
    model_dim = params.get("embedding_dim")
    own = [(name, col["embedding_dim"]) for col in params.get("feature_cols") or []
           if isinstance(col, Mapping) and col.get("active", True) and
           col.get("type") != "meta" and col.get("embedding_dim") is not None and
           col.get("embedding_dim") != model_dim
           for name in (col["name"] if isinstance(col.get("name"), list) else [col.get("name")])]
    return [f"feature {name} has its own embedding_dim {dim} in feature_cols, which FuxiCTR "
            f"uses instead of the model's {model_dim}" for name, dim in own]


def config_readings(config_dir, expid: str, params: Mapping) -> Tuple[List[str], List[str]]:
    """The readings FuxiCTR takes of an ambiguous config of ``expid``.

    Returns:
        ``(conflicts, readings)``: lines for a warning (a value given twice, the dataset over
        the expid) and lines for the log (intended overrides said out loud).
    """
    config_dir = str(config_dir)
    dataset_id = str(params.get("dataset_id"))
    conflicts: List[str] = []
    for path in _model_files(config_dir):
        if _mentions(path, ("Base", expid)):
            conflicts += _duplicate_keys(path, {"Base", expid})
    for path in _dataset_files(config_dir):
        if _mentions(path, (dataset_id,)):
            conflicts += _duplicate_keys(path, {dataset_id})
    defined, taken = _model_sections(config_dir, expid)
    conflicts += _defined_in_several_files(config_dir, defined, taken)
    conflicts += _dataset_over_expid(config_dir, expid, defined, taken, params)
    readings = _feature_specs(params) + _item_side(params) + _own_widths(params)
    return conflicts, readings


def announce_readings(config_dir, expid: str, params: Mapping) -> Tuple[List[str], List[str]]:
    """Log :func:`config_readings` once per process and expid: conflicts as warnings (also
    printed to stderr when the log does not reach it), readings as info lines."""
    conflicts, readings = config_readings(config_dir, expid, params)
    for level, lines in ((logging.WARNING, conflicts), (logging.INFO, readings)):
        for line in lines:
            memo = (params.get("model_id"), line)
            if memo in _announced:
                continue
            _announced.add(memo)
            message = f"expid {expid!r}: {line}"
            logger.log(level, "%s", message)
            if level >= logging.WARNING and logger.hasHandlers() and not logs_to_stderr():
                print(f"warning: {message}", file=sys.stderr)
    return conflicts, readings


__all__ = ["announce_readings", "check_feature_specs", "config_readings"]
