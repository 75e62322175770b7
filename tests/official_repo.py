"""A folder laid out like the official challenge repository (reczoo/WWW2025_MMCTR_Challenge).

Its scripts are written here (not copied): they use the official import lines
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
from pathlib import Path

import yaml

from helpers import ROOT

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
