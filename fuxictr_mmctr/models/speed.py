"""How a model's train step runs fast: mixed precision, a compiled forward, TF32 matmuls.

Config keys of every model (:class:`~fuxictr_mmctr.models.base.MMCTRModel`), each off by
default so that a config without them trains exactly as before:

* ``precision: fp32 | bf16 | fp16``: the train step's forward runs under ``torch.autocast``
  (:class:`MixedPrecision`); the weights, the optimizer, the loss and the gradients stay
  float32. ``fp16`` adds a ``torch.amp.GradScaler``. bf16 and fp16 autocast also run on the CPU.
* ``compile: true`` with ``compile_mode`` and ``compile_backend``: the forward of training
  batches goes through
  ``torch.compile`` (:class:`CompiledForward`); a backend that cannot compile is reported once
  and the model runs eagerly. The module tree is not wrapped, so checkpoints keep their keys.
* ``tf32: true``: float32 matmuls on TF32 tensor cores (CUDA devices that have them).

Evaluation and prediction run the eager float32 forward whatever these keys say: a validation
AUC measures the weights, not the rounding of one forward, and the few evaluation batches do not
pay for a second compilation.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from ..config_contract import check_value
from ..data.device import tensors
from ..errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS: Dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16,
                                      "fp16": torch.float16}  # config_contract.PRECISIONS
COMPILED_PREFIX = "_orig_mod."  # what torch.compile(module).state_dict() puts before each key


def check_compile_mode(mode: str) -> str:
    """``mode`` if it is one of ``torch.compile``'s modes, else a ConfigError naming the key."""
    return check_value("compile_mode", mode)


def check_compile_backend(backend: str) -> str:
    """``backend`` if torch.compile knows it, else a ConfigError naming the key (listing the
    backends imports torch's compiler, a few seconds: only asked with ``compile: true``)."""
    if not isinstance(backend, str):
        raise ConfigError(f"{backend!r} must be the name of a backend", option="compile_backend")
    if backend == "inductor":
        return backend
    known = torch.compiler.list_backends(exclude_tags=())
    if backend not in known:
        raise ConfigError(f"{backend!r}: expected one of {sorted(known)}",
                          option="compile_backend")
    return backend


class MixedPrecision:
    """Autocast and gradient scaling for one model's train step.

    Args:
        precision: ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"``. Default: ``"fp32"``.
        device: the model's device; autocast runs on its type (``cuda`` or ``cpu``).

    Raises:
        ConfigError: an unknown precision, or bf16 on a CUDA device without bfloat16.

    A train step reads::

        with precision.autocast():
            y_pred = model.forward(batch)["y_pred"]   # bf16/fp16 activations
        loss = loss_fn(y_pred.float(), y_true)        # float32, outside autocast
        precision.backward(loss)                      # scaled for fp16
        precision.step(optimizer, params, max_norm)   # unscale, clip, step, zero
    """

    def __init__(self, precision: str = "fp32", device=None):
        check_value("precision", precision)
        device = torch.device(device or "cpu")
        if precision == "bf16" and device.type == "cuda" and \
                not torch.cuda.is_bf16_supported():
            raise ConfigError(f"bf16: {torch.cuda.get_device_name(device)} has no bfloat16 "
                              "(Ampere or newer has it); use precision: fp16",
                              option="precision")
        self.name = precision
        self.dtype = PRECISIONS[precision]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    @property
    def enabled(self) -> bool:
        """True when the forward runs in a lower precision than float32."""
        return self.name != "fp32"

    def autocast(self):
        """The context the forward runs in: ``torch.autocast`` or nothing for fp32."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, the loss scaled first with fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer, parameters: Iterable[torch.Tensor], max_norm: float) -> None:
        """Clip the (unscaled) gradients to ``max_norm``, step, and zero the gradients.

        With fp16 the scaler skips the step when a gradient is not finite and adapts its scale.
        """
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(parameters, max_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad()

    def describe(self) -> str:
        if not self.enabled:
            return "fp32"
        scaler = ", GradScaler" if self.scaler is not None else ""
        return f"{self.name} (autocast {self.device_type} {str(self.dtype)[6:]}{scaler})"


class FloatSigmoid(nn.Sigmoid):
    """``nn.Sigmoid`` computed in float32 whatever its input's dtype.

    The models' last activation: under autocast the logit comes out of a bf16/fp16 matmul, and
    a probability rounded to bf16 (8 bits) turns 0.998 into 1.0 and the binary cross-entropy's
    gradient into a huge one. In float32 the probability stays inside (0, 1).

    Shapes: any -> the same, float32.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(input.float())


def batch_signature(batch) -> Tuple:
    """The shapes, dtypes and devices of a batch's tensors: what a compiled graph is valid for."""
    return tuple((tuple(t.shape), t.dtype, t.device.type) for t in tensors(batch))


class CompiledForward:
    """A model's forward with training batches run through ``torch.compile``.

    Set as the module's ``forward`` attribute (:meth:`install`), so every caller (FuxiCTR's
    loop, DDP) uses it while the module tree and ``state_dict`` keys stay those of the eager
    model. What runs compiled: training-mode calls with gradients on, for batches shaped like
    the first one (the loader's batch size). Everything else runs the eager forward: evaluation
    and prediction, and the last, smaller batch of an epoch (a second graph with a dynamic batch
    size would cost another compilation, more than that one batch saves).

    If compiling fails (no C++ compiler, no Triton, an operation the backend cannot lower: an
    error of torch's compiler stack), a warning names the error once and the model goes on
    eagerly. Other errors (out of memory, a bug in the model) propagate; an error the eager
    forward raises too is the model's, and propagates as well.

    Args:
        eager: the eager forward, a bound method of the model.
        mode: ``torch.compile``'s mode (``config_contract.COMPILE_MODES``). Default: ``"default"``.
        backend: ``torch.compile``'s backend. Default: ``"inductor"``.
    """

    def __init__(self, eager: Callable, mode: str = "default", backend: Any = "inductor"):
        self.eager = eager
        self.mode = check_compile_mode(mode)
        self.backend = backend
        self.signature: Optional[Tuple] = None
        self.failure: Optional[BaseException] = None
        self.compiled_calls = 0
        try:
            # dynamic=None: a size that changes from batch to batch (DIN's real history
            # positions on the CPU) is made symbolic at its first change, not recompiled for
            # every value; the batch size never changes here (see __call__)
            self.compiled = torch.compile(eager, backend=backend, dynamic=None,
                                          mode=None if mode == "default" else mode)
        except Exception as exc:  # torch.compile itself refuses (e.g. an unsupported Python)
            self._fail(exc)

    @classmethod
    def install(cls, module: nn.Module, mode: str = "default",
                backend: Any = "inductor") -> "CompiledForward":
        """Compile ``module.forward`` in place (an instance attribute, not a wrapper module)."""
        compiled = cls(module.forward, mode=mode, backend=backend)
        module.forward = compiled
        return compiled

    @property
    def active(self) -> bool:
        """False once the backend has failed and the model runs eagerly."""
        return self.failure is None

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        cause = getattr(exc, "inner_exception", None) or exc  # dynamo's BackendCompilerFailed
        while cause.__cause__ is not None:
            cause = cause.__cause__
        lines = [line for line in str(cause).splitlines() if line.strip()]
        reason = f"{type(cause).__name__}: {lines[0][:300] if lines else ''}"
        if cause is not exc:
            reason = f"{type(exc).__name__} ({reason})"
        logger.warning("compile: torch.compile (backend %s, mode %s) failed, training eagerly "
                       "instead: %s", self.backend, self.mode, reason)

    def __call__(self, inputs):
        module = self.eager.__self__
        if self.failure is not None or not module.training or not torch.is_grad_enabled():
            return self.eager(inputs)
        signature = batch_signature(inputs)
        if self.signature is None:
            self.signature = signature
        if signature != self.signature:
            return self.eager(inputs)
        try:
            out = self.compiled(inputs)
        except _compile_errors() as exc:
            self._fail(exc)
            return self.eager(inputs)
        self.compiled_calls += 1
        return out


def _compile_errors() -> Tuple[type, ...]:
    """The exceptions of torch's compiler stack: dynamo's (a failed backend arrives wrapped in
    ``BackendCompilerFailed``) and inductor's C++ build. Imported when first needed: both
    modules are heavy, and torch.compile has imported them by then."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError

    return TorchDynamoException, CppCompileError


def strip_compiled_prefix(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """A state dict without the ``_orig_mod.`` that ``torch.compile(model).state_dict()`` puts
    before every key, so a checkpoint saved from such a wrapper loads into the plain model."""
    if not any(key.startswith(COMPILED_PREFIX) for key in state_dict):
        return state_dict
    return type(state_dict)((key.replace(COMPILED_PREFIX, "", 1)
                             if key.startswith(COMPILED_PREFIX) else key, value)
                            for key, value in state_dict.items())


def set_tf32(enabled: bool, device) -> None:
    """TF32 matmuls on a CUDA device (process-wide, as torch's setting is); nothing on the CPU.

    ``True`` lets float32 matmuls and cuDNN use TF32 tensor cores (Ampere or newer: about 8x
    the float32 rate, a 10-bit mantissa in the products); ``False`` keeps matmuls in full
    float32 (torch's default; cuDNN's own default, TF32 on, is left alone: no model here runs a
    convolution).
    """
    if torch.device(device).type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    if enabled:
        torch.backends.cudnn.allow_tf32 = True
