"""What every MM-CTR model shares, written once on top of FuxiCTR's ``BaseModel``.

A model of this package subclasses :class:`MMCTRModel`, builds its layers, calls
:meth:`MMCTRModel.finish_init`, and writes only ``forward``. The base class owns:

* unpacking the ``(batch_dict, item_dict, mask)`` batch of :class:`~fuxictr_mmctr.data.loader.
  MMCTRDataLoader`, the labels and the group id;
* the item-side embedding: every ``source: item`` feature of the feature map embedded by
  FuxiCTR's ``FeatureEmbedding`` and concatenated per item into ``(B, L+1, D_item)``; with
  ``item_side: ids`` the loader ships only item ids and the item columns (tags, the 128-d
  embedding column) are gathered here from tables held on the model's device;
* the optimizer over trainable parameters only (a frozen pretrained table is not in it), with
  optional weight decay (``Adam``/``AdamW``);
* the train step: gradient accumulation, gradient clipping, optional label smoothing, and
  what makes it fast (:mod:`.speed`): autocast in ``precision: bf16 | fp16`` (with a gradient
  scaler for fp16), a ``torch.compile``d forward (``compile: true``), TF32 matmuls (``tf32``);
* checkpoints written atomically (temp file, then rename), with a recorder the trainer sets;
  a checkpoint saved from a ``torch.compile`` wrapper (``_orig_mod.`` keys) loads too;
* what ``fit`` reports after each evaluation (:mod:`.observer`): every evaluation computes every
  metric of ``metrics`` (not only the monitored one), and a ``fit_observer`` the trainer sets
  receives the train loss, the metrics, the learning rate, seconds and samples/s.

Under ``torchrun`` the model is wrapped by :func:`fuxictr_mmctr.train.distributed.attach`: the
DDP side lives at ``model._dist`` (not a submodule: ``state_dict`` keys are unchanged), and the
train step, ``evaluate``, ``save_weights`` and ``load_weights`` hand over to it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import compat
from ..config_contract import check_value, rule_from_default
from ..data.features import feature_sides
from ..data.loader import item_table
from ..data.schema import TARGET_COLUMN
from ..errors import ConfigError, TrainingDiverged
from ..io import atomic_path
from .layers import use_padding_aware_pooling
from .observer import FitClock, FitObserver, batch_rows
from .speed import (CompiledForward, FloatSigmoid, MixedPrecision, check_compile_backend,
                    check_compile_mode, set_tf32, strip_compiled_prefix)

from fuxictr.pytorch.layers import FeatureEmbedding
from fuxictr.pytorch.models import BaseModel
from fuxictr.pytorch.torch_utils import get_loss

# FuxiCTR 2.3.7's logloss passes `eps`, which scikit-learn 1.5+ rejects (see compat).
compat.patch_fuxictr_metrics()

logger = logging.getLogger(__name__)


class MMCTRModel(BaseModel):
    """Base class of the package's CTR models.

    Args:
        feature_map: FuxiCTR ``FeatureMap`` of the dataset.
        model_id: experiment id; names the checkpoint. Default: ``"MMCTRModel"``.
        gpu: GPU index, -1 for CPU. Default: -1.
        embedding_dim: default embedding size of every feature. Default: 64.
        accumulation_steps: batches whose gradients are summed before one optimizer step.
            Default: 1.
        label_smoothing: targets become ``y * (1 - s) + s / 2`` in the loss. Default: 0.
        weight_decay: decoupled with ``optimizer: AdamW``, L2 with ``Adam``. Default: 0.
        lr_decay_factor: the learning rate is multiplied by it when the monitored metric stops
            improving (FuxiCTR's ``reduce_lr_on_plateau``, whose own factor is 0.1; QIN's
            authors used 0.5). Default: 0.1.
        item_side: ``"features"`` (the loader gathers item columns) or ``"ids"`` (the loader
            ships item ids; item columns are gathered from tables on the model's device).
            Must match the loader's setting (both read the same config key). Default:
            ``"features"``.
        item_info: path of ``item_info.parquet``; read for the device tables with ``ids``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the train step's forward under
            ``torch.autocast`` in that dtype (weights, loss and optimizer stay float32; fp16
            adds a gradient scaler). Evaluation runs in float32. Default: ``"fp32"``.
        compile: run the forward of training batches through ``torch.compile`` (falls back to
            eager, with a warning, where the backend cannot compile). Default: False.
        compile_mode: ``torch.compile``'s mode: ``"default"``, ``"reduce-overhead"`` (CUDA
            graphs), ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``. Default:
            ``"default"``.
        compile_backend: ``torch.compile``'s backend (``torch.compiler.list_backends()``):
            ``"inductor"`` generates kernels; ``"aot_eager"`` only captures the graph (a
            quick check that a model compiles). Default: ``"inductor"``.
        tf32: float32 matmuls on TF32 tensor cores (CUDA; process-wide). Default: False.
        embedding_regularizer, net_regularizer: FuxiCTR regularizer specs. Default: None.
        **kwargs: the rest of FuxiCTR's ``BaseModel`` arguments (``model_root``, ``metrics``,
            ``optimizer``, ``loss``, ``verbose``, ...).

    Shapes: ``B`` batch size, ``L`` history length, ``D_item`` = :attr:`item_info_dim`.
    """

    def __init__(self, feature_map, model_id: str = "MMCTRModel", gpu: int = -1,
                 embedding_dim: int = 64, accumulation_steps: int = 1,
                 label_smoothing: float = 0.0, weight_decay: float = 0.0,
                 lr_decay_factor: float = 0.1, item_side: str = "features",
                 item_info: Optional[str] = None,
                 precision: str = "fp32", compile: bool = False,  # noqa: A002 (the config key)
                 compile_mode: str = "default", compile_backend: str = "inductor",
                 tf32: bool = False,
                 embedding_regularizer=None, net_regularizer=None, **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        check_value("accumulation_steps", accumulation_steps)
        check_value("label_smoothing", label_smoothing)
        self.embedding_dim = embedding_dim
        self.accumulation_steps = int(accumulation_steps)
        self.label_smoothing = float(label_smoothing)
        self.weight_decay = float(weight_decay)
        self.lr_decay_factor = float(check_value("lr_decay_factor", lr_decay_factor))
        sides = feature_sides(feature_map.features)
        self.row_features: List[str] = list(sides.row_inputs)
        self.item_features: List[str] = list(sides.item_inputs)
        self.item_info_dim = sum(self._feature_dim(name) for name in self.item_features)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        use_padding_aware_pooling(self.embedding_layer)  # item_tags' mean, padding found right
        self.item_side = check_value("item_side", item_side)
        self.item_tables: List[str] = []
        if item_side == "ids":
            self._register_item_tables(item_info)
        self._dist = None  # train.distributed.DataParallel under torchrun (not a submodule)
        # Called as recorder(checkpoint, written_file) before each checkpoint's rename.
        self.checkpoint_recorder: Optional[Callable[[str, Path], None]] = None
        # Told about every evaluation of fit (train.tracking sets it on the process that logs).
        self.fit_observer: Optional[FitObserver] = None
        self._fit_clock = FitClock()
        self._last_evaluation: Optional[Dict[str, float]] = None
        self._evaluating = False  # inside fit's eval_step
        self.precision = MixedPrecision(precision, self.device)
        check_value("compile", compile, rule_from_default(False))
        self._compile_mode = check_compile_mode(compile_mode) if compile else None
        self._compile_backend = check_compile_backend(compile_backend) if compile else None
        self.tf32 = bool(check_value("tf32", tf32, rule_from_default(False)))
        self.compiled_forward: Optional[CompiledForward] = None  # set by finish_init

    def _register_item_tables(self, item_info) -> None:
        """Hold every item column but ``item_id`` as a ``(n_items+1, ...)`` device buffer.

        Buffers are not persistent: checkpoints stay small and the tables are read again
        from ``item_info`` when a model is rebuilt for prediction. The table is the loaders'
        (:func:`fuxictr_mmctr.data.loader.item_table`): one read of ``item_info`` per process.
        """
        columns = [name for name in self.item_features if name != TARGET_COLUMN]
        if columns and not item_info:
            raise ConfigError("item_side: ids needs `item_info` to build the item tables")
        table = item_table(item_info, self.feature_map) if columns else None
        for name in columns:
            array = np.require(table.columns[name], requirements=["C", "W"])  # own a copy
            self.register_buffer(f"item_table_{name}", torch.from_numpy(array), persistent=False)
            self.item_tables.append(name)

    # ------------------------------------------------------------------ sizes
    def _feature_dim(self, name: str) -> int:
        spec = self.feature_map.features[name]
        return int(spec.get("emb_output_dim", spec.get("embedding_dim", self.embedding_dim)))

    @property
    def row_feature_dim(self) -> int:
        """Width of :meth:`embed_row_features`: the row features a model embeds."""
        return sum(self._feature_dim(name) for name in self.row_features)

    def field_dims(self, item_vectors: int = 2) -> List[int]:
        """Widths of the fields of ``concat_with_row(row_emb, *items)``: each row feature, then
        each item feature of each of ``item_vectors`` item-wide parts (the target item, the
        pooled history, one per attention head)."""
        item = [self._feature_dim(name) for name in self.item_features]
        return [self._feature_dim(name) for name in self.row_features] + item * item_vectors

    def compile(self, optimizer, loss, lr):
        """FuxiCTR's ``compile`` over trainable parameters only, with weight decay."""
        names = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad"}
        name = names.get(str(optimizer).lower(), optimizer)
        if not hasattr(torch.optim, str(name)):
            raise ConfigError(f"optimizer={optimizer!r} is not a torch.optim optimizer")
        trainable = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = getattr(torch.optim, name)(trainable, lr=lr,
                                                    weight_decay=self.weight_decay)
        self.loss_fn = get_loss(loss)

    def lr_decay(self, factor=None, min_lr=1e-6):
        """FuxiCTR's decay on a plateau (it calls ``lr_decay()``), by :attr:`lr_decay_factor`."""
        return super().lr_decay(self.lr_decay_factor if factor is None else factor, min_lr)

    def get_output_activation(self, task):
        """FuxiCTR's output activation; the sigmoid computed in float32 (under autocast too)."""
        if task == "binary_classification":
            return FloatSigmoid()
        return super().get_output_activation(task)

    def finish_init(self, optimizer, loss, learning_rate: float) -> None:
        """Compile, initialise and move to the device: the last lines of every ``__init__``.

        Then, with ``compile: true``, the forward is wrapped by ``torch.compile`` (the module
        tree is left alone), and the log states how the train step runs.
        """
        self.compile(optimizer, loss, learning_rate)
        self.reset_parameters()
        self.model_to_device()
        set_tf32(self.tf32, self.device)
        if self._compile_mode is not None:
            self.compiled_forward = CompiledForward.install(self, mode=self._compile_mode,
                                                            backend=self._compile_backend)
        logger.info("Train step: precision %s, %s, tf32 %s (device %s; evaluation in fp32, "
                    "eager)", self.precision.describe(),
                    f"compiled (torch.compile, backend {self._compile_backend}, mode "
                    f"{self._compile_mode})"
                    if self.compiled_forward is not None else "eager",
                    "on" if self.tf32 and self.device.type == "cuda" else "off", self.device)

    # ------------------------------------------------------------------ batch
    def get_inputs(self, inputs, feature_source=None):
        """Unpack a batch onto the device.

        Returns:
            ``(X_dict, item_dict, mask)``: row features without labels and meta columns,
            item-side columns ``(B*(L+1), ...)``, history mask ``(B, L)``.
        """
        batch_dict, item_dict, mask = inputs
        X_dict = {}
        for name, value in batch_dict.items():
            if name in self.feature_map.labels:
                continue
            spec = self.feature_map.features[name]
            if spec["type"] == "meta":
                continue
            if feature_source and spec.get("source") not in feature_source:
                continue
            X_dict[name] = value.to(self.device, non_blocking=True)
        item_dict = {name: value.to(self.device, non_blocking=True)
                     for name, value in item_dict.items()}
        return X_dict, item_dict, mask.to(self.device, non_blocking=True)

    def get_labels(self, inputs) -> torch.Tensor:
        """Labels ``(B, 1)`` float."""
        label = inputs[0][self.feature_map.labels[0]]
        return label.to(self.device, non_blocking=True).float().view(-1, 1)

    def get_group_id(self, inputs):
        """The metrics' group ids ``(B,)`` on the host (FuxiCTR calls ``.numpy()`` on them; a
        loader feeding a GPU ships ``user_id`` there when it is also a model input)."""
        return inputs[0][self.feature_map.group_id].cpu()

    # ------------------------------------------------------------------ embeddings
    def embed_row_features(self, X_dict: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Per-row features (likes_level, views_level, user_id when categorical, ...).

        Returns:
            ``(B, row_feature_dim)`` or None when the batch carries no such feature.
        """
        if not X_dict:
            return None
        return self.embedding_layer(X_dict, flatten_emb=True)

    def gather_item_columns(self, item_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """With ``item_side: ids``, add each item column gathered from its device table."""
        if not self.item_tables:
            return item_dict
        ids = item_dict["item_id"].long()                               # (B*(L+1),)
        gathered = {name: getattr(self, f"item_table_{name}")[ids] for name in self.item_tables}
        return {"item_id": item_dict["item_id"], **gathered}

    def embed_items(self, item_dict: Dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        """Embed the history and target items: ``(B*(L+1), ...)`` -> ``(B, L+1, D_item)``."""
        item_dict = self.gather_item_columns(item_dict)
        item_emb = self.embedding_layer(item_dict, flatten_emb=True)  # (B*(L+1), D_item)
        return item_emb.view(batch_size, -1, self.item_info_dim)

    def embed_batch(self, inputs) -> Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor,
                                            torch.Tensor]:
        """The embeddings every model starts from.

        Returns:
            ``(row_emb, target_emb, history_emb, mask)``: ``(B, D_row)`` or None,
            ``(B, D_item)``, ``(B, L, D_item)``, ``(B, L)``.
        """
        X_dict, item_dict, mask = self.get_inputs(inputs)
        row_emb = self.embed_row_features(X_dict)
        item_emb = self.embed_items(item_dict, mask.shape[0])  # (B, L+1, D_item)
        return row_emb, item_emb[:, -1, :], item_emb[:, :-1, :], mask

    @staticmethod
    def concat_with_row(row_emb: Optional[torch.Tensor], *parts: torch.Tensor) -> torch.Tensor:
        """``[row_emb, *parts]`` concatenated on the last axis; ``row_emb`` may be None."""
        return torch.cat(([] if row_emb is None else [row_emb]) + list(parts), dim=-1)

    # ------------------------------------------------------------------ training
    def add_loss(self, return_dict, y_true):
        """The task loss in float32 (whatever dtype autocast left ``y_pred`` in)."""
        if self.training and self.label_smoothing > 0:
            y_true = y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        y_pred = return_dict["y_pred"].float()
        try:
            return self.loss_fn(y_pred, y_true, reduction="mean")
        except RuntimeError as exc:
            # torch's binary_cross_entropy refuses a NaN probability with a message about
            # the range; say what happened instead (checked only on failure: no sync per batch)
            if torch.isfinite(y_pred).all():
                raise
            raise TrainingDiverged(
                f"{self.model_id}: predictions became NaN or infinite at epoch "
                f"{getattr(self, '_epoch_index', 0) + 1}, batch "
                f"{getattr(self, '_batch_index', 0) + 1} (training diverged); lower "
                "learning_rate or set max_gradient_norm", option="learning_rate") from exc

    def train_step(self, batch_data):
        """Forward, backward, and an optimizer step every ``accumulation_steps`` batches
        (and at the end of an epoch), with gradients clipped to ``max_gradient_norm``.

        The forward runs under the ``precision``'s autocast (and compiled with ``compile:
        true``); the loss is computed in float32 outside autocast, scaled before the backward
        with fp16. Under torchrun the forward and backward go through the DDP wrapper
        (:meth:`~fuxictr_mmctr.train.distributed.DataParallel.forward_backward`), gradients
        being all-reduced only on the batch that steps the optimizer."""
        step = self._batch_index + 1
        optimizer_step = step % self.accumulation_steps == 0 or step == self._steps_per_epoch
        if self._dist is not None:
            loss = self._dist.forward_backward(self, batch_data, sync=optimizer_step)
        else:
            with self.precision.autocast():
                return_dict = self.forward(batch_data)
            y_true = self.get_labels(batch_data)
            loss = self.compute_loss(return_dict, y_true)
            self.precision.backward(loss / self.accumulation_steps)
        if optimizer_step:
            self.precision.step(self.optimizer, self.parameters(), self._max_gradient_norm)
        if self.fit_observer is not None:
            # FuxiCTR calls loss.item() right after this step anyway: no extra device sync
            self._fit_clock.batch(loss.item(), batch_rows(batch_data),
                                  epoch_start=self._batch_index == 0)
        return loss

    def fit(self, data_generator, *args, **kwargs):
        """FuxiCTR's ``fit``: the loop, unchanged; the clock of :attr:`fit_observer` starts."""
        self._fit_clock = FitClock()
        return super().fit(data_generator, *args, **kwargs)

    def eval_step(self):
        """FuxiCTR's ``eval_step`` (evaluate, checkpoint, early stop); then the evaluation goes
        to :attr:`fit_observer` with the batches' loss, learning rate, seconds and rows."""
        started = time.perf_counter()
        learning_rate = self.optimizer.param_groups[0]["lr"]
        best, self._last_evaluation = self._best_metric, None
        self._evaluating = True
        try:
            super().eval_step()
        finally:
            self._evaluating = False
        if self.fit_observer is not None and self._last_evaluation is not None:
            self.fit_observer.evaluated(self._fit_clock.evaluation(
                epoch=self._epoch_index + 1, batches=self._total_steps,
                batches_per_epoch=self._steps_per_epoch, eval_steps=self._eval_steps,
                metrics=self._last_evaluation, learning_rate=learning_rate, started=started,
                improved=self._best_metric != best, stopped=self._stop_training))

    def checkpoint_and_earlystop(self, logs, min_delta=1e-6):
        """FuxiCTR's; the evaluation's metrics are kept for :meth:`eval_step`'s observer."""
        self._last_evaluation = dict(logs)
        return super().checkpoint_and_earlystop(logs, min_delta=min_delta)

    def evaluate(self, data_generator, metrics=None):
        """FuxiCTR's ``evaluate``; under torchrun over every rank's block of the split, with
        the same metrics returned on every rank. The evaluations of ``fit`` (which ask for the
        monitored metrics only) compute every metric of ``metrics`` too: the log's and the
        trackers' curves then hold logloss beside AUC (a few ms on a 10,000-row split)."""
        if metrics is not None and self._evaluating:
            metrics = list(dict.fromkeys(list(self.validation_metrics) + list(metrics)))
        if self._dist is not None:
            return self._dist.evaluate(self, data_generator, metrics)
        return super().evaluate(data_generator, metrics)

    def load_weights(self, checkpoint):
        """FuxiCTR's ``load_weights``; under torchrun rank 0 reads and broadcasts."""
        if self._dist is not None:
            return self._dist.load_weights(self, checkpoint)
        return self.read_weights(checkpoint)

    def read_weights(self, checkpoint) -> None:
        """Load a checkpoint file in this process: FuxiCTR's ``load_weights``, and keys saved
        from a ``torch.compile`` wrapper (``_orig_mod.``) are taken as the plain model's."""
        self.to(self.device)
        state_dict = torch.load(checkpoint, map_location="cpu")
        self.load_state_dict(strip_compiled_prefix(state_dict))

    def save_weights(self, checkpoint):
        """Write the checkpoint atomically: a crash never leaves a truncated best model.

        Before the rename, :attr:`checkpoint_recorder` (when set) is called with the
        checkpoint's path and the written temporary file: training sets it to record what the
        weights belong to (:func:`fuxictr_mmctr.train.artifacts.record_checkpoint`). Under
        torchrun only rank 0 writes.
        """
        if self._dist is not None and not self._dist.cluster.is_main:
            return
        with atomic_path(checkpoint) as tmp:
            with open(tmp, "wb") as fh:  # a Python file: a failed write is an OSError we see
                try:
                    torch.save(self.state_dict(), fh)
                except RuntimeError as exc:  # torch's wrapper of a failed write (disk full...)
                    if isinstance(exc.__context__, OSError):
                        raise exc.__context__ from None
                    raise
            if self.checkpoint_recorder is not None:
                self.checkpoint_recorder(checkpoint, tmp)
