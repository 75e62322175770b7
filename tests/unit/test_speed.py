"""Mixed precision, the compiled forward, checkpoints across them, and batches fed to a device
(issue 20). No training: single train steps on a handmade batch. The compile tests trace with
light backends (no code generation); tests/e2e/test_speed_training.py trains with inductor."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import feature_map_for
from test_models import build

from fuxictr_mmctr.data.device import prefetch_to_device
from fuxictr_mmctr.data.loader import MMCTRDataLoader, Share
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.models.layers import TargetAttention
from fuxictr_mmctr.models.speed import CompiledForward, MixedPrecision, strip_compiled_prefix
from fuxictr_mmctr.process_group import Cluster
from fuxictr_mmctr.train.distributed import attach


@pytest.fixture
def batch(handmade_batch):
    return handmade_batch


def ready(model, steps: int = 1):
    """What ``BaseModel.fit`` sets before the first ``train_step``."""
    model._max_gradient_norm, model._steps_per_epoch, model._batch_index = 10.0, steps, 0
    model.train()
    return model


def linear_output_dtypes(model, step):
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        result = step()
    finally:
        for hook in hooks:
            hook.remove()
    return dtypes, result


# ---------------------------------------------------------------------------- precision

def test_bf16_autocasts_the_forward_and_keeps_weights_and_loss_in_float32(tmp_path, batch):
    model = ready(build("DIN", tmp_path, precision="bf16"))
    before = [p.detach().clone() for p in model.parameters()]
    dtypes, loss = linear_output_dtypes(model, lambda: model.train_step(batch))
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # stepped
    with model.precision.autocast():  # the last sigmoid runs in float32 under autocast
        assert model(batch)["y_pred"].dtype == torch.float32


def test_fp32_runs_no_autocast(tmp_path, batch):
    model = ready(build("DIN", tmp_path))
    dtypes, _ = linear_output_dtypes(model, lambda: model.train_step(batch))
    assert set(dtypes) == {torch.float32} and model.precision.scaler is None


def test_fp16_skips_a_step_whose_scaled_gradients_overflow(tmp_path, batch):
    """Scaled gradients that overflow fp16 (here a scale of 2^24): the step is skipped and
    the scale halved."""
    model = ready(build("DIN", tmp_path, precision="fp16"))
    assert model.precision.scaler.get_scale() == 2.0 ** 16  # GradScaler's default start
    scaler = model.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24)
    before = [p.detach().clone() for p in model.parameters()]
    model.train_step(batch)
    assert scaler.get_scale() == 2.0 ** 23
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # zeroed all the same


def test_fp16_unscales_gradients_before_clipping(tmp_path, batch, monkeypatch):
    """The gradient clipped is the true one (the scale removed), close to fp32's."""
    relu = dict(seed=0, attention_hidden_activations="ReLU")  # Dice's eps 1e-9 is not fp16's
    fp32 = ready(build("DIN", tmp_path, **relu))
    fp16 = ready(build("DIN", tmp_path, precision="fp16", **relu))
    fp16.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)  # no overflow
    seen = {}
    clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, **kwargs):
        parameters = list(parameters)
        seen.setdefault("grads", []).append(
            torch.cat([p.grad.reshape(-1).float() for p in parameters if p.grad is not None]))
        return clip(parameters, max_norm, **kwargs)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    fp32.train_step(batch)
    fp16.train_step(batch)
    reference, half = seen["grads"]
    assert torch.isfinite(half).all() and fp16.precision.scaler.get_scale() == 2.0 ** 8
    assert (half - reference).norm() / reference.norm() < 0.05


def test_evaluation_runs_in_float32(tmp_path, batch):
    """Predictions of a bf16 model are those of the same weights in fp32 (no autocast)."""
    fp32 = build("DIN", tmp_path)
    bf16 = build("DIN", tmp_path, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    np.testing.assert_array_equal(bf16.predict([batch]), fp32.predict([batch]))


def test_the_log_states_how_the_train_step_runs(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fuxictr_mmctr.models.base"):
        build("DIN", tmp_path, precision="bf16")
    assert "precision bf16 (autocast cpu bfloat16), eager, tf32 off" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fuxictr_mmctr.models.base"):
        build("DIN", tmp_path, precision="fp16", compile=True, compile_mode="max-autotune")
    assert ("precision fp16 (autocast cpu float16, GradScaler), compiled (torch.compile, "
            "backend inductor, mode max-autotune)") in caplog.text


@pytest.mark.parametrize("key,value", [("precision", "fp64"), ("compile_mode", "fast"),
                                       ("compile_backend", "no-such-backend"),
                                       ("compile", "yes")])
def test_bad_speed_settings_name_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match="expected one of|must be") as info:
        build("DIN", tmp_path, **{"compile": True, key: value})
    assert info.value.option == key


def test_mixed_precision_on_cpu_needs_no_gpu():
    assert MixedPrecision("bf16", "cpu").describe() == "bf16 (autocast cpu bfloat16)"
    assert MixedPrecision("fp32").describe() == "fp32"


# ---------------------------------------------------------------------------- compiled forward

class CountingBackend:
    """A torch.compile backend that runs the captured graph as is and counts compilations."""

    def __init__(self, fail: bool = False):
        self.graphs, self.fail = 0, fail

    def __call__(self, graph_module, example_inputs):
        if self.fail:
            raise RuntimeError("this backend cannot compile")
        self.graphs += 1
        return graph_module.forward


@pytest.fixture
def small_batch(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=8, max_len=6)
    return next(iter(loader))


def test_compiled_forward_runs_training_batches_of_the_first_shape(tmp_path, batch,
                                                                   small_batch):
    model = build("DIN", tmp_path, attention_hidden_activations="ReLU")
    keys = list(model.state_dict())
    backend = CountingBackend()
    compiled = CompiledForward.install(model, backend=backend)
    assert list(model.state_dict()) == keys  # not wrapped: checkpoint keys unchanged
    model.train()
    out = model(batch)["y_pred"]
    graphs = backend.graphs      # on the CPU the attention's gather splits the forward
    model(batch)
    assert graphs >= 1 and backend.graphs == graphs and compiled.compiled_calls == 2
    assert torch.allclose(out, compiled.eager(batch)["y_pred"], atol=1e-6)
    model(small_batch)                          # the last, smaller batch of an epoch: eager
    with torch.no_grad():
        model(batch)                            # no gradients: eager
    model.eval()
    model(batch)                                # evaluation: eager
    assert backend.graphs == graphs and compiled.compiled_calls == 2


def test_a_backend_that_cannot_compile_falls_back_to_eager_once(tmp_path, batch, caplog):
    model = ready(build("DIN", tmp_path))
    compiled = CompiledForward.install(model, backend=CountingBackend(fail=True))
    with caplog.at_level(logging.WARNING, logger="fuxictr_mmctr.models.speed"):
        loss = model.train_step(batch)
        model.train_step(batch)
    assert torch.isfinite(loss) and not compiled.active
    assert caplog.text.count("training eagerly instead") == 1
    assert "this backend cannot compile" in caplog.text


def test_target_attention_scores_every_position_the_same(monkeypatch):
    """Compiled for a GPU, the attention MLP runs on every position instead of the real ones."""
    torch.manual_seed(0)
    layer = TargetAttention(8, attention_units=(16,), max_len=5).eval()
    target, history = torch.randn(4, 8), torch.randn(4, 5, 8)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]],
                        dtype=torch.float32)
    assert not layer.every_position(history)  # eager, CPU: the real positions only
    gathered = layer.scores(target, history, mask)
    monkeypatch.setattr(layer, "every_position", lambda seq: True)
    dense = layer.scores(target, history, mask)
    assert torch.allclose(dense, gathered, atol=1e-6)
    assert (dense.squeeze(1)[mask == 0] == 0).all()  # (B, 1, L): one head


def test_target_attention_with_batch_statistics_keeps_the_gather():
    """Dice normalises over the positions it sees: padding must not enter its statistics."""
    assert TargetAttention(8, attention_units=(16,))._dense_when_compiled
    assert not TargetAttention(8, attention_units=(16,),
                               hidden_activations="Dice")._dense_when_compiled


@pytest.fixture
def world_of_one():
    """A gloo process group of this process alone (an in-memory store: no port, no spawn)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield Cluster(rank=0, world_size=1, local_rank=0, backend="gloo")
    finally:
        dist.destroy_process_group()


def test_the_ddp_train_step_autocasts_scales_and_runs_the_compiled_forward(tmp_path, batch,
                                                                         world_of_one):
    """Through DataParallel.forward_backward (DDP around the model), fp16 with its gradient
    scaler and a compiled forward train exactly as one plain model does."""
    plain = ready(build("DIN", tmp_path, seed=0, precision="fp16",
                        attention_hidden_activations="ReLU"), steps=2)
    wrapped = ready(build("DIN", tmp_path, seed=0, precision="fp16",
                          attention_hidden_activations="ReLU"), steps=2)
    for model in (plain, wrapped):
        model.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    compiled = CompiledForward.install(wrapped, backend=CountingBackend())
    attach(wrapped, world_of_one)
    assert wrapped._dist is not None
    for step in range(2):
        for model in (plain, wrapped):
            model._batch_index = step
            model.train_step(batch)
    assert compiled.compiled_calls == 2  # DDP called the compiled forward
    assert wrapped.precision.scaler.get_scale() == plain.precision.scaler.get_scale()
    for a, b in zip(plain.parameters(), wrapped.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(
        build("DIN", tmp_path, seed=0, attention_hidden_activations="ReLU").parameters(),
        plain.parameters()))  # and training moved the weights


# ---------------------------------------------------------------------------- checkpoints

def test_checkpoints_load_across_compiled_and_eager_models(tmp_path, batch):
    compiled = ready(build("DIN", tmp_path, compile=True, compile_backend="eager"))
    assert compiled.compiled_forward is not None
    compiled.train_step(batch)
    assert compiled.compiled_forward.compiled_calls == 1 and compiled.compiled_forward.active
    path = tmp_path / "compiled.model"
    compiled.save_weights(path)
    saved = torch.load(path)
    eager = build("DIN", tmp_path)
    assert list(saved) == list(eager.state_dict())  # no _orig_mod. keys
    eager.load_weights(path)
    np.testing.assert_array_equal(eager.predict([batch]), compiled.predict([batch]))

    ready(eager).train_step(batch)  # and back: an eager checkpoint into a compiled model
    eager.save_weights(path)
    other = build("DIN", tmp_path, compile=True, compile_backend="eager")
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict([batch]), eager.predict([batch]))


def test_a_checkpoint_of_a_torch_compile_wrapper_loads(tmp_path, batch):
    model = build("DIN", tmp_path)
    wrapped = torch.compile(model)              # lazy: nothing is compiled by state_dict()
    state = wrapped.state_dict()
    assert all(k.startswith("_orig_mod.") for k in state)
    torch.save(state, tmp_path / "wrapped.model")
    plain = build("DIN", tmp_path)
    plain.load_weights(tmp_path / "wrapped.model")
    np.testing.assert_array_equal(plain.predict([batch]), model.predict([batch]))
    assert strip_compiled_prefix({"a": 1}) == {"a": 1}


# ---------------------------------------------------------------------------- batches to a device

def test_to_device_moves_model_inputs_and_keeps_meta_columns_and_shares(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=8)
    assert loader.device.type == "cpu" and not loader.pin_memory
    batch = next(iter(loader))
    meta = torch.device("meta")  # a device every build of torch has: shows what moved
    batch_dict, item_dict, mask = loader.to_device(batch, meta)
    assert batch_dict["user_id"].device.type == "cpu"  # the group id stays on the host
    assert {k for k, v in batch_dict.items() if v.is_meta} == {"likes_level", "views_level",
                                                                "label"}
    assert all(v.is_meta for v in item_dict.values()) and mask.is_meta
    share = loader.to_device(Share(batch, rows=5, global_rows=16), meta)
    assert isinstance(share, Share) and (share.rows, share.global_rows) == (5, 16)
    assert share[2].is_meta


def test_prefetch_to_device_passes_cpu_batches_through():
    batches = [(torch.zeros(2),), (torch.ones(2),)]
    assert list(prefetch_to_device(iter(batches), torch.device("cpu"), None)) == batches


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_pinned_batches_need_cuda(handmade):
    with pytest.raises(ConfigError, match="needs CUDA") as info:
        MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                        item_info=handmade / "item_info.parquet", pin_memory=True)
    assert info.value.option == "pin_memory"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("item_side", ["features", "ids"])
def test_cuda_batches_are_the_cpu_batches_on_the_device(handmade, item_side):
    kwargs = dict(item_info=handmade / "item_info.parquet", batch_size=8, max_len=4,
                  item_side=item_side)
    on_host = list(MMCTRDataLoader(feature_map_for(), handmade / "train.parquet", **kwargs))
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet", gpu=0,
                             num_workers=1, **kwargs)
    assert loader.pin_memory and loader.make_batch(slice(0, 8))[2].is_pinned()
    on_device = list(loader)
    assert len(on_device) == len(on_host) == 5
    for (b_dev, i_dev, m_dev), (b_host, i_host, m_host) in zip(on_device, on_host):
        assert b_dev["user_id"].device.type == "cpu"
        assert m_dev.is_cuda and torch.equal(m_dev.cpu(), m_host)
        assert set(i_dev) == set(i_host)  # the ids route still ships ids only
        for key in i_host:
            assert i_dev[key].is_cuda and torch.equal(i_dev[key].cpu(), i_host[key])
        for key in ("likes_level", "label"):
            assert b_dev[key].is_cuda and torch.equal(b_dev[key].cpu(), b_host[key])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_on_cuda_trains_and_evaluates_from_the_cuda_loader(handmade, tmp_path):
    """user_id as a model input (shipped to the GPU) and the metrics' group id at once."""
    feature_map = feature_map_for(user_as_feature=True)
    feature_map.group_id = "user_id"
    loader = MMCTRDataLoader(feature_map, handmade / "train.parquet", gpu=0, batch_size=8,
                             item_info=handmade / "item_info.parquet", max_len=6)
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    model = ready(build("DIN", tmp_path, seed=0, gpu=0, feature_map=feature_map,
                        precision=precision, tf32=True), steps=len(loader))
    for step, batch in enumerate(loader):
        model._batch_index = step
        assert torch.isfinite(model.train_step(batch))
    assert np.isfinite(model.evaluate(loader)["AUC"])
