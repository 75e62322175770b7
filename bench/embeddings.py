"""Task-1 benchmark: build item_emb_d128 from several sources and fusions and score each with
the fixed DIN.

    python bench/embeddings.py [--data-dir data/sample] [--clip NAME_OR_PATH] [--variants ...]
        [--variant NAME=FUSION:SPEC[+SPEC...]] [--epochs N] [--no-train]

A variant is a set of student sources (``mmctr build-embeddings --source`` specs) and a fusion
(see ``RECIPES``): the CLIP student (a tiny random CLIP unless ``--clip``) under each fusion,
the precomputed columns of ``item_feature.parquet`` alone (no model), the Word2Vec teacher
alone, and fusions of both. ``--variant`` adds one, e.g.
``--variant qwen=pca:vlm:/models/Qwen2.5-VL-7B-Instruct:layer=-2`` or
``--variant bert+siglip=gate:text:/models/bert+image:/models/siglip``; ``--tiny-models`` adds
one per tiny random model family (meaningless features: their extraction throughput). The
sources and the
teacher are built once and shared by the variants (one cache per model source in
``<work-dir>/cache/features/``), one item_info is written per variant, and the challenge's Task-1
DIN is trained on each through ``python run_expid.py --config DIR --expid ID --gpu -1`` on a
generated config. The DIN is the repository's ``DIN_sample`` experiment, unchanged except for
the five settings the Task-1 rules let a participant tune (``--embedding-regularizer``,
``--net-regularizer``, ``--net-dropout``, ``--learning-rate``, ``--batch-size``), the same for
every variant. The untouched item_info (``original``) is scored as the reference. Prints the
validation AUC and each model source's extraction throughput (items/s, encoded in this run);
``--no-train`` stops after writing the files and configs. ``--data-dir`` names any sample
(any preset, variant or bench world; made with the default preset if absent).
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

# variant -> (student sources, fusion); "clip" is the tiny random CLIP unless --clip
RECIPES = {
    "gate": (("clip",), "gate"),
    "mean": (("clip",), "mean"),
    "pca": (("clip",), "pca"),
    "teacher": (("clip",), "teacher"),
    "student": (("clip",), "student"),
    "columns-pca": (("columns",), "pca"),
    "bert-pca": (("columns:txt_emb_BERT",), "pca"),
    "rn50-pca": (("columns:img_emb_CLIPRN50",), "pca"),
    "columns-gate": (("columns",), "gate"),
    "columns-student": (("columns",), "student"),
    "columns+clip-gate": (("columns", "clip"), "gate"),
}
VARIANTS = tuple(RECIPES)
TUNABLE = ("embedding_regularizer", "net_regularizer", "net_dropout", "learning_rate",
           "batch_size")


def parse_variant(text: str):
    """``NAME=FUSION:SPEC[+SPEC...]`` -> ``(name, (sources, fusion))``."""
    name, eq, rest = text.partition("=")
    fusion, colon, specs = rest.partition(":")
    if not eq or not colon or not specs:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=FUSION:SPEC[+SPEC...]")
    return name.strip(), (tuple(s for s in specs.split("+") if s), fusion.strip())


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


def tiny_model_variants(folder: Path, texts) -> dict:
    """One ``pca`` variant per tiny random model family (``--tiny-models``): their features
    carry no meaning; the rows time each family's extraction through the whole pipeline."""
    from fuxictr_mmctr.embeddings import tiny

    folder.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, build in (("siglip", lambda d: tiny.build_tiny_siglip(d, texts)),
                        ("bert", lambda d: tiny.build_tiny_bert(d, texts)),
                        ("st", lambda d: tiny.build_tiny_bert(d, texts, sentence_transformers=True)),
                        ("vit", tiny.build_tiny_vit),
                        ("vlm", lambda d: tiny.build_tiny_vlm(d, texts))):
        built[name] = (folder / name) if (folder / name / "config.json").exists() \
            else build(folder / name)
    return {"tiny-siglip-pca": ((f"clip:{built['siglip']}",), "pca"),
            "tiny-bert-pca": ((f"text:{built['bert']}",), "pca"),
            "tiny-st-pca": ((f"text:{built['st']}",), "pca"),
            "tiny-vit-pca": ((f"image:{built['vit']}",), "pca"),
            "tiny-vlm-pca": ((f"vlm:{built['vlm']}",), "pca")}


def build_variants(cfg, recipes: dict, work: Path, seed: int):
    """Every variant's item_info, sharing sources and the teacher; -> (item_infos, reports)."""
    from dataclasses import replace

    from fuxictr_mmctr.embeddings.pipeline import build_components, export, fuse_components
    from fuxictr_mmctr.embeddings.sources import parse_sources

    groups = {}
    for variant, (sources, fusion) in recipes.items():
        groups.setdefault(tuple(sources), []).append((variant, fusion))
    item_infos, reports, pool = {}, {}, None
    for sources, members in groups.items():
        gcfg = type(cfg)(**{**cfg.__dict__, "sources": parse_sources(sources)})
        need_teacher = any(fusion != "pca" for _, fusion in members)
        comp = build_components(gcfg, need_teacher=need_teacher, reuse=pool)
        if not comp.complete:
            raise SystemExit(f"extraction of {sources} incomplete")
        # what every later group may take as it is: each source once, the teacher once trained
        known = {str(s.spec) for s in comp.sources}
        pool = replace(comp, sources=comp.sources + [s for s in (pool.sources if pool else [])
                                                     if str(s.spec) not in known],
                       teacher=comp.teacher or (pool.teacher if pool else None),
                       corpus=comp.corpus or (pool.corpus if pool else None))
        for variant, fusion in members:
            vcfg = type(cfg)(**{**gcfg.__dict__, "fusion": fusion,
                                "out": work / f"item_info_{variant}.parquet"})
            res = export(vcfg, comp, fuse_components(comp, fusion, seed=seed))
            item_infos[variant], reports[variant] = res.out, res.report
    return item_infos, reports


def throughput(report: dict) -> str:
    """Each model source's items/s where it was encoded in this run."""
    parts = []
    for enc in report.get("encoders", []):
        if enc["kind"] == "columns":
            parts.append(f"{enc['model']}: read {enc['seconds']:.1f}s")
        elif "items_per_second" in enc:
            parts.append(f"{enc['kind']}: {enc['items_per_second']:.0f}/s")
        else:
            parts.append(f"{enc['kind']}: cached")
    return "; ".join(parts) or "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT / "data" / "sample",
                   help="sample root (made with preset default if absent)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "data" / "bench_embeddings",
                   help="outputs: item_info per variant, configs, checkpoints "
                   "(data/ is ignored by git)")
    p.add_argument("--clip", help="CLIP name or folder of the clip source (default: tiny random "
                   "CLIP, as the sample's images carry no natural-image content)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--variant", dest="extra", action="append", type=parse_variant, default=[],
                   metavar="NAME=FUSION:SPEC[+SPEC...]", help="one more variant (repeatable)")
    p.add_argument("--tiny-models", action="store_true", help="add one variant per tiny random "
                   "model family (SigLIP, BERT, sentence-transformers, ViT, LLaVA-style VLM): "
                   "meaningless features, for the extraction throughput of each family")
    p.add_argument("--no-original", action="store_true", help="skip the reference run")
    p.add_argument("--config", type=Path, default=ROOT / "config" / "mmctr_config",
                   help="the repository config the DIN and dataset are taken from")
    p.add_argument("--expid", default="DIN_sample", help="the fixed DIN experiment")
    p.add_argument("--dataset-id", default="MicroLens_sample")
    for key in TUNABLE:
        p.add_argument("--" + key.replace("_", "-"), type=float if key != "batch_size" else int)
    p.add_argument("--epochs", type=int, help="OUTSIDE the Task-1 protocol: cap DIN epochs for a "
                   "quick comparison on a slow machine (printed in the table header)")
    p.add_argument("--w2v-epochs", type=int, default=5, help="the teacher's Word2Vec epochs")
    p.add_argument("--w2v-window", type=int, default=5, help="its context window")
    p.add_argument("--device", default="auto", help="where the models of the sources run")
    p.add_argument("--batch-size-extract", type=int, default=64, help="items per model batch")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--no-train", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)

    from fuxictr_mmctr.embeddings.pipeline import BuildConfig
    from fuxictr_mmctr.embeddings.projector import ProjectorConfig
    from fuxictr_mmctr.embeddings.student import StudentConfig
    from fuxictr_mmctr.embeddings.teacher import TeacherConfig

    data = args.data_dir.resolve()
    if not (data / "MicroLens_1M_x1" / "item_info.parquet").exists():
        from fuxictr_mmctr.data.sample import make_sample

        make_sample(data, preset="default")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    recipes = {v: RECIPES[v] for v in args.variants}
    if args.tiny_models:
        from fuxictr_mmctr.embeddings.data import read_item_side

        side = read_item_side(data / "MicroLens_1M_x1" / "item_info.parquet",
                              data / "item_feature.parquet")
        recipes.update(tiny_model_variants(work / "tiny_models", side.texts[1:]))
    recipes.update(dict(args.extra))
    cfg = BuildConfig(data_dir=data, out=work / "item_info.parquet", work_dir=work / "cache",
                      tiny_clip=args.clip is None, seed=args.seed,
                      teacher=TeacherConfig(epochs=args.w2v_epochs, window=args.w2v_window,
                                            seed=args.seed),
                      student=StudentConfig(clip=args.clip or StudentConfig.clip,
                                            device=args.device,
                                            batch_size=args.batch_size_extract),
                      projector=ProjectorConfig(seed=args.seed, device=args.device)).resolved()
    t0 = time.perf_counter()
    item_infos, reports = build_variants(cfg, recipes, work, args.seed)
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
    dataset = dict(dataset, **{key: str(data / "MicroLens_1M_x1" / f"{split}.parquet")
                               for key, split in (("train_data", "train"),
                                                  ("valid_data", "valid"),
                                                  ("test_data", "test"))})
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
          f"(clip source: {'tiny random CLIP' if args.clip is None else args.clip})")
    print(f"{'variant':18s} {'fusion':8s} {'valid AUC':>10s} {'train s':>8s} {'proj cos':>9s} "
          f"{'gate mean':>10s}  sources (extraction throughput)")
    for variant, auc, secs, rep in rows:
        gate = rep.get("gate", {}).get("mean")
        pc = rep.get("projector", {}).get("val_cosine")
        sources = " + ".join(e["source"] for e in rep.get("encoders", [])) or "-"
        print(f"{variant:18s} {rep.get('fusion', '-'):8s} "
              f"{auc if auc is not None else float('nan'):10.4f} {secs:8.0f} "
              f"{pc if pc is not None else float('nan'):9.4f} "
              f"{gate if gate is not None else float('nan'):10.4f}  {sources} "
              f"({throughput(rep)})")
    if args.no_train:
        return 0
    with open(work / "results.json", "w") as fh:
        json.dump([{"variant": v, "valid_auc": a, "train_seconds": s,
                    "fusion": r.get("fusion"), "encoders": r.get("encoders", []),
                    "data_dir": str(data)} for v, a, s, r in rows], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
