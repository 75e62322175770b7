"""What a run needs at its end, checked when it starts: a failure after hours of training is
refused in the first seconds instead.

FuxiCTR learns that a metric is unknown (``metrics: [AUC, accuracy]``), that AUC is undefined
(a valid split holding one label class), or that the results CSV cannot be written only after
the last epoch. :func:`check_training_run` checks, before the model is built:

* every name in ``metrics`` and ``monitor`` is one FuxiCTR's ``evaluate_metrics`` computes, and
  ``group_id`` (read at every evaluation, needed by the group metrics ``gAUC``, ``avgAUC``,
  ``MRR``, ``NDCG(k=5)``) is a column the loader ships with each row;
* the valid split holds both label classes where a metric needs them (only its label column
  is read);
* the folders the run writes to (``<model_root>/<dataset_id>/``, the results CSV's folder) can
  be written, and the results CSV, if it exists, is one (:func:`.results.read_results`).

:func:`check_prediction_run` does the same for the submission a prediction writes.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import List, Mapping

import numpy as np

from ..data.features import feature_sides
from ..data.schema import LABEL_COLUMN, read_split_columns
from ..errors import ConfigError
from . import artifacts, results

logger = logging.getLogger(__name__)

# What FuxiCTR's ``fuxictr.metrics.evaluate_metrics`` computes (2.3.7 to 2.3.10): plain metrics,
# and group metrics averaged over ``group_id`` (NDCG with its cut-off, e.g. ``NDCG(k=5)``).
PLAIN_METRICS = ("AUC", "logloss", "binary_crossentropy")
GROUP_METRICS = ("gAUC", "avgAUC", "MRR")
_NDCG = re.compile(r"^NDCG\((k=)?\d+\)$")
# Metrics undefined when the labels hold one class (scikit-learn raises on them).
TWO_CLASS_METRICS = ("AUC", "logloss", "binary_crossentropy")


def metric_names(params: Mapping) -> List[str]:
    """The metric names a run computes: ``metrics`` (the final evaluation) and the keys of
    ``monitor`` (every epoch's evaluation), in order, once each."""
    metrics = params.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    monitor = params.get("monitor", "AUC")
    monitored = list(monitor) if isinstance(monitor, Mapping) else [monitor]
    return list(dict.fromkeys([*(metrics or []), *monitored]))


def _is_group_metric(name: str) -> bool:
    return name in GROUP_METRICS or bool(_NDCG.match(name))


def check_metrics(params: Mapping, where: str) -> None:
    """Refuse metric names FuxiCTR cannot compute, and a ``group_id`` the loader does not ship.

    Raises:
        ConfigError: naming the key (``metrics`` or ``monitor``) and the name.
    """
    metrics = params.get("metrics")
    if not metrics or not isinstance(metrics, (list, tuple, str)):
        raise ConfigError(f"{where}: metrics={metrics!r}; expected a list such as "
                          "[AUC, logloss]")
    monitor = params.get("monitor", "AUC")
    if isinstance(monitor, Mapping):
        bad = {k: v for k, v in monitor.items()
               if isinstance(v, bool) or not isinstance(v, (int, float))}
        if bad:
            raise ConfigError(f"{where}: monitor weights must be numbers, got {bad}",
                              option="monitor")
    elif not isinstance(monitor, str):
        raise ConfigError(f"{where}: monitor={monitor!r}; expected a metric name or "
                          "{name: weight}", option="monitor")
    known = [*PLAIN_METRICS, *GROUP_METRICS, "NDCG(k=N)"]
    listed = [metrics] if isinstance(metrics, str) else list(metrics)
    for key, names in (("metrics", listed), ("monitor", metric_names({"metrics": [],
                                                                     "monitor": monitor}))):
        for name in names:
            if not isinstance(name, str) or not (name in PLAIN_METRICS or
                                                 _is_group_metric(name)):
                raise ConfigError(f"{where}: {key} names {name!r}, which FuxiCTR cannot compute "
                                  f"(it knows {', '.join(known)})")
    # FuxiCTR reads the group column of every evaluated batch whenever group_id is set (not
    # only for group metrics): it must be a split column the loader ships in batch_dict.
    group_id = params.get("group_id")
    group = [n for n in metric_names(params) if _is_group_metric(n)]
    if group and not group_id:
        raise ConfigError(f"{where}: {', '.join(group)} average over groups, but group_id is "
                          "not set (e.g. group_id: user_id)")
    if group_id:
        shipped = feature_sides(params.get("feature_cols") or []).split_columns
        if group_id not in shipped:
            raise ConfigError(f"{where}: group_id={group_id!r} is not a column the loader ships "
                              f"with each row (the active row-side columns of feature_cols: "
                              f"{list(shipped)}); FuxiCTR reads it at every evaluation. Name "
                              "one of them, or set group_id: null")


def check_valid_labels(params: Mapping, where: str) -> None:
    """Refuse a valid split on which a metric the run computes is undefined (one label class).

    Only the label column is read.

    Raises:
        DataValidationError: the split's labels are malformed.
        ConfigError: a single class where ``AUC`` or ``logloss`` needs two.
    """
    need = [n for n in metric_names(params) if n in TWO_CLASS_METRICS]
    if not need:
        return
    labels = read_split_columns(params["valid_data"], columns=()).columns[LABEL_COLUMN]
    classes = np.unique(labels)
    if classes.size < 2:
        only = f"only label {int(classes[0])}" if classes.size else "no rows"
        raise ConfigError(f"{where}: valid_data {params['valid_data']} holds {only} in "
                          f"{len(labels)} rows, so {', '.join(need)} (metrics/monitor) cannot be "
                          "computed: use a validation split with clicks and non-clicks",
                          )


def check_writable_folder(folder, what: str) -> None:
    """Refuse a folder that cannot receive files (created if missing; a file is written and
    removed there, which also catches a read-only file system when running as root).

    Raises:
        ConfigError: naming the folder, what it is for, and why.
    """
    folder = Path(folder).absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mmctr-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} there ({exc.strerror or exc})",
                          path=folder) from None


def check_writable_file(path, what: str) -> None:
    """Refuse an output file that exists but cannot be appended to or replaced (a folder, no
    permission), and its folder as :func:`check_writable_folder` does. Nothing is changed."""
    path = Path(path).absolute()
    if path.is_dir():
        raise ConfigError(f"the {what} is a directory", path=path)
    check_writable_folder(path.parent, what)
    if path.exists():
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot write the {what} ({exc.strerror or exc})",
                              path=path) from None


def check_training_run(config_dir, params: Mapping, record: bool = True,
                       writes: bool = True) -> None:
    """Everything ``train`` needs at its end, checked at its start (see the module doc).

    Args:
        config_dir: the config directory (names the results CSV).
        params: the loaded params (:func:`fuxictr_mmctr.train.experiment.load_params`).
        record: the run appends to the results CSV. Default: True.
        writes: the process writes checkpoints and the log (False on torchrun ranks other
            than 0). Default: True.
    """
    where = f"expid {params.get('model_id')!r}"
    check_metrics(params, where)
    check_valid_labels(params, where)
    if writes:
        check_writable_folder(artifacts.model_dir(params), "checkpoints and log")
    if writes and record:
        path = results.results_file(config_dir)
        check_writable_file(path, "results CSV")
        results.read_results(path)  # a file that is not a results CSV: refused now, not at the end


def check_prediction_run(zip_path) -> None:
    """Refuse a submission path that cannot be written, before the test split is scored."""
    zip_path = Path(zip_path)
    if zip_path.suffix.lower() != ".zip":
        raise ConfigError("the submission archive must end in .zip", path=zip_path,
                          option="--out")
    check_writable_file(zip_path, "submission")


__all__ = ["check_metrics", "check_prediction_run", "check_training_run", "check_valid_labels",
           "check_writable_file", "check_writable_folder", "metric_names"]
