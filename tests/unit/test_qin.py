"""QIN's layers: the adaptive sparse target attention (ReLU-gated, so irrelevant and padded
history items get exactly zero weight) and the Quadratic Neural Network; QIN's training keys."""
from __future__ import annotations

import pytest
import torch
from fuxictr.pytorch.layers import MultiHeadTargetAttention
from helpers import padded_history, tiny_model

from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.models.layers import (AdaptiveSparseTargetAttention, QuadraticLayer,
                                         QuadraticNeuralNetwork)

B, L, D = 6, 7, 4


@pytest.fixture
def seq():
    return padded_history(B, L, D)


def by_hand(layer, target, history, mask):
    """``W_o ReLU(q k^T / sqrt(d)) v + target`` per head, padding scored 0: the paper's ASTA."""
    q = layer.W_q(target).view(B, layer.num_heads, 1, -1)                # (B, H, 1, d)
    k = layer.W_k(history).view(B, L, layer.num_heads, -1).transpose(1, 2)  # (B, H, L, d)
    v = layer.W_v(history).view(B, L, layer.num_heads, -1).transpose(1, 2)
    weights = torch.relu(q @ k.transpose(-1, -2) / layer.head_dim ** 0.5)  # (B, H, 1, L)
    weights = weights * mask.view(B, 1, 1, L)
    return layer.W_o((weights @ v).view(B, -1)) + target, weights


@pytest.mark.parametrize("heads", [1, 2])
def test_asta_is_relu_gated_target_attention_plus_the_target(seq, heads):
    target, history, mask = seq
    torch.manual_seed(1)
    layer = AdaptiveSparseTargetAttention(D, num_heads=heads).eval()
    assert isinstance(layer, MultiHeadTargetAttention)  # FuxiCTR's projections and heads
    assert layer.W_q.out_features == 2 * D               # the authors' attention_dim
    expected, weights = by_hand(layer, target, history, mask)
    torch.testing.assert_close(layer(target, history, mask), expected)
    real = weights[mask.view(B, 1, 1, L).expand_as(weights) > 0]
    assert (real == 0).any() and (real > 0).any()        # sparse: some items get exactly 0
    assert not torch.allclose(weights.sum(-1)[2:], torch.ones(B - 2, heads, 1))  # unnormalised


@pytest.mark.parametrize("heads", [1, 2])
def test_sum_normalised_asta_is_a_sparse_weighted_mean(seq, heads):
    """``attention_normalization: sum``: the same ReLU weights divided by their sum, so each
    row with a matching item pools a weighted mean (sums to 1), the zeros stay exactly zero,
    and a row with none still pools to zeros (the target alone)."""
    target, history, mask = seq
    torch.manual_seed(1)
    raw = AdaptiveSparseTargetAttention(D, num_heads=heads).eval()
    torch.manual_seed(1)
    layer = AdaptiveSparseTargetAttention(D, num_heads=heads, normalization="sum").eval()
    _, weights = by_hand(raw, target, history, mask)                      # (B, H, 1, L)
    total = weights.sum(-1, keepdim=True)
    mean = weights / (total + layer.dot_attention.EPS)
    v = raw.W_v(history).view(B, L, heads, -1).transpose(1, 2)
    expected = raw.W_o((mean @ v).view(B, -1)) + target
    torch.testing.assert_close(layer(target, history, mask), expected)
    matched = total.squeeze(-1) > 0
    assert matched.any()
    torch.testing.assert_close(mean.sum(-1)[matched], torch.ones(int(matched.sum())),
                               atol=1e-3, rtol=0)                        # 1 up to the eps
    assert torch.equal(mean == 0, weights == 0)                           # as sparse as raw
    # the pooled history no longer grows with the scores: scaling the keys' projection by 10
    # multiplies the raw weights by 10 and leaves the normalised ones unchanged
    with torch.no_grad():
        layer.W_k.weight.mul_(10.0)
    torch.testing.assert_close(layer(target, history, mask), expected, atol=1e-3, rtol=0)
    with pytest.raises(ConfigError, match="attention_normalization"):
        AdaptiveSparseTargetAttention(D, normalization="softmax")


def test_asta_padding_gets_no_weight_and_an_empty_history_gives_the_target(seq):
    target, history, mask = seq
    layer = AdaptiveSparseTargetAttention(D, num_heads=2).eval()
    noisy = history + 100.0 * (1 - mask).unsqueeze(-1) * torch.randn_like(history)
    out = layer(target, history, mask)
    torch.testing.assert_close(layer(target, noisy, mask), out)
    assert torch.equal(out[1], target[1])


def test_asta_position_encoding_sees_the_order(seq):
    target, history, mask = seq
    torch.manual_seed(1)
    layer = AdaptiveSparseTargetAttention(D, max_len=L, position_encoding="learned").eval()
    with torch.no_grad():
        layer.positions.table.normal_()
        out = layer(target, history, mask)
        flipped = layer(target, history.flip(1), mask.flip(1))
    assert not torch.allclose(out[2:], flipped[2:])


@pytest.mark.parametrize("kwargs,key", [(dict(attention_dim=10, num_heads=4), "attention_heads"),
                                        (dict(num_heads=0), "attention_heads"),
                                        (dict(attention_dim=0), "attention_dim")])
def test_asta_refuses_bad_sizes(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        AdaptiveSparseTargetAttention(D, **kwargs)


def test_quadratic_layer_is_x_times_the_sum_of_its_rows():
    torch.manual_seed(0)
    layer = QuadraticLayer(D, num_row=3)
    x = torch.randn(B, D)
    rows = [x @ w.T + b for w, b in zip(layer.linear.weight.split(D), layer.linear.bias.split(D))]
    torch.testing.assert_close(layer(x), x * sum(rows))
    # a quadratic form: doubling the input (without bias) quadruples the output
    with torch.no_grad():
        layer.linear.bias.zero_()
    torch.testing.assert_close(layer(2 * x), 4 * layer(x))


def test_quadratic_network_is_residual_blocks_and_a_readout():
    torch.manual_seed(0)
    qnn = QuadraticNeuralNetwork(D, num_layers=2, num_row=2, batch_norm=True).eval()
    assert len(qnn.blocks) == 2
    x = torch.randn(B, D)
    h = x
    for block in qnn.blocks:
        h = h + block(h)
    torch.testing.assert_close(qnn(x), qnn.fc(h))
    with pytest.raises(ConfigError, match="num_layers"):
        QuadraticNeuralNetwork(D, num_layers=0)
    with pytest.raises(ConfigError, match="num_row"):
        QuadraticLayer(D, num_row=0)


def test_qin_reads_row_target_and_interest(tmp_path, handmade_batch):
    model = tiny_model("QIN", tmp_path, seed=0).eval()
    inputs = []
    model.qnn.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with torch.no_grad():
        model(handmade_batch)
    row, target, history, mask = model.embed_batch(handmade_batch)
    with torch.no_grad():
        interest = model.attention_layers(target, history, mask)
    torch.testing.assert_close(inputs[0], torch.cat([row, target, interest], dim=-1))


def test_lr_decay_factor(tmp_path):
    model = tiny_model("QIN", tmp_path, learning_rate=1.0e-2, lr_decay_factor=0.5)
    assert model.lr_decay() == pytest.approx(5.0e-3)  # FuxiCTR calls it on a plateau
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(5.0e-3)
    default = tiny_model("DIN", tmp_path, learning_rate=1.0e-2)
    assert default.lr_decay() == pytest.approx(1.0e-3)  # FuxiCTR's own factor, 0.1
    with pytest.raises(ConfigError, match="lr_decay_factor"):
        tiny_model("QIN", tmp_path, lr_decay_factor=0)


def test_sum_plus_one_weights_are_sparse_continuous_and_below_a_mean(seq):
    """``sum_plus_one``: the ReLU weights over ``1 + sum``: zeros stay exactly zero, each
    row's weights sum to ``total / (1 + total)`` < 1, and small weights barely move (no jump
    from "no matching item" to a full mean)."""
    target, history, mask = seq
    torch.manual_seed(1)
    raw = AdaptiveSparseTargetAttention(D).eval()
    torch.manual_seed(1)
    layer = AdaptiveSparseTargetAttention(D, normalization="sum_plus_one").eval()
    _, weights = by_hand(raw, target, history, mask)                      # (B, 1, 1, L)
    total = weights.sum(-1, keepdim=True)
    damped = weights / (1.0 + total)
    v = raw.W_v(history).view(B, L, 1, -1).transpose(1, 2)
    torch.testing.assert_close(layer(target, history, mask),
                               raw.W_o((damped @ v).view(B, -1)) + target)
    assert torch.equal(damped == 0, weights == 0)
    torch.testing.assert_close(damped.sum(-1), (total / (1 + total)).squeeze(-1))
    assert (damped.sum(-1) < 1).all()
    # keys scoring just above zero: weights close to the raw ones ("sum" makes them a mean)
    keys = torch.tensor([0.0, 1e-4, -1.0, 2e-4]).view(1, 4, 1)
    pooled, small = layer.dot_attention(torch.ones(1, 1, 1), keys, torch.eye(4).unsqueeze(0))
    expected = torch.tensor([[[0.0, 1e-4, 0.0, 2e-4]]]) / (1 + 3e-4)
    torch.testing.assert_close(small, expected, atol=1e-9, rtol=1e-6)
    torch.testing.assert_close(pooled, expected, atol=1e-9, rtol=1e-6)
