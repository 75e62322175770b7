"""Model-level tests: the registry, and every registered model's forward/backward on a batch."""
from __future__ import annotations

import pytest
import torch
from fuxictr.pytorch.layers import MaskedAveragePooling
from helpers import tiny_model

import fuxictr_mmctr
from fuxictr_mmctr.errors import TrainingDiverged
from fuxictr_mmctr.models import MODELS, get_model
from fuxictr_mmctr.models.base import MMCTRModel
from fuxictr_mmctr.models.layers import PaddingAwareAveragePooling

def build(name, tmp_path, **overrides):
    return tiny_model(name, tmp_path, **overrides)


def test_registry_lists_names_on_unknown_model():
    with pytest.raises(ValueError, match="available: .*DIN"):
        get_model("DeepFM")


def test_models_are_package_attributes():
    for name in MODELS:
        assert getattr(fuxictr_mmctr, name) is MODELS[name]
        assert issubclass(MODELS[name], MMCTRModel)
        assert MODELS[name].__module__.endswith("." + name)  # one file per model, named after it


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_shapes(name, tmp_path, handmade_batch):
    model = build(name, tmp_path)
    model.train()
    out = model(handmade_batch)["y_pred"]
    assert out.shape == (16, 1)
    assert ((out > 0) & (out < 1)).all()
    loss = model.compute_loss(model(handmade_batch), model.get_labels(handmade_batch))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fully_padded_history_gives_finite_output(name, tmp_path, handmade_batch):
    model = build(name, tmp_path)
    model.eval()
    batch_dict, item_dict, mask = handmade_batch
    ids = item_dict["item_id"].view(16, -1).clone()
    ids[:, :-1] = 0
    item_dict = {"item_id": ids.view(-1),
                 "item_tags": item_dict["item_tags"].view(16, 7, -1).clone(),
                 "item_emb_d128": item_dict["item_emb_d128"].view(16, 7, -1).clone()}
    item_dict["item_tags"][:, :-1] = 0
    item_dict["item_emb_d128"][:, :-1] = 0
    item_dict = {k: v.reshape(16 * 7, *v.shape[2:]) for k, v in item_dict.items()}
    with torch.no_grad():
        out = model((batch_dict, item_dict, torch.zeros_like(mask)))["y_pred"]
    assert torch.isfinite(out).all()


def test_dice_activation_builds(tmp_path, handmade_batch):
    model = build("DIN", tmp_path, dnn_activations="Dice", attention_hidden_activations="Dice")
    assert model(handmade_batch)["y_pred"].shape == (16, 1)


def test_gradient_accumulation_steps_every_k_batches(tmp_path, handmade_batch):
    model = build("DIN", tmp_path, accumulation_steps=2)
    model._max_gradient_norm = 10.0
    model._steps_per_epoch = 5
    before = [p.detach().clone() for p in model.parameters()]
    model._batch_index = 0
    model.train_step(handmade_batch)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no step yet
    model._batch_index = 1
    model.train_step(handmade_batch)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())


def test_label_smoothing_changes_training_loss_only(tmp_path, handmade_batch):
    plain = build("DIN", tmp_path)
    smooth = build("DIN", tmp_path, label_smoothing=0.2)
    smooth.load_state_dict(plain.state_dict())
    plain.eval(), smooth.eval()
    y = plain.get_labels(handmade_batch)
    assert torch.isclose(plain.add_loss(plain(handmade_batch), y), smooth.add_loss(smooth(handmade_batch), y))
    plain.train(), smooth.train()
    torch.manual_seed(0)
    a = plain.add_loss(plain(handmade_batch), y)
    torch.manual_seed(0)
    b = smooth.add_loss(smooth(handmade_batch), y)
    assert not torch.isclose(a, b)


def test_nan_predictions_are_named_as_divergence(tmp_path, handmade_batch):
    """torch's loss refuses a NaN probability with a message about its range; the model says
    the training diverged, where, and what to change."""
    model = build("DCNv2", tmp_path)
    model._epoch_index, model._batch_index = 3, 41
    out = model(handmade_batch)
    y = model.get_labels(handmade_batch)
    out["y_pred"] = out["y_pred"].detach().clone()
    out["y_pred"][0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"epoch 4, batch 42 .*learning_rate"):
        model.add_loss(out, y)
    out["y_pred"][0] = 1.5   # finite but out of range: torch's own error, untouched
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        model.add_loss(out, y)


def test_checkpoint_is_written_atomically(tmp_path, handmade_batch, monkeypatch):
    model = build("DIN", tmp_path)
    path = tmp_path / "best.model"
    model.save_weights(path)
    good = path.read_bytes()

    def crash(obj, f):
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        model.save_weights(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".best")] == []


def test_tag_mean_takes_padding_for_zero_rows_not_zero_sums():
    """FuxiCTR's MaskedAveragePooling takes an embedding whose elements sum to 0 for padding
    and divides by 0 + 1e-12 (a 5e10 mean seen in training); ours counts it."""
    tags = torch.tensor([[[0.25, -0.25], [0.0, 0.0]],          # cancels exactly, then padding
                         [[1.0, 2.0], [3.0, 0.5]],              # two real tags
                         [[0.0, 0.0], [0.0, 0.0]]])             # no tags
    assert MaskedAveragePooling()(tags)[0].abs().max() > 1e10  # FuxiCTR's
    ours = PaddingAwareAveragePooling()(tags)
    torch.testing.assert_close(ours, torch.tensor([[0.25, -0.25], [2.0, 1.25], [0.0, 0.0]]))
    torch.testing.assert_close(ours[1], MaskedAveragePooling()(tags)[1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_pools_tags_padding_aware(name, tmp_path):
    model = build(name, tmp_path)
    encoders = [m for m in model.embedding_layer.modules()
                if isinstance(m, MaskedAveragePooling)]
    assert encoders and all(type(m) is PaddingAwareAveragePooling for m in encoders)
