"""Semantic IDs as a user runs them: ``mmctr semantic-ids`` gives the same bytes in two
processes whatever their thread count, and a model trained on the codes learns them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import yaml
from helpers import point_config_at

from fuxictr_mmctr.train import experiment


def test_semantic_ids_same_bytes_in_two_processes(tiny_sample, tmp_path):
    src = tiny_sample / "MicroLens_1M_x1" / "item_info.parquet"
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"codes_{threads}.parquet"
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-m", "fuxictr_mmctr", "semantic-ids", "--item-info",
                        str(src), "--out", str(out), "--levels", "3", "--codebook", "32",
                        "--seed", "5"], check=True, env=env, capture_output=True, cwd=tmp_path)
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert pq.read_table(outs[0]).column_names[-3:] == ["sid_1", "sid_2", "sid_3"]


def test_a_model_trained_on_codes_learns_them(tiny_sample, repo_config, tmp_path, monkeypatch,
                                              one_torch_thread):
    from fuxictr_mmctr.data.item_side import build_candidates
    from fuxictr_mmctr.data.semantic_ids import QuantizerConfig

    data = tmp_path / "sample" / "MicroLens_1M_x1"
    shutil.copytree(tiny_sample / "MicroLens_1M_x1", data)
    build_candidates(data, names=["given_codes"], quantizer=QuantizerConfig(codebook=16))
    config_dir = point_config_at(repo_config, tmp_path / "sample")
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config["DIN_sample_given_codes"].update(epochs=1, batch_size=512, max_len=16, verbose=0)
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)

    trained = experiment.train(config_dir, "DIN_sample_given_codes")
    assert trained.valid_metrics["AUC"] > 0.6
    _, _, model = experiment.load_trained_model(config_dir, "DIN_sample_given_codes")
    codes = pq.read_table(data / "item_info_codes.parquet", columns=["sid_1"]).column(0)
    used = np.unique(codes.to_numpy()[1:])
    weight = model.embedding_layer.embedding_layer.embedding_layers["sid_1"].weight.detach()
    assert (weight[0] == 0).all()                      # the padding item's code stays zero
    # initialised at std 1e-4 (FuxiCTR's default, mean |w| 0.8e-4); one epoch moves the rows
    # of the codes in use far from it (about 50x here)
    assert weight[used].abs().mean() > 10 * 1e-4
