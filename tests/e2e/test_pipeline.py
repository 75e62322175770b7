"""``mmctr pipeline`` on the tiny sample with images: every stage runs once, the zip passes the
submission check, a rerun skips every stage, and one more model trains only that model."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fuxictr_mmctr import cli
from fuxictr_mmctr.errors import TrainingDiverged
from fuxictr_mmctr.train import experiment
from fuxictr_mmctr.submit.submission import check_submission_zip

COMMON = ["--tiny-clip", "--epochs", "1", "--batch-size", "512", "--code-levels", "2",
          "--codebook", "8", "--item-sides", "given", "task1_codes"]


@pytest.fixture(scope="module")
def run(image_sample, tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    assert cli.main(["pipeline", "--data-dir", str(image_sample), "--work-dir", str(work),
                     "--models", "DIN", *COMMON]) == 0
    return work


def test_every_stage_ran_and_the_zip_is_checked(run, image_sample):
    report = json.loads((run / "report.json").read_text())
    names = [s["name"] for s in report["stages"]]
    assert names[:4] == ["validate", "task1", "item_sides", "configs"]
    assert {"train:DIN__given", "train:DIN__task1_codes", "blend", "submission"} <= set(names)
    assert not any(s["skipped"] for s in report["stages"])
    assert set(report["models"]) == {"DIN__given", "DIN__task1_codes"}
    blend = report["blend"]
    assert abs(sum(blend["members"].values()) - 1) < 1e-9
    best_single = max(m["valid"]["AUC"] for m in report["models"].values())
    assert blend["valid"]["AUC"] >= best_single - 1e-12   # the blend starts from the best one
    assert 0.5 < report["hidden_test"]["AUC"] <= 1        # scored against the sample's truth
    checked = check_submission_zip(report["submission"],
                                   image_sample / "MicroLens_1M_x1" / "test.parquet")
    assert list(checked.columns) == ["ID", "Task2"]
    # the item side with codes carries them as item features
    tables = json.loads((run / "stages" / "item_sides.json").read_text())["outputs"]
    assert {"sid_1", "sid_2"} <= set(pq.read_schema(tables["task1_codes"]).names)


def test_a_rerun_skips_every_stage_and_a_new_model_trains_alone(run, image_sample, capsys):
    assert cli.main(["pipeline", "--data-dir", str(image_sample), "--work-dir", str(run),
                     "--models", "DIN", *COMMON]) == 0
    report = json.loads((run / "report.json").read_text())
    assert all(s["skipped"] for s in report["stages"])
    assert "up to date" in capsys.readouterr().out
    # the two new trainings run at once, each in a worker process (--jobs 2)
    assert cli.main(["pipeline", "--data-dir", str(image_sample), "--work-dir", str(run),
                     "--models", "DIN", "DCNv2", "--jobs", "2", *COMMON]) == 0
    report = json.loads((run / "report.json").read_text())
    ran = {s["name"] for s in report["stages"] if not s["skipped"]}
    # the configs are rewritten for the new expids; only DCNv2's trainings run
    assert {"train:DCNv2__given", "train:DCNv2__task1_codes"} <= ran
    assert list(report["models"]) == ["DIN__given", "DCNv2__given", "DIN__task1_codes",
                                      "DCNv2__task1_codes"]
    assert all(0.5 < m["valid"]["AUC"] <= 1 for m in report["models"].values())
    assert not {"validate", "task1", "item_sides", "train:DIN__given"} & ran


def test_a_changed_test_split_rewrites_the_zip_alone(run, image_sample):
    """The test split is read by the submission stage only: a new test file (here the same
    rows in reverse order) reruns that stage, and the zip follows the new order."""
    command = ["pipeline", "--data-dir", str(image_sample), "--work-dir", str(run),
               "--models", "DIN", "DCNv2", *COMMON]
    assert cli.main(command) == 0     # up to date (the test before trained DCNv2)
    test_file = image_sample / "MicroLens_1M_x1" / "test.parquet"
    original = test_file.read_bytes()
    before = _zip_scores(run / "submission.zip")
    table = pq.read_table(test_file)
    try:
        pq.write_table(table.take(list(range(table.num_rows - 1, -1, -1))), test_file)
        assert cli.main(command) == 0
    finally:
        test_file.write_bytes(original)
    report = json.loads((run / "report.json").read_text())
    ran = {s["name"] for s in report["stages"] if not s["skipped"]}
    assert ran == {"validate", "submission"}     # checked again, scored again: nothing else
    # the rank blend's scores: a row's probability may move in its last bits with the rows
    # batched beside it, which can swap two rows that tie to float precision (one rank, 1/n)
    after, n = _zip_scores(run / "submission.zip"), len(before)
    assert after == pytest.approx(before[::-1], abs=2.0 / n)
    assert sum(a != b for a, b in zip(after, before[::-1])) <= n // 100


def _zip_scores(path):
    with zipfile.ZipFile(path) as archive:
        return list(pd.read_csv(io.BytesIO(archive.read("prediction.csv")))["Task2"])


def test_a_diverged_model_is_left_out_and_named(run, image_sample, capsys, monkeypatch):
    """One model's NaN does not cost the submission: the others are blended, the report and
    the summary name it, and no record is written, so the next run tries it again."""
    real = experiment.train

    def diverging(config_dir, expid, *args, **kwargs):
        if expid.startswith("FiBiNET"):
            raise TrainingDiverged(f"{expid}: predictions became NaN at epoch 1, batch 3")
        return real(config_dir, expid, *args, **kwargs)
    monkeypatch.setattr(experiment, "train", diverging)
    assert cli.main(["pipeline", "--data-dir", str(image_sample), "--work-dir", str(run),
                     "--models", "DIN", "FiBiNET", *COMMON]) == 0
    report = json.loads((run / "report.json").read_text())
    assert set(report["diverged"]) == {"FiBiNET__given", "FiBiNET__task1_codes"}
    assert not any(e.startswith("FiBiNET") for e in report["models"])
    assert not any(e.startswith("FiBiNET") for e in report["blend"]["members"])
    assert "diverged, left out" in capsys.readouterr().out
    assert not (run / "stages" / "train__FiBiNET__given.json").exists()


def test_a_bad_data_dir_is_one_line(tmp_path, capsys):
    assert cli.main(["pipeline", "--data-dir", str(tmp_path), "--work-dir",
                     str(tmp_path / "w"), "--tiny-clip"]) == 2
    assert "no MicroLens_1M_x1/ folder" in capsys.readouterr().err


def test_the_content_item_side_from_item_feature_vectors(tiny_sample, image_sample, tmp_path,
                                                         capsys):
    """``content_codes``: item_feature's text and image vectors, PCA to 128, and their codes, made
    by the content stage (no teacher, no model) and trained on; without those columns the
    pipeline stops at that stage, naming the file and column."""
    work = tmp_path / "work"
    args = ["--models", "DIN", "--epochs", "1", "--batch-size", "512", "--code-levels", "2",
            "--codebook", "8", "--item-sides", "content_codes"]
    assert cli.main(["pipeline", "--data-dir", str(tiny_sample), "--work-dir", str(work),
                     *args]) == 0
    report = json.loads((work / "report.json").read_text())
    assert [s["name"] for s in report["stages"]][:3] == ["validate", "content", "item_sides"]
    assert set(report["models"]) == {"DIN__content_codes"}
    table = pq.read_table(work / "item_sides" / "item_info_content_codes.parquet")
    assert {"sid_1", "sid_2"} <= set(table.column_names)
    vectors = np.asarray(table.column("item_emb_d128").to_pylist()[1:])
    assert vectors.shape[1] == 128 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert cli.main(["pipeline", "--data-dir", str(image_sample), "--work-dir",
                     str(tmp_path / "bad"), *args]) == 2
    assert "item_feature.parquet, column 'txt_emb_BERT'" in capsys.readouterr().err
