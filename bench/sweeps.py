"""Summarise run_param_tuner.py sweeps over several datasets: each setting's mean over them.

    python run_param_tuner.py --config config/tuners/DIN_bench_tuner_config.yaml --gpu -1
    python bench/sweeps.py config/tuners/DIN_bench_tuner_config.yaml [more tuner configs] [--json out.json]
    python bench/sweeps.py --report bench/results/sweeps.json   # the committed sweeps' tables

A tuner config whose ``dataset_id`` is a list runs the same grid on each dataset
(:func:`fuxictr_mmctr.train.sweep.tuner_files`). This reads back, for every setting of the
grid (the tuner-space keys with more than one value), its validation AUC on each dataset from
the sweep's results files, divides it by the dataset's oracle AUC (the sample manifest's
``oracle.valid.AUC``, when the data is a generated sample), and prints one row per setting:
the AUC per dataset, the mean AUC, the mean AUC / oracle (the selection criterion: every
dataset, static and dynamic, weighs the same), and the rank. Run from the directory the sweep
ran from (the repository root).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from fuxictr_mmctr.train.report import runs_from_records, runs_page
from fuxictr_mmctr.train.report_page import write_page
from fuxictr_mmctr.train.results import read_results, results_file
from fuxictr_mmctr.train.sweep import tuner_files


def oracle_auc(data_root) -> float:
    manifest = Path(data_root) / "_SUCCESS"
    try:
        return float(json.loads(manifest.read_text())["oracle"]["valid"]["AUC"])
    except (OSError, KeyError, ValueError):
        return float("nan")


def summarise(tuner_config) -> dict:
    """{"keys": varied keys, "datasets": [...], "rows": [{setting, per-dataset AUC, ...}]}."""
    spec = yaml.safe_load(Path(tuner_config).read_text())
    varied = [k for k, v in spec["tuner_space"].items() if isinstance(v, list) and len(v) > 1]
    table = defaultdict(dict)  # setting -> dataset -> (auc, oracle)
    datasets = []
    for path in tuner_files(tuner_config):
        config_dir = path.with_suffix("")
        model_cfg = config_dir / "model_config.yaml"
        if not model_cfg.exists():
            continue
        params = yaml.safe_load(model_cfg.read_text())
        data_cfg = yaml.safe_load((config_dir / "dataset_config.yaml").read_text())
        results = read_results(results_file(config_dir))
        for expid, p in params.items():
            if expid not in results:
                continue
            dataset = p["dataset_id"]
            if dataset not in datasets:
                datasets.append(dataset)
            setting = tuple((k, json.dumps(p.get(k), sort_keys=True)) for k in varied)
            table[setting][dataset] = (results[expid].valid["AUC"],
                                       oracle_auc(data_cfg[dataset]["data_root"]))
    rows = []
    for setting, per in table.items():
        aucs = [per[d][0] for d in datasets if d in per]
        ratios = [per[d][0] / per[d][1] for d in datasets if d in per]
        rows.append(dict(setting={k: json.loads(v) for k, v in setting},
                         auc={d: per[d][0] for d in datasets if d in per},
                         mean_auc=float(np.mean(aucs)), mean_ratio=float(np.mean(ratios)),
                         complete=len(aucs) == len(datasets)))
    rows.sort(key=lambda r: (not r["complete"], -r["mean_ratio"]))
    return dict(tuner=str(tuner_config), base_expid=spec["base_expid"], keys=varied,
                datasets=datasets, rows=rows)


def to_markdown(summary: dict) -> str:
    short = [d.replace("MicroLens_bench_", "").replace("_pretrained", "")
             for d in summary["datasets"]]
    lines = [f"`{summary['base_expid']}` ({summary['tuner']}):", "",
             "| rank | " + " | ".join(summary["keys"]) + " | " + " | ".join(short)
             + " | mean AUC | mean AUC/oracle |",
             "| --- " * (len(summary["keys"]) + len(short) + 3) + "|"]
    for i, r in enumerate(summary["rows"], 1):
        values = [json.dumps(r["setting"][k]) for k in summary["keys"]]
        aucs = [f"{r['auc'][d]:.4f}" if d in r["auc"] else "" for d in summary["datasets"]]
        lines.append(f"| {i if r['complete'] else '-'} | " + " | ".join(values) + " | "
                     + " | ".join(aucs) + f" | {r['mean_auc']:.4f} | {r['mean_ratio']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tuners", nargs="*", help="tuner config files")
    parser.add_argument("--json", default=None, help="also write the summaries as JSON")
    parser.add_argument("--report", default=None, metavar="JSON",
                        help="print the tables of summaries written by --json before "
                             "(e.g. bench/results/sweeps.json) instead of reading sweeps")
    parser.add_argument("--html", default=None, metavar="FILE",
                        help="also write the tables as an HTML page with plots (mmctr report's)")
    args = parser.parse_args(argv)
    if args.report:
        summaries = json.loads(Path(args.report).read_text())
    elif args.tuners:
        summaries = [summarise(t) for t in args.tuners]
    else:
        parser.error("give tuner config files or --report JSON")
    for s in summaries:
        print(to_markdown(s) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1))
    if args.html:  # a run per setting and dataset; a section per tuner
        write_page(runs_page({s["tuner"]: runs_from_records(
            [dict(r["setting"], setting=f"#{i}", dataset=d, auc=a) for i, r in
             enumerate(s["rows"], 1) for d, a in r["auc"].items()], expid=("setting",),
            metrics={"AUC": "auc"}, params=s["keys"], dataset=("dataset",))
            for s in summaries}, "bench/sweeps.py"), args.html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
