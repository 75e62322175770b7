"""DIN's and DIN_DCN's options from the MM-CTR Task-2 winner: multi-head target attention
(``attention_heads``) and SENET re-weighting of the head's input fields (``use_senet``).

One head and no SENET is DIN as it was before the options, bit for bit: the same state_dict
keys, and ``torch.equal`` outputs against the single-head forward as it was written then
(:func:`forward_before_heads`, kept here as the reference).
"""
from __future__ import annotations

import pytest
import torch
from fuxictr.pytorch.layers import DIN_Attention, SqueezeExcitation
from helpers import padded_history, tiny_model

from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.models.layers import FieldSqueezeExcitation, TargetAttention, history_ages

B, L, D = 6, 7, 5

# The state_dict keys of the tiny DIN and DIN_DCN (tests/helpers.py TINY_MODELS) before the
# options existed: checkpoints trained then still load.
EMBEDDING_KEYS = [
    "embedding_layer.embedding_layer.embedding_layers.likes_level.weight",
    "embedding_layer.embedding_layer.embedding_layers.views_level.weight",
    "embedding_layer.embedding_layer.embedding_layers.item_id.weight",
    "embedding_layer.embedding_layer.embedding_layers.item_tags.weight",
    "embedding_layer.embedding_layer.feature_encoders.item_emb_d128.weight"]
ATTENTION_KEYS = [
    "attention_layers.attention_layer.mlp.0.weight", "attention_layers.attention_layer.mlp.0.bias",
    "attention_layers.attention_layer.mlp.1.alpha",
    "attention_layers.attention_layer.mlp.1.bn.running_mean",
    "attention_layers.attention_layer.mlp.1.bn.running_var",
    "attention_layers.attention_layer.mlp.1.bn.num_batches_tracked",
    "attention_layers.attention_layer.mlp.2.weight", "attention_layers.attention_layer.mlp.2.bias"]
KEYS_BEFORE = {
    "DIN": EMBEDDING_KEYS + ATTENTION_KEYS + [
        "dnn.mlp.0.weight", "dnn.mlp.0.bias", "dnn.mlp.2.weight", "dnn.mlp.2.bias",
        "dnn.mlp.4.weight", "dnn.mlp.4.bias"],
    "DIN_DCN": EMBEDDING_KEYS + ATTENTION_KEYS + [
        "dcn.crossnet.cross.cross_layers.0.weight", "dcn.crossnet.cross.cross_layers.0.bias",
        "dcn.crossnet.cross.cross_layers.1.weight", "dcn.crossnet.cross.cross_layers.1.bias",
        "dcn.parallel_dnn.mlp.0.weight", "dcn.parallel_dnn.mlp.0.bias",
        "dcn.parallel_dnn.mlp.2.weight", "dcn.parallel_dnn.mlp.2.bias",
        "dcn.mlp.mlp.0.weight", "dcn.mlp.mlp.0.bias"],
}


def forward_before_heads(layer, target_item, history_sequence, mask=None):
    """``TargetAttention.forward`` (with its ``scores``) as it was before ``num_heads``."""
    seq = history_sequence if layer.positions is None else layer.positions(history_sequence)
    batch_size, seq_len, dim = seq.shape
    flat_seq = seq.reshape(-1, dim)
    flat_target = target_item.repeat_interleave(seq_len, dim=0)
    keep = None if mask is None else mask.reshape(-1) > 0
    gather = keep is not None and not layer.every_position(seq)
    if gather:
        flat_seq, flat_target = flat_seq[keep], flat_target[keep]
    attention_input = torch.cat([flat_target, flat_seq, flat_target - flat_seq,
                                 flat_target * flat_seq], dim=-1)
    real_scores = layer.attention_layer(attention_input).squeeze(-1)
    if keep is None:
        scores = real_scores.view(batch_size, seq_len)
    elif not gather:
        scores = real_scores.masked_fill(~keep, 0.0).view(batch_size, seq_len)
    else:
        scores = real_scores.new_zeros(batch_size * seq_len).masked_scatter(keep, real_scores)
        scores = scores.view(batch_size, seq_len)
    if layer.recency is not None:
        ages = history_ages(seq_len, seq.device).clamp(max=len(layer.recency) - 1)
        scores = scores + layer.recency[ages].unsqueeze(0)
    if mask is not None:
        scores = scores * mask.float()
    if layer.use_softmax:
        if mask is not None:
            scores = scores - 1.0e9 * (1 - mask.float())
        scores = scores.softmax(dim=-1)
    return (scores.unsqueeze(-1) * seq).sum(dim=1)


@pytest.fixture
def seq():
    return padded_history(B, L, D)


# --------------------------------------------------------------------------- one head = DIN

@pytest.mark.parametrize("softmax", [False, True])
@pytest.mark.parametrize("activation", ["ReLU", "Dice"])
@pytest.mark.parametrize("order", [{}, dict(position_encoding="learned", recency_bias=True)])
def test_one_head_is_the_attention_before_heads(seq, softmax, activation, order):
    """Within float rounding: the first layer is applied by linearity now (``first_layer``)."""
    target, history, mask = seq
    torch.manual_seed(3)
    layer = TargetAttention(D, attention_units=[8, 4], hidden_activations=activation,
                            use_softmax=softmax, num_heads=1, max_len=L, **order).eval()
    reference = DIN_Attention(D, attention_units=[8, 4], hidden_activations=activation,
                              use_softmax=softmax)
    assert [k for k in layer.state_dict() if k not in ("positions.table", "recency")] == \
        list(reference.state_dict())
    assert layer.output_dim == D
    with torch.no_grad():
        if order:
            layer.recency.normal_()
        out = layer(target, history, mask)
        torch.testing.assert_close(out, forward_before_heads(layer, target, history, mask))
        if not order:  # and FuxiCTR's DIN_Attention, on the same weights
            torch.testing.assert_close(out, DIN_Attention.forward(layer, target, history, mask))


@pytest.mark.parametrize("name", ["DIN", "DIN_DCN"])
def test_options_off_keep_the_model(name, tmp_path, handmade_batch):
    explicit = tiny_model(name, tmp_path, seed=5, attention_heads=1, use_senet=False).eval()
    assert list(explicit.state_dict()) == KEYS_BEFORE[name]
    assert explicit.senet is None
    with torch.no_grad():
        out = explicit(handmade_batch)["y_pred"]
        explicit.attention_layers.forward = forward_before_heads.__get__(
            explicit.attention_layers)
        torch.testing.assert_close(out, explicit(handmade_batch)["y_pred"])
    default = tiny_model(name, tmp_path, seed=5).eval()
    with torch.no_grad():
        assert torch.equal(default(handmade_batch)["y_pred"], out)


@pytest.mark.parametrize("heads", [1, 3])
def test_the_first_layer_by_linearity_is_the_linear_layer_on_the_four_parts(seq, heads):
    """``first_layer`` = FuxiCTR's first ``nn.Linear`` on ``[t, s, t - s, t * s]``, in value
    and in the weight's and the inputs' gradients, for the gathered real items."""
    target, history, mask = seq
    torch.manual_seed(4)
    layer = TargetAttention(D, attention_units=[8], num_heads=heads)
    keep = mask.reshape(-1) > 0
    rows = torch.arange(B).repeat_interleave(L)[keep]
    results = []
    for by_parts in (True, False):
        layer.zero_grad()
        t = target.clone().requires_grad_()
        s = history.reshape(-1, D)[keep].clone().requires_grad_()
        if by_parts:
            out = layer.first_layer(t, s, rows)
        else:
            tt = t[rows]
            out = layer.attention_layer.mlp[0](torch.cat([tt, s, tt - s, tt * s], dim=-1))
        out.pow(2).sum().backward()
        weight = layer.attention_layer.mlp[0].weight
        results.append((out.detach(), t.grad, s.grad, weight.grad.clone(),
                        layer.attention_layer.mlp[0].bias.grad.clone()))
    assert results[0][0].shape == (int(keep.sum()), 8)
    for by_parts, plain in zip(*results):
        torch.testing.assert_close(by_parts, plain, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- several heads

@pytest.mark.parametrize("softmax", [False, True])
def test_each_head_is_a_din_attention_with_its_own_scores(seq, softmax):
    """Head h's pool is what a one-head layer computes with the MLP's h-th output unit."""
    target, history, mask = seq
    torch.manual_seed(3)
    heads = TargetAttention(D, attention_units=[8], use_softmax=softmax, num_heads=3).eval()
    out = heads(target, history, mask)
    assert out.shape == (B, 3 * D) and heads.output_dim == 3 * D
    for h in range(3):
        single = TargetAttention(D, attention_units=[8], use_softmax=softmax).eval()
        state = dict(heads.state_dict())
        state["attention_layer.mlp.2.weight"] = state["attention_layer.mlp.2.weight"][h:h + 1]
        state["attention_layer.mlp.2.bias"] = state["attention_layer.mlp.2.bias"][h:h + 1]
        single.load_state_dict(state)
        torch.testing.assert_close(out[:, h * D:(h + 1) * D], single(target, history, mask))
    assert not torch.allclose(out[:, :D], out[:, D:2 * D])  # the heads attend differently


def test_heads_never_see_the_padding(seq):
    target, history, mask = seq
    layer = TargetAttention(D, attention_units=[8], num_heads=2).eval()
    noisy = history + 100.0 * (1 - mask).unsqueeze(-1) * torch.randn_like(history)
    out = layer(target, history, mask)
    torch.testing.assert_close(layer(target, noisy, mask), out)
    assert torch.equal(out[1], torch.zeros(2 * D))  # no history: zeros, not NaN


def test_heads_must_be_positive():
    with pytest.raises(ConfigError, match="attention_heads"):
        TargetAttention(D, num_heads=0)


# --------------------------------------------------------------------------- SENET

def test_field_senet_of_equal_widths_is_fuxictr_squeeze_excitation():
    torch.manual_seed(0)
    layer = FieldSqueezeExcitation([4, 4, 4, 4, 4, 4], reduction_ratio=3,
                                   excitation_activation="Sigmoid")
    reference = SqueezeExcitation(6, 3, "Sigmoid")
    reference.load_state_dict(layer.senet.state_dict())
    stacked = torch.randn(B, 6, 4)
    torch.testing.assert_close(layer(stacked.flatten(1)),
                               reference(stacked).flatten(1))


def test_field_senet_scales_each_field_of_its_own_width_by_one_weight():
    torch.manual_seed(0)
    dims = [2, 3, 7]
    layer = FieldSqueezeExcitation(dims, reduction_ratio=1, excitation_activation="Sigmoid")
    flat = torch.randn(B, sum(dims))
    out = layer(flat)
    fields = torch.split(flat, dims, dim=-1)
    weights = layer.senet.excitation(torch.stack([f.mean(-1) for f in fields], dim=-1))
    for i, (field, piece) in enumerate(zip(fields, torch.split(out, dims, dim=-1))):
        torch.testing.assert_close(piece, field * weights[:, i:i + 1])
    assert not torch.allclose(out, flat)


@pytest.mark.parametrize("name", ["DIN", "DIN_DCN"])
@pytest.mark.parametrize("options", [dict(attention_heads=2), dict(use_senet=True),
                                     dict(attention_heads=3, use_senet=True,
                                          excitation_activation="Sigmoid")])
def test_models_train_with_the_options(name, options, tmp_path, handmade_batch):
    model = tiny_model(name, tmp_path, seed=5, **options)
    model.train()
    out = model(handmade_batch)["y_pred"]
    assert out.shape == (16, 1) and torch.isfinite(out).all()
    model.compute_loss(model(handmade_batch), model.get_labels(handmade_batch)).backward()
    if options.get("use_senet"):
        # row fields, then the target's and each head's item fields (tags, id, 128-d column)
        assert model.senet.field_dims == [4, 4] + [4, 4, 128] * (1 + model.attention_layers.num_heads)
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in model.senet.parameters())
    # a checkpoint of the plain model does not load: the options change the architecture
    plain = tiny_model(name, tmp_path, seed=5)
    with pytest.raises(RuntimeError):
        plain.load_state_dict(model.state_dict())


def test_senet_switch_is_a_bool(tmp_path):
    with pytest.raises(ConfigError, match="use_senet"):
        tiny_model("DIN", tmp_path, use_senet="yes")
    with pytest.raises(ConfigError, match="excitation_activation"):
        tiny_model("DIN", tmp_path, use_senet=True, excitation_activation="Tanh")
