"""``mmctr pipeline``'s configs: every registered model is a choice of ``--models`` and gets one
expid per item side from its shipped ``<Model>_sample`` / ``<Model>_default``, which loads with
known keys only."""
from __future__ import annotations

import argparse

import pytest

from fuxictr_mmctr.cli import load_command
from fuxictr_mmctr.models import MODELS
from fuxictr_mmctr.pipeline.configs import expid_for, write_pipeline_config
from fuxictr_mmctr.resources import packaged_config_dir
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.train.config_keys import unknown_keys


def test_every_model_is_a_choice_of_models():
    parser = argparse.ArgumentParser()
    load_command("pipeline").add_arguments(parser)
    args = parser.parse_args(["--data-dir", "d", "--work-dir", "w", "--models", *sorted(MODELS)])
    assert args.models == sorted(MODELS)


@pytest.mark.parametrize("settings", ["sample", "default"])
def test_every_model_gets_an_expid_per_side_from_its_shipped_settings(handmade, tmp_path,
                                                                      settings):
    out = tmp_path / "pipeline_config"
    sides = {"given": handmade / "item_info.parquet"}
    digests = write_pipeline_config(out, handmade.parent, sides, sorted(MODELS), settings,
                                    {"epochs": 1}, tmp_path / "checkpoints")
    assert set(digests) == {expid_for(model, "given") for model in MODELS}
    shipped = experiment.load_params(packaged_config_dir(), f"QIN_{settings}", needs=(),
                                     check_keys=False)
    for model in MODELS:
        params = experiment.load_params(out, expid_for(model, "given"), check_keys=False)
        assert params["model"] == model and params["epochs"] == 1
        assert unknown_keys(params) == {}, model
        if model == "QIN":  # its own keys survive the copy
            for key in ("num_layers", "num_row", "lr_decay_factor", "batch_norm"):
                assert params[key] == shipped[key], key
