"""Unit tests of the shared layers (fuxictr_mmctr.models.layers) on tiny tensors: shapes and masking."""
from __future__ import annotations

import pytest
import torch

from fuxictr_mmctr.config_contract import RULES
from fuxictr_mmctr.models.layers import (CrossNetwork, DCNHead, FieldProjector, MaskedHistoryPooling,
                                  TransformerHistoryEncoder)

B, L, D = 5, 6, 4


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    target = torch.randn(B, D)
    history = torch.randn(B, L, D)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1],      # left-padded
                         [1, 1, 1, 1, 1, 1],      # full
                         [0, 0, 0, 0, 0, 0],      # no item at all
                         [0, 0, 0, 0, 0, 1],      # one item
                         [0, 1, 1, 1, 1, 1]], dtype=torch.float32)
    return target, history, mask


def scramble_padding(history, mask):
    """Another history: the padded positions hold large random values, the items are kept."""
    noise = 100 * torch.randn_like(history)
    return torch.where(mask.unsqueeze(-1) > 0, history, noise)


# ------------------------------------------------------------------ pooling

@pytest.mark.parametrize("mode", MaskedHistoryPooling.MODES)
def test_pooling_ignores_padding_and_empty_rows_are_zero(inputs, mode):
    _, history, mask = inputs
    pool = MaskedHistoryPooling(mode)
    out = pool(history, mask)
    assert out.shape == (B, D)
    torch.testing.assert_close(out, pool(scramble_padding(history, mask), mask))
    assert torch.equal(out[2], torch.zeros(D))
    row = history[0, 3:]
    expected = {"mean": row.mean(0), "sum": row.sum(0), "max": row.max(0).values}[mode]
    torch.testing.assert_close(out[0], expected)


def test_pooling_rejects_unknown_mode():
    with pytest.raises(ValueError, match="expected one of"):
        MaskedHistoryPooling("median")


# ------------------------------------------------------------------ cross network / DCN head

@pytest.mark.parametrize("cross_type", RULES["cross_type"].choices)
@pytest.mark.parametrize("batch", [1, 3])
def test_cross_network_shapes(cross_type, batch):
    net = CrossNetwork(7, num_layers=2, cross_type=cross_type, low_rank=3, num_experts=2)
    assert net(torch.randn(batch, 7)).shape == (batch, 7)  # a batch of one keeps its axis


def test_matrix_cross_network_is_fuxictr_crossnetv2():
    from fuxictr.pytorch.layers import CrossNetV2

    assert isinstance(CrossNetwork(7, 2).cross, CrossNetV2)


@pytest.mark.parametrize("structure", RULES["model_structure"].choices)
@pytest.mark.parametrize("mlp", [(), (4,)])
def test_dcn_head_structures(structure, mlp):
    head = DCNHead(9, num_cross_layers=2, model_structure=structure,
                   parallel_dnn_hidden_units=(8, 6), stacked_dnn_hidden_units=(5,),
                   mlp_hidden_units=mlp, dnn_activations="Dice",
                   output_activation=torch.nn.Sigmoid())
    out = head(torch.randn(4, 9))
    assert out.shape == (4, 1) and ((out > 0) & (out < 1)).all()


def test_cross_input_norm_bounds_the_cross_network_and_leaves_the_dnn_alone():
    """``layer``: the cross branch sees ``x_0`` normalised, so a 1000x larger input (DIN's
    unnormalised attention sum over a long history) gives the same cross output; the DNN
    still sees the input as it is. ``none`` adds no parameter (old checkpoints load)."""
    torch.manual_seed(0)
    head = DCNHead(9, num_cross_layers=2, parallel_dnn_hidden_units=(8,), input_norm="layer")
    x = torch.randn(4, 9)
    cross = lambda inp: head.crossnet(head.input_norm(inp))           # noqa: E731
    torch.testing.assert_close(cross(1000 * x), cross(x), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(head.parallel_dnn(1000 * x), head.parallel_dnn(x))
    plain = DCNHead(9, num_cross_layers=2, parallel_dnn_hidden_units=(8,))
    assert set(plain.state_dict()) == set(head.state_dict()) - {"input_norm.weight",
                                                                  "input_norm.bias"}
    assert set(DCNHead(9, input_norm="batch").state_dict()) >= {"input_norm.running_mean"}
    with pytest.raises(ValueError, match="cross_input_norm"):
        DCNHead(9, input_norm="group")


def test_dcn_head_rejects_unknown_structure():
    with pytest.raises(ValueError, match="model_structure"):
        DCNHead(4, model_structure="sideways")


# ------------------------------------------------------------------ transformer encoder

def encoder(**kwargs):
    torch.manual_seed(1)
    params = dict(transformer_layers=2, num_heads=2, dim_feedforward=16, first_k_cols=3,
                  concat_max_pool=True)
    params.update(kwargs)
    return TransformerHistoryEncoder(D, **params).eval()


@pytest.mark.parametrize("concat_max_pool", [True, False])
@pytest.mark.parametrize("first_k_cols", [1, 3, L + 2])
def test_encoder_output_shape(inputs, concat_max_pool, first_k_cols):
    enc = encoder(first_k_cols=first_k_cols, concat_max_pool=concat_max_pool)
    out = enc(*inputs)
    assert enc.output_dim == (first_k_cols + int(concat_max_pool)) * 2 * D
    assert out.shape == (B, enc.output_dim)


@pytest.mark.parametrize("bug", [False, True])
def test_encoder_fully_padded_history_is_finite(inputs, bug):
    target, history, _ = inputs
    enc = encoder(reproduce_published_mask_bug=bug)
    empty = torch.zeros(B, L)
    enc.train()  # dropout paths too
    out = enc(target, history, empty)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_encoder_padding_does_not_influence_the_output(inputs):
    target, history, mask = inputs
    enc = encoder()
    with torch.no_grad():
        out = enc(target, history, mask)
        torch.testing.assert_close(out, enc(target, scramble_padding(history, mask), mask))
        # a row with no item encodes to a constant: zeros, then out_linear's bias
        k_part = out[2, :enc.first_k_cols * 2 * D]
        assert torch.equal(k_part, torch.zeros_like(k_part))
        torch.testing.assert_close(out[2, enc.first_k_cols * 2 * D:], enc.out_linear.bias)


def test_encoder_reads_the_real_items(inputs):
    target, history, mask = inputs
    enc = encoder()
    with torch.no_grad():
        changed = history.clone()
        changed[1, 2] += 1.0  # a real item of the full row
        diff = (enc(target, history, mask) - enc(target, changed, mask)).abs().sum(dim=-1)
    assert diff[1] > 0 and torch.equal(diff[[0, 2, 3, 4]], torch.zeros(4))


def test_published_mask_bug_attends_to_padding_and_ignores_items(inputs):
    target, history, mask = inputs
    enc = encoder(reproduce_published_mask_bug=True)
    with torch.no_grad():
        out = enc(target, history, mask)
        padded_changed = enc(target, scramble_padding(history, mask), mask)
        items_changed = enc(target, torch.where(mask.unsqueeze(-1) > 0, history + 5.0, history),
                            mask)
    rows_with_padding = [0, 2, 3, 4]
    assert (out - padded_changed)[rows_with_padding].abs().sum(dim=-1).gt(0).all()
    # rows holding padding never see their real items
    torch.testing.assert_close(out[rows_with_padding], items_changed[rows_with_padding])


def test_encoder_checks_heads():
    with pytest.raises(ValueError, match="num_heads"):
        TransformerHistoryEncoder(D, num_heads=3)


# ------------------------------------------------------------------ fields

def test_field_projector():
    proj = FieldProjector([4, 4, 128], 4)
    out = proj(torch.randn(3, 136))
    assert out.shape == (3, 3, 4)
    assert isinstance(proj.projections[0], torch.nn.Identity)
    assert isinstance(proj.projections[2], torch.nn.Linear)


# ------------------------------------------------------------------ the layers inside the models

@pytest.fixture
def model_batch(handmade):
    from test_dataloader import feature_map_for

    from fuxictr_mmctr.data.loader import MMCTRDataLoader

    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=16, max_len=6)
    return next(iter(loader))


def test_hybrid_calls_the_same_layers_as_din_and_dcnv2(tmp_path):
    from test_models import build

    din, dcnv2, hybrid = (build(n, tmp_path) for n in ("DIN", "DCNv2", "DIN_DCN"))
    assert type(hybrid.attention_layers) is type(din.attention_layers)
    assert type(hybrid.dcn) is type(dcnv2.dcn)
    assert type(hybrid.dcn.crossnet.cross) is type(dcnv2.dcn.crossnet.cross)


@pytest.mark.parametrize("bug", [False, True])
def test_transformer_dcn_padding_invariance(tmp_path, model_batch, bug):
    """Other items at the padded history positions: same prediction, unless the bug is on."""
    from test_models import build

    model = build("TransformerDCN", tmp_path, reproduce_published_mask_bug=bug).eval()
    batch_dict, item_dict, mask = model_batch
    n = mask.shape[0]
    pad = torch.cat([mask == 0, torch.zeros(n, 1, dtype=torch.bool)], dim=1).reshape(-1)
    assert pad.any() and (mask.sum(dim=1) > 0).any()
    other = dict(item_dict)
    other["item_id"] = torch.where(pad, torch.full_like(item_dict["item_id"], 5),
                                   item_dict["item_id"])
    other["item_tags"] = torch.where(pad[:, None], 3, item_dict["item_tags"])
    other["item_emb_d128"] = torch.where(pad[:, None], 7.0, item_dict["item_emb_d128"])
    with torch.no_grad():
        a = model((batch_dict, item_dict, mask))["y_pred"]
        b = model((batch_dict, other, mask))["y_pred"]
    if bug:
        assert not torch.allclose(a, b)
    else:
        torch.testing.assert_close(a, b)
