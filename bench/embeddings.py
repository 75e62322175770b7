"""Task-1 benchmark: build every fusion variant of item_emb_d128 and score it with the fixed DIN.

    python bench/embeddings.py [--data-dir data/sample] [--clip NAME_OR_PATH] [--variants ...]

Builds the components once on the sample (CLIP cache, Word2Vec teacher, projector), fuses them
five ways (gate, mean, pca, teacher, student), writes one item_info per variant, and trains the
challenge's Task-1 DIN on each through ``python run_expid.py --config DIR --expid ID --gpu -1``
on a generated config. The DIN is the repository's ``DIN_sample`` experiment, unchanged except
for the five settings the Task-1 rules let a participant tune (``--embedding-regularizer``,
``--net-regularizer``, ``--net-dropout``, ``--learning-rate``, ``--batch-size``), the same for
every variant. The untouched item_info (``original``) is scored as the reference. Prints the
validation-AUC table; ``--no-train`` stops after writing the files and configs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fuxictr_mmctr.train.results import read_results, results_file  # noqa: E402  (after the path)

logger = logging.getLogger("bench.embeddings")

VARIANTS = ("gate", "mean", "pca", "teacher", "student")
TUNABLE = ("embedding_regularizer", "net_regularizer", "net_dropout", "learning_rate",
           "batch_size")


def _load_yaml(path: Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def write_configs(config_dir: Path, base_dataset: dict, base_model: dict, base: dict,
                  item_infos: dict, data_root: Path, tuned: dict, epochs=None) -> dict:
    """One dataset and one expid per variant; returns variant -> expid."""
    datasets, models, expids = {}, {"Base": base}, {}
    for variant, item_info in item_infos.items():
        ds_id = f"MicroLens_sample_task1_{variant}"
        ds = dict(base_dataset)
        ds["data_root"] = str(data_root) + "/"
        ds["item_info"] = str(item_info)
        for key in ("train_data", "valid_data", "test_data"):
            ds[key] = str(Path(ds[key]).resolve())
        datasets[ds_id] = ds
        expid = f"DIN_task1_{variant}"
        params = dict(base_model, dataset_id=ds_id)
        params.update({k: v for k, v in tuned.items() if v is not None})
        if epochs is not None:
            params["epochs"] = epochs
        models[expid] = params
        expids[variant] = expid
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (("dataset_config.yaml", datasets), ("model_config.yaml", models)):
        with open(config_dir / name, "w") as fh:
            yaml.safe_dump(content, fh, sort_keys=False)
    return expids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT / "data" / "sample",
                   help="sample root (made with preset default if absent)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "data" / "bench_embeddings",
                   help="outputs: item_info per variant, configs, checkpoints "
                   "(data/ is ignored by git)")
    p.add_argument("--clip", help="CLIP name or folder (default: tiny random CLIP, as the "
                   "sample's images carry no natural-image content)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--no-original", action="store_true", help="skip the reference run")
    p.add_argument("--config", type=Path, default=ROOT / "config" / "mmctr_config",
                   help="the repository config the DIN and dataset are taken from")
    p.add_argument("--expid", default="DIN_sample", help="the fixed DIN experiment")
    p.add_argument("--dataset-id", default="MicroLens_sample")
    for key in TUNABLE:
        p.add_argument("--" + key.replace("_", "-"), type=float if key != "batch_size" else int)
    p.add_argument("--epochs", type=int, help="OUTSIDE the Task-1 protocol: cap DIN epochs for a "
                   "quick comparison on a slow machine (printed in the table header)")
    p.add_argument("--w2v-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--no-train", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)

    from fuxictr_mmctr.embeddings.pipeline import (BuildConfig, build_components, export,
                                                   fuse_components)
    from fuxictr_mmctr.embeddings.projector import ProjectorConfig
    from fuxictr_mmctr.embeddings.student import StudentConfig
    from fuxictr_mmctr.embeddings.teacher import TeacherConfig

    data = args.data_dir.resolve()
    if not (data / "MicroLens_1M_x1" / "item_info.parquet").exists():
        from fuxictr_mmctr.data.sample import make_sample

        make_sample(data, preset="default")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfg = BuildConfig(data_dir=data, out=work / "item_info_gate.parquet", work_dir=work / "cache",
                      tiny_clip=args.clip is None, seed=args.seed,
                      teacher=TeacherConfig(epochs=args.w2v_epochs, seed=args.seed),
                      student=StudentConfig(clip=args.clip or StudentConfig.clip),
                      projector=ProjectorConfig(seed=args.seed)).resolved()
    t0 = time.perf_counter()
    comp = build_components(cfg)
    if not comp.complete:
        logger.error("CLIP extraction incomplete")
        return 1
    item_infos, reports = {}, {}
    for variant in args.variants:
        vcfg = BuildConfig(**{**cfg.__dict__, "fusion": variant,
                              "out": work / f"item_info_{variant}.parquet"})
        res = export(vcfg, comp, fuse_components(comp, variant, seed=args.seed))
        item_infos[variant] = res.out
        reports[variant] = res.report
    build_seconds = time.perf_counter() - t0
    if not args.no_original:
        item_infos = {"original": cfg.item_info, **item_infos}

    if (args.config / "model_config").is_dir():
        models = _load_yaml(args.config / "model_config" / "DIN.yaml")
    else:
        models = _load_yaml(args.config / "model_config.yaml")
    base = _load_yaml(args.config / "model_config" / "Base.yaml").get("Base", {}) \
        if (args.config / "model_config" / "Base.yaml").exists() else {}
    base = dict(base, model_root=str(work / "checkpoints") + "/")
    dataset = _load_yaml(args.config / "dataset_config.yaml")[args.dataset_id]
    tuned = {k: getattr(args, k) for k in TUNABLE}
    config_dir = work / "din_task1_config"
    expids = write_configs(config_dir, dataset, models[args.expid], base, item_infos,
                           work / "data_root", tuned, args.epochs)
    logger.info("Configs written to %s (expids %s)", config_dir, list(expids.values()))
    rows = []
    for variant, expid in expids.items():
        auc, secs = None, 0.0
        if not args.no_train:
            t1 = time.perf_counter()
            cmd = [sys.executable, str(ROOT / "run_expid.py"), "--config", str(config_dir),
                   "--expid", expid, "--gpu", "-1"]
            logger.info("Training %s: %s", variant, " ".join(cmd))
            proc = subprocess.run(cmd, cwd=work, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            secs = time.perf_counter() - t1
            if proc.returncode == 0:
                row = read_results(work / results_file(config_dir)).get(expid)
                auc = row.valid.get("AUC") if row else None
            else:
                logger.error("%s failed (exit %d)", expid, proc.returncode)
        rows.append((variant, auc, secs, reports.get(variant, {})))

    print()
    print(f"Task-1 DIN ({args.expid}, tuned: "
          f"{ {k: v for k, v in tuned.items() if v is not None} or 'none'}) on {data}"
          + (f"\nNOT the full protocol: epochs capped at {args.epochs}" if args.epochs else ""))
    print(f"embeddings built in {build_seconds:.1f}s "
          f"({'tiny random CLIP' if args.clip is None else args.clip})")
    print(f"{'variant':10s} {'valid AUC':>10s} {'train s':>8s} {'proj cos':>9s} {'gate mean':>10s}"
          f" {'teacher':>8s} {'imputed':>8s} {'stud-only':>9s}")
    for variant, auc, secs, rep in rows:
        src = rep.get("sources", {})
        gate = rep.get("gate", {}).get("mean")
        pc = rep.get("projector", {}).get("val_cosine")
        print(f"{variant:10s} {auc if auc is not None else float('nan'):10.4f} {secs:8.0f} "
              f"{pc if pc is not None else float('nan'):9.4f} "
              f"{gate if gate is not None else float('nan'):10.4f} "
              f"{src.get('teacher', '-'):>8} {src.get('imputed', '-'):>8} "
              f"{src.get('student_only', '-'):>9}")
    if args.no_train:
        return 0
    with open(work / "results.json", "w") as fh:
        json.dump([{"variant": v, "valid_auc": a, "train_seconds": s} for v, a, s, _ in rows],
                  fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
