"""The FuxiCTR config folder a pipeline trains from: one dataset per item side, one expid per
(model, item side), all written under the work dir.

Each dataset is the shipped one of the chosen settings (``MicroLens_sample`` for ``sample``,
``MicroLens_1M_x1`` for ``default``) with its files pointed at the user's data folder and its
``item_info`` at the item side's table. The item features follow the table: every column the
table has beyond the shipped ones (but Task 1's alias ``item_emb``) becomes a ``source: item``
feature (a list of floats an ``embedding`` feature of its width, an integer column a
``categorical`` one whose vocabulary is read from the table), so Task 1's second vector and the semantic IDs reach the models, and the
history items carry them too.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import pyarrow as pa
import yaml

from ..data.schema import DATASET_DIR, is_list_type, open_parquet
from ..embeddings.export import ALIAS_COLUMN
from ..errors import ConfigError
from ..io import PathLike, atomic_path
from ..models import MODELS
from ..resources import packaged_config_dir

# Bumped when what write_pipeline_config writes for the same inputs changes, so that a work dir
# of an older package writes its configs again (2: Task 1's alias item_emb is no feature;
# 3: every dense item vector gets VECTOR_NORM).
CONFIG_FORMAT = 3

# How the pipeline's models read every dense item vector that its template leaves unset
# (``normalize_vectors``, README "The given vector's scale"): the given item_emb_d128 is not
# normalised, Task 1's and the content vectors are unit vectors (mean_norm leaves them as
# they are).
VECTOR_NORM = "mean_norm"

# The shipped dataset each settings family trains on (its feature specs are the template).
BASE_DATASETS = {"sample": "MicroLens_sample", "default": "MicroLens_1M_x1"}


def expid_for(model: str, side: str) -> str:
    """``DIN__task1_codes``: the expid of ``model`` on item side ``side``."""
    return f"{model}__{side}"


def dataset_for(side: str) -> str:
    return f"pipeline_{side}"


def item_feature_cols(table: PathLike, template: Sequence[dict]) -> List[dict]:
    """``template``'s feature specs plus one ``source: item`` feature per column of ``table``
    that the template does not name (``item_id`` and Task 1's alias ``item_emb`` aside); every
    dense item vector the template leaves unset is read with :data:`VECTOR_NORM`."""
    path = Path(table)
    parquet = open_parquet(path)
    named = {col["name"] for col in template}
    cols = [copy.deepcopy(col) for col in template]
    for field in parquet.schema_arrow:
        # item_emb: Task 1's copy of item_emb_d128 under the official Task-1 name (the same
        # vector; a second feature of it would only add a projection)
        if field.name in named or field.name in ("item_id", ALIAS_COLUMN):
            continue
        if is_list_type(field.type) and pa.types.is_floating(field.type.value_type):
            first = parquet.read_row_group(0, columns=[field.name]).column(0)[0]
            cols.append({"name": field.name, "active": True, "dtype": "float",
                         "type": "embedding", "source": "item",
                         "pretrain_dim": len(first.as_py())})
        elif pa.types.is_integer(field.type):
            cols.append({"name": field.name, "active": True, "dtype": "int",
                         "type": "categorical", "source": "item"})
        else:
            raise ConfigError(f"column {field.name!r} ({field.type}) of {path} is neither a "
                              "vector nor an id: no item feature can read it")
    for col in cols:
        if col.get("type") == "embedding" and col.get("source") == "item":
            col.setdefault("normalize_vectors", VECTOR_NORM)
    return cols


def shipped_settings(models: Sequence[str], settings: str) -> dict:
    """What the pipeline's configs start from, read from the installed package: the shipped
    ``Base``, the dataset template of ``settings`` and each model's ``<Model>_<settings>``.

    Returns:
        ``{"Base": {...}, "dataset": {...}, "models": {model: params}}``.

    Raises:
        ConfigError: unknown settings or model.
    """
    if settings not in BASE_DATASETS:
        raise ConfigError(f"settings {settings!r}: expected one of {list(BASE_DATASETS)}",
                          option="--settings")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; available: {sorted(MODELS)}",
                          option="--models")
    shipped = packaged_config_dir()
    datasets = yaml.safe_load((shipped / "dataset_config.yaml").read_text())
    return {"Base": yaml.safe_load((shipped / "model_config" / "Base.yaml").read_text())["Base"],
            "dataset": datasets[BASE_DATASETS[settings]],
            "models": {model: yaml.safe_load((shipped / "model_config" / f"{model}.yaml")
                                             .read_text())[f"{model}_{settings}"]
                       for model in models}}


def shipped_settings_digest(models: Sequence[str], settings: str) -> str:
    """sha256 of :func:`shipped_settings`: part of the pipeline's configs stage key, so a
    package whose shipped defaults changed (a swept ``<Model>_sample``) writes the configs
    again, and only the models whose settings changed train again."""
    return hashlib.sha256(json.dumps(shipped_settings(models, settings), sort_keys=True,
                                     default=str).encode()).hexdigest()


def write_pipeline_config(out_dir: PathLike, data_dir: PathLike, sides: Mapping[str, PathLike],
                          models: Sequence[str], settings: str, overrides: Mapping,
                          model_root: PathLike) -> Dict[str, str]:
    """Write ``<out_dir>/dataset_config.yaml`` and ``model_config/`` for the pipeline.

    Args:
        out_dir: the config dir to write (a FuxiCTR config folder).
        data_dir: the MicroLens root (``<data_dir>/MicroLens_1M_x1/{train,valid,test}.parquet``).
        sides: item side name -> its item table.
        models: model names; each expid starts from the shipped ``<Model>_<settings>``.
        settings: ``sample`` or ``default``.
        overrides: keys set on every expid (epochs, batch_size, seed, ...).
        model_root: where checkpoints go.

    Returns:
        expid -> sha256 of everything its training reads from the config (its params and its
        dataset's spec): a pipeline retrains an expid only when that changes.
    """
    shipped = shipped_settings(models, settings)
    template = shipped["dataset"]
    splits = Path(data_dir) / DATASET_DIR
    dataset_config: Dict[str, dict] = {}
    for side, table in sides.items():
        spec = copy.deepcopy(template)
        spec.update(data_root=f"{Path(out_dir).resolve()}/data/",
                    train_data=str((splits / "train.parquet").resolve()),
                    valid_data=str((splits / "valid.parquet").resolve()),
                    test_data=str((splits / "test.parquet").resolve()),
                    item_info=str(Path(table).resolve()),
                    feature_cols=item_feature_cols(table, template["feature_cols"]))
        dataset_config[dataset_for(side)] = spec
    model_config = {"Base": dict(shipped["Base"], model_root=f"{Path(model_root).resolve()}/")}
    for model in models:
        base = shipped["models"][model]
        for side in sides:
            model_config[expid_for(model, side)] = dict(base, dataset_id=dataset_for(side),
                                                        **overrides)
    out = Path(out_dir)
    (out / "model_config").mkdir(parents=True, exist_ok=True)
    for path, content in ((out / "dataset_config.yaml", dataset_config),
                          (out / "model_config" / "pipeline.yaml", model_config)):
        with atomic_path(path, suffix=".yaml") as tmp:
            tmp.write_text(yaml.safe_dump(content, sort_keys=False))
    return {expid: hashlib.sha256(json.dumps(
        [model_config["Base"], params, dataset_config[params["dataset_id"]]], sort_keys=True,
        default=str).encode()).hexdigest()
        for expid, params in model_config.items() if expid != "Base"}
