"""Options that let models use the order of the history: each changes the output only when on.

* ``position_encoding: learned`` (DIN, DIN_DCN, TransformerDCN; DCNv2 and FiBiNET with
  multi-interest pooling),
* ``recency_bias`` (DIN, DIN_DCN),
* ``history_pooling: multi_interest`` (DCNv2, FiBiNET),
* ``max_len`` up to 100: items that far back reach the model.
"""
from __future__ import annotations

import pytest
import torch
from fuxictr.pytorch.layers import DIN_Attention
from helpers import (ITEM_TYPES, feature_map_for, make_item_info_columns, make_split_columns,
                     tiny_model, write_table)

from fuxictr_mmctr.data.loader import MMCTRDataLoader
from fuxictr_mmctr.errors import ConfigError
from fuxictr_mmctr.models.layers import (HistoryPositionEncoding, MultiInterestPooling,
                                         TargetAttention, TransformerHistoryEncoder,
                                         history_pooling_layer)

B, L, D = 5, 7, 6


@pytest.fixture
def seq():
    torch.manual_seed(0)
    target = torch.randn(B, D)
    history = torch.randn(B, L, D)
    mask = torch.ones(B, L)
    mask[0, :3] = 0  # left padding
    mask[1, :] = 0  # no history at all
    history = history * mask.unsqueeze(-1)
    return target, history, mask


def permute_real_items(history, mask, seed=1):
    """The same items in another order (padding stays on the left)."""
    g = torch.Generator().manual_seed(seed)
    out = history.clone()
    for r in range(history.shape[0]):
        real = torch.nonzero(mask[r] > 0).flatten()
        if len(real) > 1:
            out[r, real] = history[r, real[torch.randperm(len(real), generator=g)]]
    return out


# --------------------------------------------------------------------------- layers

@pytest.mark.parametrize("softmax", [False, True])
def test_target_attention_off_is_din_attention_and_order_blind(seq, softmax):
    target, history, mask = seq
    torch.manual_seed(3)
    ours = TargetAttention(D, attention_units=[8], use_softmax=softmax).eval()
    theirs = DIN_Attention(D, attention_units=[8], use_softmax=softmax).eval()
    theirs.load_state_dict(ours.state_dict())
    rows = []
    # the MLP after its first layer (which ``first_layer`` applies by parts)
    ours.attention_layer.mlp[1].register_forward_hook(lambda m, inp, out: rows.append(len(inp[0])))
    out = ours(target, history, mask)
    assert rows == [int(mask.sum())]  # the attention MLP skips the padding
    torch.testing.assert_close(out, theirs(target, history, mask))
    torch.testing.assert_close(out, ours(target, permute_real_items(history, mask), mask))


@pytest.mark.parametrize("option", [dict(position_encoding="learned"), dict(recency_bias=True)])
@pytest.mark.parametrize("softmax", [False, True])
def test_target_attention_options_see_the_order(seq, option, softmax):
    target, history, mask = seq
    torch.manual_seed(3)
    base = TargetAttention(D, attention_units=[8], use_softmax=softmax, max_len=10).eval()
    torch.manual_seed(3)
    layer = TargetAttention(D, attention_units=[8], use_softmax=softmax, max_len=10,
                            **option).eval()
    layer.load_state_dict(base.state_dict(), strict=False)
    extra = [p for n, p in layer.named_parameters() if n in ("positions.table", "recency")]
    assert len(extra) == 1
    with torch.no_grad():
        extra[0].zero_()  # an option's parameters at zero: exactly the layer without it
        torch.testing.assert_close(layer(target, history, mask), base(target, history, mask))
        extra[0].copy_(torch.randn_like(extra[0]))
        out = layer(target, history, mask)
        assert not torch.allclose(out, base(target, history, mask))
        shuffled = layer(target, permute_real_items(history, mask), mask)
        assert not torch.allclose(out[2:], shuffled[2:])
        assert torch.isfinite(out).all()


def test_position_encoding_counts_age_from_the_most_recent_item():
    enc = HistoryPositionEncoding(max_len=4, dim=3)
    x = torch.zeros(1, 6, 3)
    out = enc(x)
    # the last position gets age 0, the first two (ages 5 and 4) share the oldest row
    torch.testing.assert_close(out[0, -1], enc.table[0].detach())
    torch.testing.assert_close(out[0, 0], enc.table[3].detach())
    torch.testing.assert_close(out[0, 1], enc.table[3].detach())
    with pytest.raises(ConfigError, match="max_len"):
        HistoryPositionEncoding(0, 3)


def test_transformer_position_encoding_changes_output_only_when_on(seq):
    target, history, mask = seq
    torch.manual_seed(4)
    base = TransformerHistoryEncoder(D, num_heads=1,
                                     dim_feedforward=8, first_k_cols=2).eval()
    torch.manual_seed(4)
    enc = TransformerHistoryEncoder(D, num_heads=1, dim_feedforward=8, first_k_cols=2,
                                    max_len=10, position_encoding="learned").eval()
    enc.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        enc.positions.table.zero_()
        torch.testing.assert_close(enc(target, history, mask), base(target, history, mask))
        enc.positions.table.normal_()
        assert not torch.allclose(enc(target, history, mask), base(target, history, mask))
    with pytest.raises(ConfigError, match="position_encoding"):
        TransformerHistoryEncoder(D, position_encoding="rotary")


def test_multi_interest_pooling(seq):
    target, history, mask = seq
    torch.manual_seed(5)
    pool = MultiInterestPooling(D, num_interests=3).eval()
    out = pool(history, mask, target=target)
    assert out.shape == (B, D) and torch.isfinite(out).all()
    assert torch.all(out[1] == 0)  # no history -> zeros
    # padding never matters; the order does not matter without positions
    noisy = history + torch.randn_like(history) * (1 - mask).unsqueeze(-1)
    torch.testing.assert_close(pool(noisy, mask, target=target), out)
    torch.testing.assert_close(pool(permute_real_items(history, mask), mask, target=target), out)
    # the target chooses among the interests
    assert not torch.allclose(pool(history, mask, target=-target)[2:], out[2:])
    # gradients flow, also through a row without history
    pool.train()
    pool(history, mask, target=target).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in pool.parameters())
    with pytest.raises(ConfigError, match="order-aware"):
        history_pooling_layer("mean", D, position_encoding="learned")


# --------------------------------------------------------------------------- models

OPTIONS = [
    ("DIN", dict(position_encoding="learned"), ["positions.table"]),
    ("DIN", dict(recency_bias=True), ["recency"]),
    ("DIN_DCN", dict(position_encoding="learned"), ["positions.table"]),
    ("DIN_DCN", dict(recency_bias=True), ["recency"]),
    ("TransformerDCN", dict(position_encoding="learned"), ["positions.table"]),
    ("DCNv2", dict(history_pooling="multi_interest", position_encoding="learned"),
     ["positions.table"]),
    ("FiBiNET", dict(history_pooling="multi_interest", position_encoding="learned"),
     ["positions.table"]),
]


def build(name, tmp_path, **overrides):
    return tiny_model(name, tmp_path, seed=11, **dict(dict(max_len=10), **overrides)).eval()


@pytest.fixture
def batch(handmade):
    loader = MMCTRDataLoader(feature_map_for(), handmade / "train.parquet",
                             item_info=handmade / "item_info.parquet", batch_size=16, max_len=6)
    return next(iter(loader))


def reversed_history(batch):
    """The batch with each row's history in reverse order (padding kept on the left)."""
    batch_dict, item_dict, mask = batch
    n, width = mask.shape
    order = torch.arange(width).repeat(n, 1)
    for r in range(n):
        real = torch.nonzero(mask[r] > 0).flatten()
        order[r, real] = real.flip(0)
    index = torch.cat([order, torch.full((n, 1), width)], dim=1)  # target stays last
    flat = (index + torch.arange(n).unsqueeze(1) * (width + 1)).flatten()
    return batch_dict, {k: v[flat] for k, v in item_dict.items()}, mask


@pytest.mark.parametrize("name,option,params", OPTIONS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}"
                              for n, o, _ in OPTIONS])
def test_model_option_changes_the_output_only_when_on(name, option, params, tmp_path, batch):
    off = build(name, tmp_path)
    on = build(name, tmp_path, **option)
    if option.get("history_pooling") == "multi_interest":
        off = build(name, tmp_path, history_pooling="multi_interest")
    missing, unexpected = on.load_state_dict(off.state_dict(), strict=False)
    assert not unexpected and all(any(m.endswith(p) for p in params) for m in missing)
    extras = [p for n, p in on.named_parameters() if any(n.endswith(q) for q in params)]
    assert extras
    with torch.no_grad():
        for p in extras:
            p.zero_()
        torch.testing.assert_close(on(batch)["y_pred"], off(batch)["y_pred"])
        for p in extras:
            p.normal_()
        out = on(batch)["y_pred"]
        assert not torch.allclose(out, off(batch)["y_pred"])
        # the option sees the order: reversing the histories moves the prediction
        assert not torch.allclose(on(reversed_history(batch))["y_pred"], out)


@pytest.mark.parametrize("name", ["DIN", "DIN_DCN", "DCNv2", "FiBiNET"])
def test_without_order_options_the_order_is_invisible(name, tmp_path, batch):
    """DIN's target attention and DCNv2's pooling (mean, or multi-interest without positions)
    give the same prediction for a history in reverse order: the options above are what
    make the order visible."""
    model = build(name, tmp_path, **({"history_pooling": "multi_interest"}
                                     if name in ("DCNv2", "FiBiNET") else {}))
    with torch.no_grad():
        torch.testing.assert_close(model(reversed_history(batch))["y_pred"],
                                   model(batch)["y_pred"])


@pytest.mark.parametrize("name", ["DCNv2", "FiBiNET"])
def test_multi_interest_differs_from_mean_pool(name, tmp_path, batch):
    mean = build(name, tmp_path, history_pooling="mean")
    multi = build(name, tmp_path, history_pooling="multi_interest", num_interests=2)
    assert any("history_pooling.w1" in n for n, _ in multi.named_parameters())
    assert not any("history_pooling" in n for n, _ in mean.named_parameters())
    with torch.no_grad():
        assert not torch.allclose(mean(batch)["y_pred"], multi(batch)["y_pred"])
    with pytest.raises(ConfigError, match="order-aware"):
        build(name, tmp_path, history_pooling="mean", position_encoding="learned")


@pytest.mark.parametrize("max_len,sees_old_item", [(100, True), (32, False)])
def test_max_len_up_to_100_reaches_the_model(tmp_path, max_len, sees_old_item):
    """With max_len 100 an item 60 positions back changes DIN's prediction; with 32 it is cut."""
    n_items = 12
    cols = make_split_columns(8, n_items, 100, seed=4)
    seqs = [[(i % n_items) + 1 for i in range(100)] for _ in range(8)]  # full histories
    cols["item_seq"] = seqs
    write_table(tmp_path / "train.parquet", cols)
    changed = dict(cols, item_seq=[s[:39] + [((s[39]) % n_items) + 1] + s[40:] for s in seqs])
    write_table(tmp_path / "changed.parquet", changed)
    write_table(tmp_path / "item_info.parquet", make_item_info_columns(n_items), ITEM_TYPES)
    model = build("DIN", tmp_path, max_len=max_len, position_encoding="learned")

    def predict(split):
        loader = MMCTRDataLoader(feature_map_for(), tmp_path / f"{split}.parquet",
                                 item_info=tmp_path / "item_info.parquet", batch_size=8,
                                 max_len=max_len)
        batch = next(iter(loader))
        assert batch[2].shape == (8, max_len)
        with torch.no_grad():
            return model(batch)["y_pred"]

    assert torch.allclose(predict("train"), predict("changed")) != sees_old_item


@pytest.mark.parametrize("name,option,params", OPTIONS[:1] + OPTIONS[4:5],
                         ids=["DIN", "TransformerDCN"])
def test_position_encoding_leaves_the_other_layers_init_alone(name, option, params, tmp_path):
    """The position table has its own random stream: with the option on, every other
    parameter starts as with it off (a shifted global stream made a different model, whose
    one-epoch AUC on the tiny sample happened to be near chance)."""
    off = build(name, tmp_path).state_dict()
    on = build(name, tmp_path, **option).state_dict()
    assert set(off) < set(on)
    for key, value in off.items():
        torch.testing.assert_close(on[key], value, msg=key)
    table = next(v for k, v in on.items() if k.endswith("positions.table"))
    assert 0.005 < float(table.std()) < 0.02  # a random table, not zeros
