"""bench/worlds.py: the configs it prepares (bench/models.py's, plus Task 1's item side) and its
table."""
from __future__ import annotations

import importlib.util
import shutil

from helpers import ROOT

from fuxictr_mmctr.train import experiment


def load_worlds():
    spec = importlib.util.spec_from_file_location("bench_worlds", ROOT / "bench" / "worlds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task1_expid_is_din_sample_on_task1_s_item_info(tiny_sample, tmp_path):
    worlds = load_worlds()
    task1 = tmp_path / "item_info_task1.parquet"
    shutil.copy(tiny_sample / "MicroLens_1M_x1" / "item_info.parquet", task1)
    config = worlds.bench_models.bench_config(
        ROOT / "config" / "mmctr_config", tmp_path / "config", tiny_sample, tmp_path / "ckpt",
        worlds.bench_models.BUDGETS["fixed"], {worlds.SIDES["given"]})
    worlds.task1_config(config, task1)
    given = experiment.load_params(config, worlds.SIDES["given"], check_keys=False)
    other = experiment.load_params(config, worlds.SIDES["task1"], check_keys=False)
    assert given["item_info"] == str(tiny_sample / "MicroLens_1M_x1" / "item_info.parquet")
    assert other["item_info"] == str(task1)
    assert (given["epochs"], given["batch_size"]) == (other["epochs"], other["batch_size"]) \
        == (3, 256)
    differ = {k for k in set(given) | set(other) if given.get(k) != other.get(k)}
    assert differ == {"item_info", "dataset_id", "model_id"}


def test_table_per_seed_and_mean():
    worlds = load_worlds()
    rows = [dict(world="partial", seed=s, side=side, auc=auc, oracle_auc=0.8)
            for s, side, auc in [(1, "given", 0.70), (1, "task1", 0.74), (2, "given", 0.72),
                                 (2, "task1", 0.74)]]
    lines = worlds.summarise(rows, ["partial"], [1, 2]).splitlines()
    assert lines[2] == "| partial | 1 | 0.8000 | 0.7000 | 0.875 | 0.7400 | 0.925 | +0.0400 |"
    assert lines[4] == "| partial | mean | 0.8000 | 0.7100 | 0.887 | 0.7400 | 0.925 | +0.0300 |"
