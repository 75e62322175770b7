"""``mmctr report``: one HTML page of a sweep, a config folder's runs or a pipeline, with plots.

::

    mmctr report DIN_sample_tuner_config.csv                 # a sweep's results CSV
    mmctr report DIN_bench_tuner_config.*.csv --out bench.html   # a sweep over several datasets
    mmctr report config/mmctr_config                         # the runs of a config folder
    mmctr report work/pipeline                               # a pipeline work dir (report.json)

What the page holds (:mod:`.report_page` draws it; matplotlib, no network, no JavaScript):

* **runs** (a results CSV or a config folder, whose CSV is ``<config name>.csv`` in the
  directory the runs ran from): headline figures, a table of every expid with its validation
  metrics, the swept hyper-parameters, the oracle AUC and AUC / oracle where the data is a
  generated sample (its manifest ``_SUCCESS``), the epochs run and the best one; the valid AUC
  of every run as bars; each metric against each swept hyper-parameter (the keys whose values
  differ between the runs' configs: a tuner's enumerated configs hold each expid's params); the
  valid AUC and train loss per epoch of each run, read from FuxiCTR's log
  ``<model_root>/<dataset_id>/<expid>.log``;
* **a pipeline** (``<work-dir>/report.json`` of ``mmctr pipeline``): its stages with seconds,
  each item side's models, the blend against its members, the best model, the hidden test AUC
  over the oracle where known, and the training curves of the logs found in the work dir.

Relative paths in a results CSV's rows (``--config``, ``model_root``, ``data_root``) are read
from the CSV's folder, the directory the runs ran from, so the page can be made from anywhere.
What cannot be found (a log, a config) leaves its cells or plot out, with a note; keys of
``report.json`` this version does not know are ignored.
"""
from __future__ import annotations

import json
import logging
import math
import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml
from fuxictr.utils import load_config

from ..data.sample_store import sample_oracle
from ..errors import ConfigError
from ..io import PathLike
from .artifacts import DATA_KEYS
from .report_page import (PALETTE, Cell, Facts, Page, Plot, Section, Table, Text, number, plot,
                          text, write_page)
from .results import parse_metric_line, read_results, results_file

logger = logging.getLogger(__name__)

PIPELINE_REPORT = "report.json"
# Keys that differ between runs without being hyper-parameters of the sweep.
_NOT_SWEPT = frozenset({"model_id", "dataset_id", "data_root", "feature_cols", "data_loader",
                        "tracking", "verbose", "gpu"}) | DATA_KEYS
_LABEL_CHARS = 28  # longer values are cut in plot labels (the table has them whole)


# ---------------------------------------------------------------------------- what is read

@dataclass
class EpochPoint:
    """One evaluation of a run's ``fit``, read from its log.

    Attributes:
        epoch: the epoch (from 1).
        metrics: the validation metrics of the evaluation.
        train_loss: the log's ``Train loss`` before it (None when absent).
    """

    epoch: int
    metrics: Dict[str, float]
    train_loss: Optional[float] = None


@dataclass
class RunSummary:
    """What the page shows of one run.

    Attributes:
        expid: the experiment id (the row label).
        dataset_id: its dataset ("" when unknown).
        metrics: the validation metrics of its best checkpoint.
        params: its settings (the resolved config; ``{}`` when the config was not found).
        oracle: the AUC of the true click probability on its valid split (generated samples),
            else None.
        curve: its evaluations, in order (empty without a log).
        log: the log the curve came from.
    """

    expid: str
    dataset_id: str = ""
    metrics: Dict[str, float] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    oracle: Optional[float] = None
    curve: List[EpochPoint] = field(default_factory=list)
    log: Optional[Path] = None

    @property
    def ratio(self) -> Optional[float]:
        """Valid AUC / oracle AUC, where both are known."""
        auc = self.metrics.get("AUC")
        return auc / self.oracle if auc is not None and self.oracle else None

    @property
    def best_epoch(self) -> Optional[int]:
        """The epoch whose evaluation had the highest AUC (the first metric without AUC)."""
        scored = [(p.metrics.get("AUC"), p.epoch) for p in self.curve if p.metrics]
        scored = [(v, e) for v, e in scored if v is not None]
        return max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None


_EVALUATION = re.compile(r"Evaluation @epoch (\d+) - batch (\d+)")
_TRAIN_LOSS = re.compile(r"Train loss: ([-+0-9.eEnaif]+)")
_METRICS = re.compile(r"\[Metrics\] (.*?)(?: \(\d+ rows from \d+ ranks\))?\s*$")


def read_log_curve(path: PathLike) -> List[EpochPoint]:
    """The evaluations of ``fit`` in a FuxiCTR log: each ``Evaluation @epoch N`` line with the
    ``[Metrics]`` line after it and the ``Train loss`` line before it (the final evaluation of
    the best checkpoint is not one of them). ``[]`` for a missing or unreadable log."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    points: List[EpochPoint] = []
    loss: Optional[float] = None
    epoch: Optional[int] = None
    for line in lines:
        found = _TRAIN_LOSS.search(line)
        if found:
            loss = _float(found.group(1))
            continue
        found = _EVALUATION.search(line)
        if found:
            epoch = int(found.group(1))
            continue
        found = _METRICS.search(line)
        if found and epoch is not None:
            try:
                metrics = parse_metric_line(found.group(1))
            except ValueError:
                metrics = {}
            points.append(EpochPoint(epoch, metrics, loss))
            epoch, loss = None, None
    return points


def _float(value: str) -> Optional[float]:
    try:
        return float(value)
    except ValueError:
        return None


def oracle_auc(data_root: Optional[PathLike]) -> Optional[float]:
    """The valid oracle AUC of the sample at ``data_root`` (its manifest), or None."""
    if not data_root:
        return None
    try:
        return float(sample_oracle(Path(data_root))["valid"]["AUC"])
    except (KeyError, TypeError, ValueError):
        return None


def _config_of(command: str, base: Path, csv_name: str = "") -> Optional[Path]:
    """The ``--config`` folder of a results row's command line, read from ``base``. A tuner
    file (a Ray driver's ``run_param_tuner.py --config X.yaml``) stands for the folder FuxiCTR
    enumerated it into: ``X/`` or, for a grid over several datasets, ``X/<csv name>/``."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        value = None
        if word == "--config" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--config="):
            value = word.split("=", 1)[1]
        if value:
            path = Path(value) if Path(value).is_absolute() else base / value
            if path.suffix in (".yaml", ".yml") and path.is_file():
                folder = path.with_suffix("")
                return next((d for d in (folder / csv_name, folder) if csv_name and d.is_dir()),
                            folder)
            return path
    return None


def _params(config_dir: Optional[Path], expid: str) -> Dict[str, Any]:
    if config_dir is None or not config_dir.is_dir():
        return {}
    try:
        return dict(load_config(str(config_dir), expid))
    except (AssertionError, RuntimeError, KeyError, OSError, yaml.YAMLError):
        return {}


def _resolve(value, base: Path) -> Optional[Path]:
    if not value:
        return None
    path = Path(str(value))
    return path if path.is_absolute() else base / path


def runs_from_results(csv: PathLike, config_dir: Optional[PathLike] = None) -> List[RunSummary]:
    """Every expid of a results CSV with its config, oracle and log curve.

    Args:
        csv: FuxiCTR's results CSV (:func:`~fuxictr_mmctr.train.results.read_results`).
        config_dir: the config folder of its runs; default: the ``--config`` of each row's
            command line (a sweep's enumerated tuner folder), read from the CSV's folder.

    Raises:
        ConfigError: not a results CSV, or one without rows.
    """
    csv = Path(csv)
    if not csv.is_file():
        raise ConfigError("no such results CSV", path=csv)
    rows = read_results(csv)
    if not rows:
        raise ConfigError("the results CSV has no rows yet", path=csv)
    base = csv.resolve().parent
    runs = []
    for expid, row in rows.items():
        folder = Path(config_dir) if config_dir is not None else \
            _config_of(row.command, base, csv.stem)
        params = _params(folder, expid)
        dataset = row.dataset_id or str(params.get("dataset_id", ""))
        model_root = _resolve(params.get("model_root", "./checkpoints/"), base)
        log = model_root / dataset / f"{expid}.log"
        runs.append(RunSummary(expid=expid, dataset_id=dataset, metrics=dict(row.valid),
                               params=params, oracle=oracle_auc(_resolve(params.get("data_root"),
                                                                         base)),
                               curve=read_log_curve(log), log=log if log.exists() else None))
    return runs


def runs_from_records(records: Iterable[Mapping], *, expid: Sequence[str],
                      metrics: Mapping[str, str], params: Sequence[str] = (),
                      dataset: Sequence[str] = (), oracle: Optional[str] = None
                      ) -> List[RunSummary]:
    """Runs from rows of a table (a benchmark's JSON): each record's ``expid`` fields joined
    make its label, ``metrics`` maps a metric's name on the page to its field, ``params`` are
    its settings, ``dataset`` fields joined its dataset, ``oracle`` the field of its oracle AUC.
    """
    runs = []
    for r in records:
        runs.append(RunSummary(
            expid=" ".join(str(r[k]) for k in expid),
            dataset_id="_".join(str(r[k]) for k in dataset),
            metrics={name: float(r[key]) for name, key in metrics.items()
                     if r.get(key) is not None},
            params={k: r.get(k) for k in params},
            oracle=float(r[oracle]) if oracle and r.get(oracle) else None))
    return runs


# ---------------------------------------------------------------------------- runs on the page

def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _label(value) -> str:
    textual = value if isinstance(value, str) else _key(value)
    return textual if len(textual) <= _LABEL_CHARS else textual[:_LABEL_CHARS - 1] + "…"


def swept_keys(runs: Sequence[RunSummary]) -> List[str]:
    """The settings whose values differ between runs (a key a run lacks counts as a value)."""
    known = [r for r in runs if r.params]
    if len(known) < 2:
        return []
    keys = sorted({k for r in known for k in r.params} - _NOT_SWEPT)
    return [k for k in keys if len({_key(r.params.get(k)) for r in known}) > 1]


def _metric_names(runs: Sequence[RunSummary]) -> List[str]:
    names: List[str] = []
    for r in runs:
        names += [m for m in r.metrics if m not in names]
    return names


def _headline(names: Sequence[str]) -> Optional[str]:
    return "AUC" if "AUC" in names else (names[0] if names else None)


def _ranked(runs: Sequence[RunSummary], metric: Optional[str]) -> List[RunSummary]:
    lower_better = metric is not None and "loss" in metric.lower()

    def score(r):
        value = r.metrics.get(metric) if metric else None
        if value is None or math.isnan(value):
            return math.inf
        return value if lower_better else -value

    return sorted(runs, key=score)


def _series(runs: Sequence[RunSummary]) -> Dict[str, str]:
    """A colour per dataset (all one colour with a single dataset)."""
    datasets = list(dict.fromkeys(r.dataset_id for r in runs))
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(datasets)}


def runs_table(runs: Sequence[RunSummary], keys: Sequence[str]) -> Table:
    """Every run, best first: swept settings, metrics, oracle, AUC / oracle, epochs."""
    names = _metric_names(runs)
    headline = _headline(names)
    ranked = _ranked(runs, headline)
    has_oracle = any(r.oracle for r in runs)
    has_curve = any(r.curve for r in runs)
    multi = len({r.dataset_id for r in runs}) > 1
    header = ["#", "expid"] + (["dataset"] if multi else []) + list(keys) + names
    if has_oracle:
        header += ["oracle AUC", "AUC / oracle"]
    if has_curve:
        header += ["epochs", "best epoch"]
    values = [r.metrics.get(headline) for r in ranked if headline in r.metrics]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    rows = []
    for i, r in enumerate(ranked, 1):
        row = [text(i), text(r.expid)] + ([text(r.dataset_id)] if multi else [])
        row += [text(_setting_text(r.params, k)) for k in keys]
        for name in names:
            value = r.metrics.get(name)
            bar = None
            if name == headline and value is not None and high > low:
                bar = 0.15 + 0.85 * (value - low) / (high - low)
            row.append(number(value, 6, bar=bar))
        if has_oracle:
            row += [number(r.oracle, 4), number(r.ratio, 4)]
        if has_curve:
            row += [text(max((p.epoch for p in r.curve), default="")), text(r.best_epoch)]
        rows.append(row)
    caption = (f"{len(runs)} runs, best {headline} first" if headline else f"{len(runs)} runs")
    return Table(header, rows, highlight=(0,), caption=caption)


def _setting_text(params: Mapping, key: str) -> str:
    if key not in params:
        return ""
    value = params[key]
    return value if isinstance(value, str) else _key(value)


def _ranking_plot(runs: Sequence[RunSummary], metric: str) -> Plot:
    ranked = [r for r in _ranked(runs, metric) if metric in r.metrics][::-1]
    colours = _series(runs)
    height = max(2.6, 0.28 * len(ranked) + 1.0)

    def draw(fig, axes):
        ax = axes[0]
        values = [r.metrics[metric] for r in ranked]
        labels = [r.expid if len(colours) == 1 else f"{r.expid} ({r.dataset_id})"
                  for r in ranked]
        ax.barh(range(len(ranked)), values, color=[colours[r.dataset_id] for r in ranked])
        ax.set_yticks(range(len(ranked)), [_short(lbl, 48) for lbl in labels], fontsize=8)
        low, high = min(values), max(values)
        pad = max((high - low) * 0.15, 0.002)
        ax.set_xlim(low - 3 * pad, high + 2 * pad)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.4f}", va="center", fontsize=7)
        oracles = [r.oracle for r in ranked]
        if all(oracles) and len(set(oracles)) == 1 and oracles[0] < high + 2 * pad:
            ax.axvline(oracles[0], color="#444", linestyle="--", linewidth=1)
            ax.text(oracles[0], len(ranked) - 0.5, " oracle", fontsize=8, va="bottom")
        ax.set_xlabel(f"valid {metric} (axis zoomed)")
        ax.grid(True, axis="x")
        _legend(ax, colours)

    return plot(f"valid {metric} of every run", draw, width=8.5, height=height)


def _short(label: str, n: int) -> str:
    return label if len(label) <= n else label[:n - 1] + "…"


def _legend(ax, colours: Mapping[str, str]) -> None:
    if len(colours) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=c, label=_short(d, 36))
                   for d, c in colours.items()]
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="best")


def _sweep_plot(runs: Sequence[RunSummary], key: str, metrics: Sequence[str]) -> Plot:
    """Each metric against one swept setting: a point per run, coloured by dataset. With one
    dataset a bar marks the mean per value (joined where the values are numbers); with several,
    each dataset's means are joined, so a setting's effect shows within each dataset."""
    colours = _series(runs)
    values = sorted({_key(r.params.get(key)) for r in runs},
                    key=lambda v: (not _numeric(v), _as_number(v), v))
    position = {v: i for i, v in enumerate(values)}
    ordered = all(_numeric(v) for v in values)

    def draw(fig, axes):
        for ax, metric in zip(axes, metrics):
            points = [(position[_key(r.params.get(key))], _metric(r, metric), r) for r in runs]
            points = [p for p in points if p[1] is not None]
            for x, y, r in points:
                offset = (list(colours).index(r.dataset_id) - (len(colours) - 1) / 2) * 0.06
                ax.scatter(x + offset, y, color=colours[r.dataset_id], s=28, zorder=3)
            groups = defaultdict(lambda: defaultdict(list))  # dataset (or all) -> x -> values
            for x, y, r in points:
                groups[r.dataset_id if len(colours) > 1 else ""][x].append(y)
            for dataset, by_x in groups.items():
                xs = sorted(by_x)
                means = [sum(by_x[x]) / len(by_x[x]) for x in xs]
                if len(colours) > 1:
                    ax.plot(xs, means, color=colours[dataset], linewidth=1.0, alpha=0.7, zorder=2)
                else:
                    ax.plot(xs, means, color="#555", linewidth=1.2 if ordered else 0,
                            marker="_", markersize=16, markeredgewidth=1.6, zorder=2)
            ax.set_xticks(range(len(values)), [_label(json.loads(v)) for v in values],
                          fontsize=8, rotation=20 if len(values) > 3 else 0)
            ax.set_xlim(-0.5, len(values) - 0.5)
            ax.set_xlabel(key)
            ax.set_title(f"valid {metric}", fontsize=10)
        _legend(axes[0], colours)

    return plot(f"{', '.join(metrics)} against {key}", draw, panels=len(metrics), width=4.2,
                height=3.3)


def _metric(run: RunSummary, metric: str) -> Optional[float]:
    return run.ratio if metric == "AUC / oracle" else run.metrics.get(metric)


def _numeric(value: str) -> bool:
    return _as_number(value) != math.inf


def _as_number(value: str) -> float:
    try:
        number_ = json.loads(value)
    except ValueError:
        return math.inf
    if isinstance(number_, bool) or not isinstance(number_, (int, float)):
        return math.inf
    return float(number_)


def _curve_plot(runs: Sequence[RunSummary], best: Optional[str]) -> Plot:
    """Valid AUC (the first metric without AUC) and train loss per epoch, a line per run."""
    with_curve = [r for r in runs if r.curve]
    names = _metric_names([RunSummary(r.expid, metrics=p.metrics) for r in with_curve
                           for p in r.curve])
    metric = _headline(names) or "AUC"
    has_loss = any(p.train_loss is not None for r in with_curve for p in r.curve)

    def draw(fig, axes):
        for i, r in enumerate(with_curve):
            colour = PALETTE[i % len(PALETTE)]
            width, alpha = (2.6, 1.0) if r.expid == best else (1.2, 0.8)
            epochs = [p.epoch for p in r.curve if metric in p.metrics]
            axes[0].plot(epochs, [p.metrics[metric] for p in r.curve if metric in p.metrics],
                         marker="o", markersize=3, color=colour, linewidth=width, alpha=alpha,
                         label=_short(r.expid, 40))
            if has_loss:
                points = [(p.epoch, p.train_loss) for p in r.curve if p.train_loss is not None]
                axes[1].plot([e for e, _ in points], [v for _, v in points], marker="o",
                             markersize=3, color=colour, linewidth=width, alpha=alpha)
        axes[0].set_title(f"valid {metric} per epoch", fontsize=10)
        axes[0].set_xlabel("epoch")
        if has_loss:
            axes[1].set_title("train loss per epoch", fontsize=10)
            axes[1].set_xlabel("epoch")
        for ax in axes:
            ax.xaxis.get_major_locator().set_params(integer=True)
        if len(with_curve) <= 12:
            axes[0].legend(fontsize=7, frameon=False)

    return plot(f"valid {metric} and train loss per epoch", draw, panels=2 if has_loss else 1,
                width=5.4, height=3.6)


def runs_section(runs: Sequence[RunSummary], title: str = "Runs") -> Section:
    """Headline figures, the table of every run, its ranking, each metric against each swept
    setting, and the curves per epoch."""
    section = Section(title)
    if not runs:
        section.blocks.append(Text("No runs."))
        return section
    names = _metric_names(runs)
    headline = _headline(names)
    best = _ranked(runs, headline)[0]
    facts = [("runs", len(runs)), ("best", best.expid)]
    if headline in best.metrics:
        facts.append((f"best valid {headline}", f"{best.metrics[headline]:.4f}"))
    if best.ratio is not None:
        facts.append(("best AUC / oracle", f"{best.ratio:.4f}"))
    datasets = sorted({r.dataset_id for r in runs if r.dataset_id})
    if datasets:
        facts.append(("datasets", ", ".join(datasets) if len(datasets) <= 2 else len(datasets)))
    section.blocks.append(Facts(facts))
    keys = swept_keys(runs)
    section.blocks.append(runs_table(runs, keys))
    if headline:
        section.blocks.append(_ranking_plot(runs, headline))
    plotted = [m for m in names if m in ("AUC", "logloss")] or names[:2]
    if any(r.ratio is not None for r in runs):
        plotted.append("AUC / oracle")
    for key in keys:
        section.blocks.append(_sweep_plot(runs, key, plotted))
    if not keys and len(runs) > 1:
        section.blocks.append(Text("No swept setting found (the runs' configs are the same, or "
                                   "were not found: pass --config)."))
    if any(r.curve for r in runs):
        section.blocks.append(_curve_plot(runs, best.expid))
    # runs read from results: a log was looked for (benchmark rows have none to look for)
    missing = [r.expid for r in runs if not r.curve and r.params and "model_root" in r.params]
    if missing:
        section.blocks.append(Text(f"No log found for {', '.join(missing[:10])}"
                                   f"{' ...' if len(missing) > 10 else ''}: no curve."))
    return section


def runs_page(groups: Mapping[str, Sequence[RunSummary]], title: str,
              subtitle: str = "") -> Page:
    """A page of runs with one :func:`runs_section` per group (a benchmark's tables, a tuner
    each): what ``bench/models.py --html`` and ``bench/sweeps.py --html`` write."""
    return Page(title, subtitle=subtitle,
                sections=[runs_section(runs, title=name) for name, runs in groups.items()])


# ---------------------------------------------------------------------------- a pipeline

def _seconds(value) -> str:
    try:
        total = float(value)
    except (TypeError, ValueError):
        return ""
    minutes, secs = divmod(int(round(total)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes
                                                     else f"{total:.1f}s")


def _outputs(value) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _auc(entry) -> Optional[float]:
    valid = (entry or {}).get("valid") if isinstance(entry, Mapping) else None
    try:
        return float(valid["AUC"]) if isinstance(valid, Mapping) and "AUC" in valid else None
    except (TypeError, ValueError):
        return None


def read_pipeline_report(work_dir: PathLike) -> dict:
    """``<work-dir>/report.json`` as a dict.

    Raises:
        ConfigError: missing, or not a JSON object.
    """
    path = Path(work_dir) / PIPELINE_REPORT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("not a pipeline work dir (no report.json)", path=work_dir) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unreadable pipeline report ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("not a pipeline report (a JSON object expected)", path=path)
    return data


def _find_log(work_dir: Path, expid: str) -> Optional[Path]:
    for path in sorted(work_dir.rglob(f"{expid}.log")):
        return path
    return None


def pipeline_sections(work_dir: PathLike) -> List[Section]:
    """The sections of a pipeline work dir's page: summary, stages, models, blend, curves."""
    work_dir = Path(work_dir)
    data = read_pipeline_report(work_dir)
    oracle = oracle_auc(data.get("data_dir"))  # as the pipeline wrote it
    hidden = data.get("hidden_test") if isinstance(data.get("hidden_test"), Mapping) else {}
    best = data.get("best") if isinstance(data.get("best"), Mapping) else {}
    blend = data.get("blend") if isinstance(data.get("blend"), Mapping) else {}
    models = data.get("models") if isinstance(data.get("models"), Mapping) else {}
    stages = [s for s in data.get("stages") or [] if isinstance(s, Mapping)]

    summary = Section("Summary")
    facts = []
    if best:
        facts.append(("best", best.get("name", "")))
        if best.get("valid_AUC") is not None:
            facts.append(("best valid AUC", f"{float(best['valid_AUC']):.4f}"))
    if _auc(blend) is not None:
        facts.append(("blend valid AUC", f"{_auc(blend):.4f}"))
    if oracle:
        facts.append(("oracle valid AUC", f"{oracle:.4f}"))
    for key, label in (("AUC", "hidden test AUC"), ("oracle_AUC", "test oracle AUC"),
                       ("AUC_over_oracle", "test AUC / oracle")):
        if hidden.get(key) is not None:
            facts.append((label, f"{float(hidden[key]):.4f}"))
    if data.get("seconds") is not None:
        facts.append(("time", _seconds(data["seconds"])))
    summary.blocks.append(Facts(facts))
    where = [f"{k}: {data[k]}" for k in ("data_dir", "work_dir", "submission") if data.get(k)]
    if where:
        summary.blocks.append(Text(" · ".join(where)))
    if isinstance(data.get("settings"), Mapping) and data["settings"]:
        summary.blocks.append(Table(["setting", "value"],
                                    [[text(k), text(_outputs(v) if isinstance(v, (list, dict))
                                                    else v)]
                                     for k, v in data["settings"].items()],
                                    caption="settings"))
    sections = [summary]

    if stages:
        section = Section("Stages")
        section.blocks.append(Table(
            ["stage", "seconds", "skipped", "outputs"],
            [[text(s.get("name")), number(s.get("seconds"), 1),
              text("skipped" if s.get("skipped") else ""), text(_outputs(s.get("outputs")))]
             for s in stages]))
        section.blocks.append(_stages_plot(stages))
        sections.append(section)

    if models:
        section = Section("Models")
        # each item side's models together, best first within a side
        ordered = sorted(models.items(), key=lambda kv: (
            str(kv[1].get("item_side", "")) if isinstance(kv[1], Mapping) else "",
            -(_auc(kv[1]) or -math.inf)))
        header = ["expid", "model", "item side", "valid AUC", "valid logloss"]
        if oracle:
            header.append("AUC / oracle")
        rows = []
        for expid, entry in ordered:
            entry = entry if isinstance(entry, Mapping) else {}
            valid = entry.get("valid") if isinstance(entry.get("valid"), Mapping) else {}
            row = [text(expid), text(entry.get("model")), text(entry.get("item_side")),
                   number(valid.get("AUC"), 6), number(valid.get("logloss"), 6)]
            if oracle:
                row.append(number(_auc(entry) / oracle if _auc(entry) else None, 4))
            rows.append(row)
        aucs = [_auc(entry) for _, entry in ordered]
        top = max((a for a in aucs if a is not None), default=None)
        section.blocks.append(Table(header, rows, highlight=[i for i, a in enumerate(aucs)
                                                             if top is not None and a == top]))
        if any(_auc(e) is not None for e in models.values()):
            section.blocks.append(_models_plot(ordered))
        sections.append(section)

    members = blend.get("members") if isinstance(blend.get("members"), Mapping) else {}
    if blend:
        section = Section("Blend")
        facts = [("method", blend.get("method", ""))]
        if _auc(blend) is not None:
            facts.append(("blend valid AUC", f"{_auc(blend):.4f}"))
            member_aucs = [_auc(models.get(m)) for m in members]
            member_aucs = [a for a in member_aucs if a is not None]
            if member_aucs:
                facts.append(("over best member", f"{_auc(blend) - max(member_aucs):+.4f}"))
        section.blocks.append(Facts(facts))
        if blend.get("note"):
            section.blocks.append(Text(str(blend["note"])))
        if members:
            rows = [[text(m), number(w, 4), number(_auc(models.get(m)), 6)]
                    for m, w in members.items()]
            rows.append([text("blend"), text(""), number(_auc(blend), 6)])
            section.blocks.append(Table(["member", "weight", "valid AUC"], rows,
                                        highlight=(len(rows) - 1,)))
            if _auc(blend) is not None:
                section.blocks.append(_blend_plot(members, models, blend))
        sections.append(section)

    runs = []
    for expid, entry in models.items():
        log = _find_log(work_dir, expid)
        if log is not None:
            runs.append(RunSummary(expid, metrics={"AUC": _auc(entry)} if _auc(entry) else {},
                                   curve=read_log_curve(log), log=log))
    if any(r.curve for r in runs):
        section = Section("Training curves")
        section.blocks.append(_curve_plot(runs, best.get("name")))
        sections.append(section)
    return sections


def _stages_plot(stages: Sequence[Mapping]) -> Plot:
    def draw(fig, axes):
        ax = axes[0]
        names = [str(s.get("name")) for s in stages][::-1]
        secs = [float(s.get("seconds") or 0.0) for s in stages][::-1]
        skipped = [bool(s.get("skipped")) for s in stages][::-1]
        ax.barh(range(len(names)), secs, color=["#c7cdd6" if k else PALETTE[0] for k in skipped])
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i, (v, k) in enumerate(zip(secs, skipped)):
            ax.text(v, i, f" {_seconds(v)}{' (skipped)' if k else ''}", va="center", fontsize=7)
        ax.set_xlabel("seconds")
        ax.set_xlim(0, max(secs + [1.0]) * 1.25)
        ax.grid(True, axis="x")

    return plot("seconds per stage", draw, width=8.0, height=max(2.4, 0.32 * len(stages) + 1.0))


def _models_plot(ordered: Sequence[Tuple[str, Any]]) -> Plot:
    entries = [(e, m) for e, m in ordered if _auc(m) is not None][::-1]
    sides = list(dict.fromkeys(str((m or {}).get("item_side", "")) for _, m in entries))
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sides)}

    def draw(fig, axes):
        ax = axes[0]
        values = [_auc(m) for _, m in entries]
        ax.barh(range(len(entries)), values,
                color=[colours[str(m.get("item_side", ""))] for _, m in entries])
        ax.set_yticks(range(len(entries)), [_short(e, 40) for e, _ in entries], fontsize=8)
        low, high = min(values), max(values)
        pad = max((high - low) * 0.15, 0.002)
        ax.set_xlim(low - 3 * pad, high + 2 * pad)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.4f}", va="center", fontsize=7)
        ax.set_xlabel("valid AUC (axis zoomed)")
        ax.grid(True, axis="x")
        _legend(ax, {f"item side: {s}": c for s, c in colours.items()} if len(sides) > 1
                else {})

    return plot("valid AUC of each model, by item side", draw, width=8.0,
                height=max(2.4, 0.32 * len(entries) + 1.0))


def _blend_plot(members: Mapping, models: Mapping, blend: Mapping) -> Plot:
    names = [m for m in members if _auc(models.get(m)) is not None]

    def draw(fig, axes):
        ax = axes[0]
        values = [_auc(models.get(m)) for m in names] + [_auc(blend)]
        labels = [f"{_short(m, 28)}\nweight {float(members[m]):.2f}" for m in names] + \
            [f"blend\n({blend.get('method', '')})"]
        colours = [PALETTE[0]] * len(names) + [PALETTE[1]]
        ax.bar(range(len(values)), values, color=colours)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        low, high = min(values), max(values)
        pad = max((high - low) * 0.15, 0.002)
        ax.set_ylim(low - 3 * pad, high + 2 * pad)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.4f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("valid AUC (axis zoomed)")
        ax.grid(True, axis="y")

    return plot("the blend against its members", draw, width=max(5.0, 1.3 * len(names) + 2.5),
                height=3.6)


# ---------------------------------------------------------------------------- the command

def classify(path: PathLike) -> str:
    """``"results"`` (a results CSV), ``"pipeline"`` (a work dir with report.json, or that
    file), or ``"config"`` (a FuxiCTR config folder).

    Raises:
        ConfigError: none of these.
    """
    path = Path(path)
    if path.is_file() and path.name == PIPELINE_REPORT:
        return "pipeline"
    if path.is_file():
        return "results"
    if path.is_dir() and (path / PIPELINE_REPORT).is_file():
        return "pipeline"
    if path.is_dir() and ((path / "model_config.yaml").is_file()
                          or (path / "model_config").is_dir()):
        return "config"
    if not path.exists():
        raise ConfigError("no such file or folder", path=path)
    raise ConfigError("not a results CSV, a config folder (model_config) or a pipeline work dir "
                      "(report.json)", path=path)


def build_page(paths: Sequence[PathLike], config_dir: Optional[PathLike] = None,
               title: Optional[str] = None) -> Page:
    """The page of ``paths``: the sections of each pipeline, then one section of the runs of
    every results CSV and config folder (several CSVs: one sweep over several datasets).

    A config folder's runs are the rows of its results CSV, ``<config name>.csv`` in the
    working directory (FuxiCTR's convention).
    """
    sections: List[Section] = []
    runs: List[RunSummary] = []
    names = []
    for path in paths:
        kind = classify(path)
        path = Path(path)
        names.append(path.name or str(path))
        if kind == "pipeline":
            sections += pipeline_sections(path.parent if path.is_file() else path)
        elif kind == "config":
            csv = results_file(path)
            if not csv.is_file():
                raise ConfigError(f"no results CSV {csv} in {Path.cwd()} (FuxiCTR writes "
                                  "<config name>.csv where the runs ran: run mmctr report "
                                  "there, or pass the CSV)", path=path)
            runs += runs_from_results(csv, config_dir=path)
        else:
            runs += runs_from_results(path, config_dir=config_dir)
    if runs:
        sections.append(runs_section(runs))
    kinds = {classify(p) for p in paths}
    heading = title or (("Pipeline" if kinds == {"pipeline"} else "Runs") + ": " + ", ".join(names))
    return Page(heading, subtitle="made from " + ", ".join(str(p) for p in paths),
                sections=sections)


def write_report(paths: Sequence[PathLike], out: PathLike = "report.html",
                 config_dir: Optional[PathLike] = None, title: Optional[str] = None) -> Page:
    """Build the page of ``paths`` (:func:`build_page`) and write it to ``out`` atomically."""
    page = build_page(paths, config_dir=config_dir, title=title)
    write_page(page, out)
    logger.info("Report written: %s (%d tables, %d plots)", out, len(page.tables),
                len(page.plots))
    return page
