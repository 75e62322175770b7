"""Every dataset of the shipped config trains an epoch and writes a submission.

The real-data datasets (``MicroLens_1M_x1``, ``MicroLens_1M_x1_pretrained``) run with their
specs unchanged, from a folder whose ``data/`` holds the generator's ``vocab`` preset: every
file and column of the real distribution with the real vocabulary sizes (91,717 items, tag
vocabulary 11,740) on a few hundred rows. Only the epoch budget of the expid is cut. The sample
datasets run on the tiny sample. Run in both CI environments, this is the regression test of
FuxiCTR 2.3.10's ``KeyError: 'pretrain_dim'`` on the official config. The candidate item
sides (``MicroLens_sample_task1``, ``..._both_codes``, ...) run on a copy of the tiny sample
whose tables are made as README "Item sides" says: ``mmctr build-embeddings --tiny-clip``, then
``mmctr item-side``.
"""
from __future__ import annotations

import shutil

import pytest
import yaml
from helpers import ROOT, SWEEP_DATASET_PREFIXES, point_config_at

from fuxictr_mmctr.submit.submission import check_submission_zip
from fuxictr_mmctr.train import experiment

CONFIG = ROOT / "config" / "mmctr_config"
DATASETS = list(yaml.safe_load((CONFIG / "dataset_config.yaml").read_text()))
REAL = ("MicroLens_1M_x1", "MicroLens_1M_x1_pretrained")
BUDGET = {"epochs": 1, "verbose": 0}


def _expids_of(dataset_id: str) -> list:
    found = []
    for path in sorted((CONFIG / "model_config").glob("*.yaml")):
        for expid, params in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(params, dict) and params.get("dataset_id") == dataset_id \
                    and not params.get("feature_specs"):
                found.append((params.get("model") != "DIN", expid))
    return found


def expid_for(dataset_id: str) -> str:
    """The shipped expid that trains ``dataset_id``: DIN's if there is one, else the first."""
    found = _expids_of(dataset_id)
    assert found, f"no expid of config/mmctr_config trains dataset {dataset_id}"
    return min(found)[1]


# The benchmark datasets (bench/models.py, the sweeps) have no shipped expid: the benchmark
# makes its own. Each must share the feature specs of a dataset trained below.
TRAINED = [d for d in DATASETS if _expids_of(d)]
BENCH_ONLY = [d for d in DATASETS if d not in TRAINED]


def test_benchmark_datasets_share_the_specs_of_a_trained_dataset():
    datasets = yaml.safe_load((CONFIG / "dataset_config.yaml").read_text())

    def specs(dataset_id):  # the pretrained file's path is the dataset's own
        return [{k: v for k, v in col.items() if k != "pretrained_emb"}
                for col in datasets[dataset_id]["feature_cols"]]

    trained_specs = [specs(d) for d in TRAINED]
    assert BENCH_ONLY
    for dataset_id in BENCH_ONLY:
        assert dataset_id.startswith(SWEEP_DATASET_PREFIXES), dataset_id
        assert specs(dataset_id) in trained_specs, dataset_id


@pytest.fixture(scope="module")
def vocab_sample(tmp_path_factory):
    """A working folder whose data/ is laid out as the real distribution, real vocab sizes."""
    from fuxictr_mmctr.data.sample import make_sample

    work = tmp_path_factory.mktemp("real_layout")
    make_sample(work / "data", preset="vocab", seed=11, images=False, item_vectors=False)
    return work


@pytest.fixture(scope="module")
def item_sides_sample(tiny_sample, tmp_path_factory):
    """The tiny sample with every candidate item side: Task 1's item_info by
    ``mmctr build-embeddings --tiny-clip``, the content table by ``mmctr build-embeddings
    --source columns --fusion pca``, the others by ``mmctr item-side``."""
    from fuxictr_mmctr import cli

    root = tmp_path_factory.mktemp("item_sides") / "sample"
    shutil.copytree(tiny_sample, root)
    assert cli.main(["build-embeddings", "--data-dir", str(root), "--tiny-clip",
                     "--w2v-epochs", "1", "--projector-epochs", "2", "--num-workers", "0",
                     "--no-progress"]) == 0
    assert cli.main(["build-embeddings", "--data-dir", str(root), "--source", "columns",
                     "--fusion", "pca", "--out",
                     str(root / "MicroLens_1M_x1" / "item_info_content.parquet")]) == 0
    assert cli.main(["item-side", "--data-dir", str(root)]) == 0
    return root


def uses_item_side_tables(dataset_id: str) -> bool:
    """True when the dataset reads an item table other than the sample's item_info.parquet."""
    config = yaml.safe_load((CONFIG / "dataset_config.yaml").read_text())[dataset_id]
    return not config["item_info"].endswith("/item_info.parquet")


def budget_config(dst, expid):
    """``config/`` copied to ``dst`` with ``expid`` on a one-epoch budget (specs unchanged)."""
    shutil.copytree(ROOT / "config", dst)
    for path in (dst / "mmctr_config" / "model_config").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if expid in data:
            data[expid].update(BUDGET)
            path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst / "mmctr_config"


@pytest.mark.parametrize("dataset_id", TRAINED)
def test_dataset_config_trains_and_predicts(dataset_id, vocab_sample, tiny_sample, tmp_path,
                                            monkeypatch, request):
    expid = expid_for(dataset_id)
    config_dir = budget_config(tmp_path / "config", expid)
    if dataset_id in REAL:
        work = tmp_path / "work"
        work.mkdir()
        (work / "data").symlink_to(vocab_sample / "data")  # ./data/MicroLens_1M_x1/... resolves
        data_dir = vocab_sample / "data" / "MicroLens_1M_x1"
    else:
        assert "./data/sample/" in (config_dir / "dataset_config.yaml").read_text()
        sample = request.getfixturevalue("item_sides_sample") \
            if uses_item_side_tables(dataset_id) else tiny_sample
        point_config_at(config_dir.parent, sample)
        work = tmp_path
        data_dir = sample / "MicroLens_1M_x1"
    monkeypatch.chdir(work)

    trained = experiment.train(config_dir, expid)
    assert 0.0 < trained.valid_metrics["AUC"] < 1.0 and trained.checkpoint.is_file()
    params = experiment.load_params(config_dir, expid, needs=())
    features = experiment.load_feature_map(params).features
    for name, spec in features.items():  # what FuxiCTR 2.3.10's FeatureMap needs
        if spec["type"] == "embedding":
            assert spec["pretrain_dim"] == 128, name
    if dataset_id in REAL:
        assert features["item_id"]["vocab_size"] >= 91_718
        assert features["item_tags"]["vocab_size"] == 11_740

    predicted = experiment.predict(config_dir, expid)
    report = check_submission_zip(predicted.zip_path, data_dir / "test.parquet")
    assert report.n_rows == predicted.num_rows > 0
