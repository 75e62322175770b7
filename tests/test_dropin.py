"""`mmctr drop-in` against a folder laid out like the official challenge repository.

The fake repository's scripts are written here (not copied): they use the official import lines
(`import fuxictr_version`, `import src as model_zoo`, `from src.mmctr_dataloader import
MMCTRDataLoader`) and the official flow (FuxiCTR's own FeatureProcessor and build_dataset,
`getattr(model_zoo, params['model'])`, `params['data_loader'] = MMCTRDataLoader`,
`RankDataLoader(...).make_iterator()`, fit, evaluate, predict the test split).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT

from fuxictr_mmctr import cli
from fuxictr_mmctr.integrations import dropin
from fuxictr_mmctr.data.loader import MMCTRDataLoader
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.models import MODELS
from fuxictr_mmctr.submit.submission import check_submission_zip

HEADER = '''\
import os
os.chdir(os.path.dirname(os.path.realpath(__file__)))
import sys
import logging
import argparse
from datetime import datetime
from pathlib import Path
import fuxictr_version
from fuxictr.utils import load_config, set_logger, print_to_json, print_to_list
from fuxictr.features import FeatureMap
from fuxictr.pytorch.dataloaders import RankDataLoader
from fuxictr.pytorch.torch_utils import seed_everything
from fuxictr.preprocess import FeatureProcessor, build_dataset
import src as model_zoo
from src.mmctr_dataloader import MMCTRDataLoader


def setup():
    parser = argparse.ArgumentParser()
    parser.add_argument('--config', type=str, default='./config/')
    parser.add_argument('--expid', type=str, required=True)
    parser.add_argument('--gpu', type=int, default=-1)
    args = vars(parser.parse_args())
    params = load_config(args['config'], args['expid'])
    params['gpu'] = args['gpu']
    set_logger(params)
    seed_everything(seed=params['seed'])
    data_dir = os.path.join(params['data_root'], params['dataset_id'])
    encoder = FeatureProcessor(**params)
    params['train_data'], params['valid_data'], params['test_data'] = \\
        build_dataset(encoder, **params)
    feature_map = FeatureMap(params['dataset_id'], data_dir)
    feature_map.load(os.path.join(data_dir, 'feature_map.json'), params)
    logging.info('Feature specs: ' + print_to_json(feature_map.features))
    model = getattr(model_zoo, params['model'])(feature_map, **params)
    params['data_loader'] = MMCTRDataLoader
    return args, params, feature_map, model
'''

RUN_EXPID = HEADER + '''

if __name__ == '__main__':
    args, params, feature_map, model = setup()
    train_gen, valid_gen = RankDataLoader(feature_map, stage='train', **params).make_iterator()
    model.fit(train_gen, validation_data=valid_gen, **params)
    logging.info('****** Validation evaluation ******')
    valid_result = model.evaluate(valid_gen)
    with open(Path(args['config']).name + '.csv', 'a+') as fw:
        fw.write('{},[exp_id] {},[val] {}\\n'.format(datetime.now().strftime('%Y%m%d-%H%M%S'),
                                                     args['expid'], print_to_list(valid_result)))
'''

PREDICTION = HEADER + '''
import shutil
import pandas as pd
import pyarrow.parquet as pq

if __name__ == '__main__':
    args, params, feature_map, model = setup()
    model.load_weights(model.checkpoint)
    test_gen = RankDataLoader(feature_map, stage='test', **params).make_iterator()
    test_pred = model.predict(test_gen)
    os.makedirs('submission', exist_ok=True)
    pd.DataFrame({'ID': range(test_pred.shape[0]), 'Task1': test_pred}).to_csv(
        'submission/prediction.csv', index=False)
    shutil.make_archive('submission/' + args['expid'], 'zip', 'submission/', 'prediction.csv')
'''

OFFICIAL_SRC = {
    "__init__.py": "from .DIN import DIN\nfrom .mmctr_dataloader import MMCTRDataLoader\n",
    "DIN.py": "# stands for the official DIN\nclass DIN:\n    pass\n",
    "mmctr_dataloader.py": "# stands for the official loader\nclass MMCTRDataLoader:\n    pass\n",
}
OFFICIAL_CONFIG = "Base:\n    model_root: './checkpoints/'\n\nDIN_default:\n    model: DIN\n"
FAST = {"epochs": 1, "batch_size": 500, "verbose": 0, "num_workers": 1, "max_len": 16}
TRAIN_ROWS = 3000  # of the tiny sample's 6000: the official scripts train in seconds


def make_official_repo(root: Path) -> Path:
    repo = root / "WWW2025_MMCTR_Challenge"
    (repo / "src").mkdir(parents=True)
    for name, text in OFFICIAL_SRC.items():
        (repo / "src" / name).write_text(text)
    (repo / "run_expid.py").write_text(RUN_EXPID)
    (repo / "prediction.py").write_text(PREDICTION)
    (repo / "run_param_tuner.py").write_text("import fuxictr_version\n")
    (repo / "fuxictr_version.py").write_text(
        "import fuxictr\nassert fuxictr.__version__ == '2.3.7'\n")
    (repo / "config" / "din_config").mkdir(parents=True)
    (repo / "config" / "din_config" / "model_config.yaml").write_text(OFFICIAL_CONFIG)
    return repo


def import_src(repo: Path):
    """Import ``repo/src`` as a package under a private name (``import src as model_zoo``)."""
    spec = importlib.util.spec_from_file_location(
        "_official_src", repo / "src" / "__init__.py",
        submodule_search_locations=[str(repo / "src")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
        sys.modules.pop(f"{spec.name}.mmctr_dataloader", None)
    return module


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A fake official checkout with the tiny sample where the real data goes, and also at
    data/sample/ (a link), so both the real-data and the sample datasets resolve."""
    from fuxictr_mmctr.data.sample import make_sample

    repo = make_official_repo(tmp_path_factory.mktemp("official"))
    info = make_sample(repo / "data", preset="tiny", seed=7, images=False, item_vectors=False)
    train = pq.read_table(info.paths["train"])
    pq.write_table(train.slice(0, TRAIN_ROWS), info.paths["train"])
    (repo / "data" / "sample").mkdir()
    (repo / "data" / "sample" / "MicroLens_1M_x1").symlink_to(repo / "data" / "MicroLens_1M_x1")
    return repo


def run_official(repo: Path, script: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, script, *args], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def fast_expid(repo: Path, expid: str, new_expid: str, **overrides) -> None:
    """Add ``new_expid`` (``expid`` on a 1-epoch budget) to the dropped-in config, as a user
    would add an experiment."""
    config = repo / "config" / "mmctr_config" / "model_config"
    for path in config.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if expid in data:
            extra = config / "zz_test.yaml"
            current = yaml.safe_load(extra.read_text()) if extra.exists() else {}
            current[new_expid] = dict(data[expid], **FAST, **overrides)
            extra.write_text(yaml.safe_dump(current))
            return
    raise AssertionError(f"{expid} not in {config}")


def test_drop_in_then_the_official_scripts_train_our_models(official):
    repo = official
    original_src = tree(repo / "src")
    result = dropin.drop_in(repo)

    # src/ re-exports every model and the loader; the official files are backed up
    assert result.backup_created and set(result.models) == set(MODELS)
    assert tree(result.backup / "src") == original_src
    init = (repo / "src" / "__init__.py").read_text()
    assert init.startswith(dropin.MARKER) and "from fuxictr_mmctr.models import *" in init
    assert "from fuxictr_mmctr import MMCTRDataLoader" in \
        (repo / "src" / "mmctr_dataloader.py").read_text()
    assert (repo / "src" / "DIN.py").read_text() == OFFICIAL_SRC["DIN.py"]  # left alone

    # the configs of every model, with explicit vocab sizes for FuxiCTR's own processor
    config = repo / "config" / "mmctr_config"
    assert {p.name for p in (ROOT / "config" / "mmctr_config" / "model_config").glob("*.yaml")} \
        == {p.name for p in (config / "model_config").glob("*.yaml")}
    datasets = yaml.safe_load((config / "dataset_config.yaml").read_text())
    assert not result.skipped and set(datasets) == set(result.datasets)
    for dataset_id, spec in datasets.items():
        for col in spec["feature_cols"]:
            if col["type"] in ("categorical", "sequence"):
                assert isinstance(col["vocab_size"], int), (dataset_id, col)
    sample_cols = {c["name"]: c for c in datasets["MicroLens_sample"]["feature_cols"]}
    assert sample_cols["item_id"]["vocab_size"] == 401  # the tiny sample's 400 items + padding
    # FuxiCTR's processor drops pretrain_dim; FuxiCTR's FeatureMap takes it from feature_specs
    assert "embedding_dim" not in sample_cols["item_emb_d128"]
    assert datasets["MicroLens_sample"]["feature_specs"] == [
        {"name": "item_emb_d128", "pretrain_dim": 128}]
    assert "feature_specs" not in datasets["MicroLens_1M_x1"]  # explicit embedding_dim: 128
    pretrained = {c["name"]: c for c in datasets["MicroLens_sample_pretrained"]["feature_cols"]}
    assert pretrained["item_id"]["pretrained_emb"].endswith(".h5")
    assert pretrained["item_id"]["vocab_size"] == 402  # n_items + 2
    assert (repo / pretrained["item_id"]["pretrained_emb"]).is_file()

    # the generated src/ is what the official import lines see
    model_zoo = import_src(repo)
    assert all(getattr(model_zoo, name) is cls for name, cls in MODELS.items())
    assert model_zoo.MMCTRDataLoader is MMCTRDataLoader

    # the official scripts, unchanged, train models of this package: DIN through FuxiCTR's
    # own pretrained embedding (the h5 written by drop-in), another model with the vocab sizes
    # read from the data and the 128-d item embedding column
    other = next((m for m in ("DCNv2", "DIN_DCN", "FiBiNET", "TransformerDCN") if m in MODELS),
                 "DIN")
    fast_expid(repo, "DIN_sample_pretrained", "DIN_pretrained_dropin")
    fast_expid(repo, f"{other}_sample", f"{other}_dropin")
    for expid, dataset_id in [("DIN_pretrained_dropin", "MicroLens_sample_pretrained"),
                              (f"{other}_dropin", "MicroLens_sample")]:
        run_official(repo, "run_expid.py", "--config", "config/mmctr_config", "--expid", expid)
        log = (repo / "checkpoints" / dataset_id / f"{expid}.log").read_text()
        assert "AUC" in log and "Traceback" not in log, log[-2000:]
        line = [ln for ln in (repo / "mmctr_config.csv").read_text().splitlines()
                if f"[exp_id] {expid}," in ln][-1]
        assert float(line.split("AUC: ")[1].split(" ")[0]) > 0.55, line
    # the feature map the official flow builds has the 128-d column's pretrain_dim, so the
    # model projects it to its embedding_dim, as this package's own scripts do
    log = (repo / "checkpoints" / "MicroLens_sample" / f"{other}_dropin.log").read_text()
    specs = log.split("Feature specs: ")[1]
    assert "'pretrain_dim': 128" in specs.split('"item_emb_d128"')[1].split("\n")[0]

    run_official(repo, "prediction.py", "--config", "config/mmctr_config", "--expid",
                 "DIN_pretrained_dropin")
    zip_path = repo / "submission" / "DIN_pretrained_dropin.zip"
    report = check_submission_zip(zip_path, repo / "data" / "MicroLens_1M_x1" / "test.parquet")
    assert report.n_rows == 1000
    with zipfile.ZipFile(zip_path) as zf:
        assert pd.read_csv(zf.open("prediction.csv"))["Task1"].between(0, 1).all()

    # idempotent: a second drop-in keeps the first backup (the official files)
    again = dropin.drop_in(repo)
    assert not again.backup_created and tree(again.backup / "src") == original_src
    assert (config / "model_config" / "zz_test.yaml").exists()  # the user's expids are kept

    # undo restores the official src/ and removes what drop-in wrote
    assert cli.main(["drop-in", str(repo), "--undo"]) == 0
    assert tree(repo / "src") == original_src
    assert not (repo / dropin.BACKUP_DIR).exists()
    assert sorted(tree(config)) == ["model_config/zz_test.yaml"]  # only the user's file is left
    assert not (repo / pretrained["item_id"]["pretrained_emb"]).exists()
    assert (repo / "config" / "din_config" / "model_config.yaml").read_text() == OFFICIAL_CONFIG


def test_refuses_what_is_not_the_official_repo(tmp_path, caplog):
    with pytest.raises(ConfigError, match="does not look like the official challenge "
                                          "repository .*no run_expid.py and no src/"):
        dropin.drop_in(tmp_path)
    assert cli.main(["drop-in", str(tmp_path)]) == 2
    assert "does not look like" in caplog.text


def test_undo_without_drop_in_is_refused(tmp_path):
    repo = make_official_repo(tmp_path)
    with pytest.raises(ConfigError, match="nothing to undo"):
        dropin.undo(repo)


def test_missing_data_leaves_datasets_out_and_keeps_explicit_ones(tmp_path):
    repo = make_official_repo(tmp_path)  # no data/ at all
    result = dropin.drop_in(repo)
    assert "MicroLens_1M_x1" in result.datasets  # the real-data config is explicit already
    assert "MicroLens_sample" in result.skipped
    assert "not found under" in result.skipped["MicroLens_sample"]
    assert "MicroLens_1M_x1_pretrained" in result.skipped  # needs item_info to convert
    text = (repo / "config" / "mmctr_config" / "dataset_config.yaml").read_text()
    assert "# Left out: MicroLens_sample" in text
    dropin.undo(repo)
    assert tree(repo / "src") == {k: v.encode() for k, v in OFFICIAL_SRC.items()}


def test_changed_src_after_drop_in_is_not_backed_up_over_the_original(tmp_path):
    repo = make_official_repo(tmp_path)
    dropin.drop_in(repo)
    (repo / "src" / "__init__.py").write_text("# the user's own\n")
    with pytest.raises(ConfigError, match="--undo"):
        dropin.drop_in(repo)
    assert (repo / dropin.BACKUP_DIR / "src" / "__init__.py").read_text() == \
        OFFICIAL_SRC["__init__.py"]


def test_existing_user_config_is_backed_up_and_restored(tmp_path):
    repo = make_official_repo(tmp_path)
    mine = repo / "config" / "mmctr_config"
    mine.mkdir()
    (mine / "dataset_config.yaml").write_text("mine: {}\n")
    dropin.drop_in(repo)
    assert (repo / dropin.BACKUP_DIR / "config" / "mmctr_config" / "dataset_config.yaml").exists()
    dropin.undo(repo)
    assert (mine / "dataset_config.yaml").read_text() == "mine: {}\n"
