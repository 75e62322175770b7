"""Every registered model on the default sample, same data budget, one table.

    python bench/models.py [--config config/mmctr_config] [--models DIN TransformerDCN ...]
                           [--epochs N] [--out bench_models.json]

Each model trains its ``<Model>_sample`` expid through :func:`fuxictr_mmctr.train.experiment.train`
(FuxiCTR's ``fit``: reduce-on-plateau, early stopping, best checkpoint), so all of them see the
same data (the sample, ``max_len``), the same epochs, seed and batch size as ``DIN_sample``.
``--epochs`` overrides the epochs of every model alike (a smaller budget, still equal). The
table: model, validation AUC and logloss of the best checkpoint, train samples/s (train rows x
epochs run / wall time of ``fit``), trainable parameters, and the machine. If ``data/sample``
is missing, the default sample is generated first. Run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.models import MODELS

logger = logging.getLogger("bench.models")
ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def ensure_sample(data_root: Path) -> None:
    if (data_root / "MicroLens_1M_x1" / "train.parquet").exists():
        return
    from fuxictr_mmctr.data.sample import make_sample

    logger.info("No sample at %s: making the default one", data_root)
    make_sample(data_root, preset="default")


def config_with(config_dir: Path, epochs) -> Path:
    """A copy of the config dir where every ``*_sample`` expid runs ``epochs`` epochs."""
    if epochs is None:
        return config_dir
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="bench_models_")) / config_dir.name
    shutil.copytree(config_dir, tmp)
    for path in (tmp / "model_config").glob("*.yaml"):
        text = yaml.safe_load(path.read_text())
        for expid, params in text.items():
            if expid.endswith("_sample"):
                params["epochs"] = int(epochs)
        path.write_text(yaml.safe_dump(text, sort_keys=False))
    return tmp


def count_parameters(config_dir: Path, expid: str) -> int:
    params = experiment.load_params(config_dir, expid)
    params["verbose"] = 0
    model = experiment.build_model(experiment.load_feature_map(params), params)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_rows(config_dir: Path, expid: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(experiment.load_params(config_dir, expid)["train_data"]).metadata.num_rows


def epochs_run(checkpoint: Path) -> int:
    """Epochs ``fit`` ran (early stopping may end it early), read from FuxiCTR's log (beside
    the checkpoint, ``<expid>.log``)."""
    log = Path(checkpoint).with_suffix(".log")
    text = log.read_text() if log.exists() else ""
    return max(1, text.count("Train loss:") or text.count("Epoch=") - 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "mmctr_config"))
    parser.add_argument("--models", nargs="+", default=None, help="default: every model")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the epochs of every model alike (default: the configs')")
    parser.add_argument("--out", default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    names = args.models or sorted(MODELS, key=lambda n: (n != "DIN", n))
    ensure_sample(Path("data/sample"))
    config_dir = config_with(Path(args.config), args.epochs)
    rows = []
    for name in names:
        expid = f"{name}_sample"
        start = time.perf_counter()
        result = experiment.train(config_dir, expid)
        wall = time.perf_counter() - start
        n_epochs = epochs_run(result.checkpoint)
        rows.append(dict(model=name, expid=expid, auc=result.valid_metrics["AUC"],
                         logloss=result.valid_metrics["logloss"], epochs=n_epochs,
                         samples_per_s=train_rows(config_dir, expid) * n_epochs / wall,
                         parameters=count_parameters(config_dir, expid)))
        logger.info("%s", rows[-1])
        if args.out:
            Path(args.out).write_text(json.dumps(dict(machine=machine(), rows=rows), indent=1))
    print(f"\nMachine: {machine()}")
    print(f"Budget: {'config epochs' if args.epochs is None else f'{args.epochs} epoch(s)'}, "
          "seed/batch size/max_len of DIN_sample\n")
    print("| model | valid AUC | valid logloss | epochs | train samples/s | parameters |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['auc']:.4f} | {r['logloss']:.4f} | {r['epochs']} | "
              f"{r['samples_per_s']:.0f} | {r['parameters']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
