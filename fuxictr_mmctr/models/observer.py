"""What a training run reports after each evaluation of FuxiCTR's ``fit``, for whoever watches it.

FuxiCTR's ``BaseModel.fit`` is the loop: ``train_epoch`` runs the batches through
``train_step`` and calls ``eval_step`` every ``eval_steps`` batches (once per epoch by default),
which evaluates the validation split and calls ``checkpoint_and_earlystop``.
:class:`~fuxictr_mmctr.models.base.MMCTRModel` overrides those hooks to keep a
:class:`FitClock` and, when its ``fit_observer`` is set, hands the observer one
:class:`Evaluation` per ``eval_step``. The observer is any object with an ``evaluated`` method
(:class:`FitObserver`): the model knows nothing of what it does with it (training attaches a
TensorBoard or MLflow tracker, :mod:`fuxictr_mmctr.train.tracking`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Protocol


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of ``fit``, with what the batches since the previous one did.

    Attributes:
        step: the evaluation's number, from 1; the epoch when evaluating once per epoch (the
            default, ``eval_steps: null``).
        epoch: the epoch it happened in, from 1.
        batches: training batches since ``fit`` started (the optimizer's global step count
            with ``accumulation_steps: 1``).
        epochs_done: ``batches / batches per epoch`` (2.5: half-way through the third epoch).
        train_loss: the mean training loss FuxiCTR logs on its ``Train loss:`` line (the sum of
            the batch losses since the previous evaluation, over ``eval_steps``).
        metrics: the validation metrics of this evaluation (every metric of ``metrics`` and the
            monitored ones).
        learning_rate: the learning rate those batches trained with (before a reduction on
            plateau that this evaluation may trigger).
        train_seconds: wall time of those batches.
        eval_seconds: wall time of the evaluation (and of the checkpoint it saved).
        samples: training rows in those batches (the global batches under torchrun).
        improved: the monitored metric improved (the best checkpoint was saved).
        stopped: early stopping ends training after this evaluation.
    """

    step: int
    epoch: int
    batches: int
    epochs_done: float
    train_loss: float
    metrics: Dict[str, float]
    learning_rate: float
    train_seconds: float
    eval_seconds: float
    samples: int
    improved: bool
    stopped: bool

    @property
    def samples_per_s(self) -> float:
        """Training rows per second of the batches before this evaluation."""
        return self.samples / self.train_seconds if self.train_seconds > 0 else float("nan")


class FitObserver(Protocol):
    """Anything ``fit`` can report its evaluations to (``model.fit_observer``)."""

    def evaluated(self, evaluation: Evaluation) -> None:
        """Called after each evaluation of ``fit`` (after the checkpoint and early-stopping
        decision), on the process that observes (rank 0 under torchrun)."""


@dataclass
class FitClock:
    """The counters behind :class:`Evaluation`, kept by the model while it trains.

    ``batch`` is called by every train step, ``evaluation`` by every ``eval_step``; both
    restart what they measure as FuxiCTR restarts its ``Train loss`` sum (at each evaluation
    and at the start of each epoch).
    """

    loss_sum: float = 0.0
    samples: int = 0
    steps: int = 0
    since: float = field(default_factory=time.perf_counter)

    def batch(self, loss: float, rows: int, epoch_start: bool) -> None:
        if epoch_start:
            self.loss_sum = 0.0  # FuxiCTR's train_epoch starts its sum again
        self.loss_sum += loss
        self.samples += int(rows)

    def evaluation(self, *, epoch: int, batches: int, batches_per_epoch: int, eval_steps: int,
                   metrics: Dict[str, float], learning_rate: float, started: float,
                   improved: bool, stopped: bool) -> Evaluation:
        """The :class:`Evaluation` that started at ``started`` (``time.perf_counter``); the
        counters start again."""
        now = time.perf_counter()
        self.steps += 1
        record = Evaluation(
            step=self.steps, epoch=epoch, batches=batches,
            epochs_done=batches / batches_per_epoch if batches_per_epoch else float(epoch),
            train_loss=self.loss_sum / eval_steps, metrics=dict(metrics),
            learning_rate=float(learning_rate), train_seconds=started - self.since,
            eval_seconds=now - started, samples=self.samples, improved=improved,
            stopped=stopped)
        self.loss_sum, self.samples, self.since = 0.0, 0, now
        return record


def batch_rows(batch) -> int:
    """Rows of a training batch: the global batch of a torchrun share (``global_rows``), else
    the rows of its history mask (the third element of the MM-CTR batch)."""
    rows: Optional[int] = getattr(batch, "global_rows", None)
    if rows is not None:
        return int(rows)
    return int(batch[2].shape[0])
