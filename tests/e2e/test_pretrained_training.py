"""The frozen multimodal item embedding as a FuxiCTR pretrained embedding (pretrained route)."""
from __future__ import annotations


import torch
from helpers import build_model, pretrained_layer


from fuxictr_mmctr.train import experiment


def _train_one_epoch(params, feature_map, model):
    train_gen, valid_gen = experiment.make_loaders(params, feature_map, "train")
    model.fit(train_gen, validation_data=valid_gen, **params)


def test_frozen_table_does_not_change_and_is_not_optimised(handmade_config):
    params, feature_map, model = build_model(handmade_config, "DIN_sample_pretrained",
                                       embedding_regularizer=1.0e-2)
    table = pretrained_layer(model).pretrain_embedding.weight
    before = table.detach().clone()
    optimised = {id(p) for group in model.optimizer.param_groups for p in group["params"]}
    assert id(table) not in optimised and not table.requires_grad
    _train_one_epoch(params, feature_map, model)
    assert torch.equal(pretrained_layer(model).pretrain_embedding.weight, before)


def test_finetuned_table_changes(handmade_config):
    params, feature_map, model = build_model(handmade_config, "DIN_sample_pretrained_finetune")
    table = pretrained_layer(model).pretrain_embedding.weight
    assert table.requires_grad
    before = table.detach().clone()
    _train_one_epoch(params, feature_map, model)
    assert not torch.equal(pretrained_layer(model).pretrain_embedding.weight, before)
