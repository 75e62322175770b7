"""Tests of the Task 2 popularity baseline (fuxictr_mmctr.submit.popularity)."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fuxictr_mmctr import cli, compat
from fuxictr_mmctr.errors import DataValidationError
from fuxictr_mmctr.submit.popularity import ItemCTR, fit_item_ctr, predict, run_popularity
from fuxictr_mmctr.submit.submission import check_submission_zip

SEQ_LEN = 4


def _split_table(item_ids, labels=None, seed: int = 0) -> pa.Table:
    """A MicroLens-shaped split (list column included, so column pruning is exercised)."""
    rng = np.random.default_rng(seed)
    n = len(item_ids)
    columns = {
        "user_id": pa.array(np.arange(1, n + 1), pa.int64()),
        "item_seq": pa.array(rng.integers(1, 10, size=(n, SEQ_LEN)).tolist(), pa.list_(pa.int64())),
        "likes_level": pa.array(rng.integers(1, 11, size=n), pa.int64()),
        "views_level": pa.array(rng.integers(1, 11, size=n), pa.int64()),
        "item_id": pa.array(np.asarray(item_ids), pa.int64()),
    }
    if labels is not None:
        columns["label"] = pa.array(np.asarray(labels), pa.int64())
    return pa.table(columns)


def _synthetic_dir(root: Path, n_items: int = 40, n_train: int = 4000, n_valid: int = 1000,
                   n_test: int = 500, seed: int = 0) -> Path:
    """train/valid/test where each item has its own true CTR (between 0.02 and 0.9)."""
    rng = np.random.default_rng(seed)
    true_ctr = rng.uniform(0.02, 0.9, size=n_items + 1)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", n_valid)):
        items = rng.integers(1, n_items + 1, size=n)
        labels = (rng.random(n) < true_ctr[items]).astype(np.int64)
        pq.write_table(_split_table(items, labels, seed=n), root / f"{split}.parquet")
    # Test holds a few items never seen in train/valid (ids above n_items); no label column.
    test_items = rng.integers(1, n_items + 6, size=n_test)
    pq.write_table(_split_table(test_items), root / "test.parquet")
    return root


# ------------------------------------------------------------------------------------------
# fit_item_ctr / predict
# ------------------------------------------------------------------------------------------
def test_smoothing_values_by_hand():
    frame = pd.DataFrame({"item_id": [1, 1, 1, 2, 2, 4], "label": [1, 1, 0, 0, 0, 1]})
    stats = fit_item_ctr(frame)
    assert isinstance(stats, ItemCTR)
    np.testing.assert_array_equal(stats.clicks, [0, 2, 0, 0, 1])
    np.testing.assert_array_equal(stats.impressions, [0, 3, 2, 0, 1])
    assert stats.global_ctr == pytest.approx(3 / 6)
    assert stats.ctr.dtype == np.float64
    assert stats.ctr[1] == pytest.approx((2 + 1) / (3 + 2))
    assert stats.ctr[2] == pytest.approx((0 + 1) / (2 + 2))
    assert stats.ctr[4] == pytest.approx((1 + 1) / (1 + 2))
    # Item 3 sits inside the array but was never seen: global CTR, not 1/2 from smoothing.
    assert stats.ctr[3] == pytest.approx(0.5) and stats.impressions[3] == 0


def test_custom_smoothing_and_unseen_items():
    frame = pd.DataFrame({"item_id": [1, 1, 2, 2, 2], "label": [1, 0, 0, 0, 0]})
    stats = fit_item_ctr(frame, smoothing=(0, 0.5))
    assert stats.global_ctr == pytest.approx(0.2)
    out = predict(stats, np.array([1, 2, 3, 99, 1_000_000]))
    np.testing.assert_allclose(out, [1 / 2.5, 0 / 3.5, 0.2, 0.2, 0.2])
    assert out.dtype == np.float64
    with pytest.raises(ValueError, match="smoothing"):
        fit_item_ctr(frame, smoothing=(3, 2))


def test_fit_on_several_sources_adds_counts(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(_split_table([1, 2, 2], [1, 0, 1]), path)
    polars_frame = pl.DataFrame({"item_id": pl.Series([5, 1], dtype=pl.Int32),
                                 "label": pl.Series([1, 1], dtype=pl.Int8)})
    arrow_table = pa.table({"item_id": pa.array([2], pa.int64()), "label": pa.array([0], pa.int8())})
    stats = fit_item_ctr([path, polars_frame, arrow_table])
    np.testing.assert_array_equal(stats.impressions, [0, 2, 3, 0, 0, 1])
    np.testing.assert_array_equal(stats.clicks, [0, 2, 1, 0, 0, 1])
    assert stats.global_ctr == pytest.approx(4 / 6)


def test_predict_refuses_bad_ids():
    stats = fit_item_ctr(pd.DataFrame({"item_id": [1], "label": [1]}))
    with pytest.raises(ValueError, match="integers"):
        predict(stats, np.array([1.5]))
    with pytest.raises(ValueError, match="negative"):
        predict(stats, np.array([-1]))


# ------------------------------------------------------------------------------------------
# Validation at the edge
# ------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match=r"nope.parquet: file not found"):
        fit_item_ctr(tmp_path / "nope.parquet")


@pytest.mark.parametrize(
    "table, match",
    [
        (pa.table({"item_id": [1, 2]}), r"column 'label': missing column"),
        (pa.table({"label": [1, 0]}), r"column 'item_id': missing column"),
        (pa.table({"item_id": [1.0, 2.0], "label": [1, 0]}), r"column 'item_id': expected int values, found double"),
        (pa.table({"item_id": ["a", "b"], "label": [1, 0]}), r"column 'item_id': expected int values, found string"),
        (pa.table({"item_id": [1, None, 3], "label": [1, 0, 1]}), r"column 'item_id', row 1: null value"),
        (pa.table({"item_id": [1, 0, 3], "label": [1, 0, 1]}), r"column 'item_id', row 1: value 0 below 1, .*0 is the padding id"),
        (pa.table({"item_id": [1, 2, 3], "label": [1, 2, 0]}), r"column 'label', row 1: label 2 is not 0 or 1"),
        (pa.table({"item_id": [1, 2, 3], "label": [0.0, 0.5, 1.0]}), r"column 'label', row 1: label 0.5"),
        (pa.table({"item_id": [1, 2, 3], "label": [1, 0, None]}), r"column 'label', row 2: null value"),
        (pa.table({"item_id": [1, 2], "label": ["1", "0"]}), r"column 'label': expected number values, found string"),
    ],
    ids=["no-label", "no-item", "float-ids", "string-ids", "null-id", "padding-id", "label-2",
         "label-half", "null-label", "string-label"],
)
def test_bad_parquet_named_in_error(tmp_path, table, match):
    path = tmp_path / "train.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataValidationError, match=match) as info:
        fit_item_ctr(path)
    assert str(path) in str(info.value)


def test_bad_frame_named_in_error():
    with pytest.raises(DataValidationError, match=r"<DataFrame #0>, column 'label': missing"):
        fit_item_ctr(pd.DataFrame({"item_id": [1]}))
    with pytest.raises(DataValidationError, match=r"<DataFrame #0>, column 'item_id': expected "
                                                  r"int values, found double"):
        fit_item_ctr(pd.DataFrame({"item_id": [1.0], "label": [1]}))
    with pytest.raises(DataValidationError, match=r"<DataFrame #1>, column 'label', row 0: "
                                                  r"label 3 is not 0 or 1"):
        fit_item_ctr([pd.DataFrame({"item_id": [1], "label": [1]}),
                      pl.DataFrame({"item_id": [2], "label": [3]})])


def test_run_popularity_missing_split(tmp_path):
    data = _synthetic_dir(tmp_path / "data")
    (data / "valid.parquet").unlink()
    with pytest.raises(DataValidationError, match=r"valid.parquet: file not found"):
        run_popularity(data, out_zip=tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------
def test_run_popularity_auc_and_zip(tmp_path, caplog):
    data = _synthetic_dir(tmp_path / "data")
    out = tmp_path / "pop.zip"
    result = run_popularity(data, out_zip=out)
    assert result.valid_auc > 0.7  # items' true CTRs differ a lot: far above chance
    assert result.fitted_on == ("train",)
    assert result.zip_path == out and result.n_test_rows == 500
    report = check_submission_zip(out, test_parquet=data / "test.parquet")
    assert report.columns == ("ID", "Task2") and report.n_rows == 500
    with zipfile.ZipFile(out) as archive:
        sub = pd.read_csv(archive.open("prediction.csv"), **compat.EXACT_FLOATS_CSV)
    test_items = pq.read_table(data / "test.parquet", columns=["item_id"])["item_id"].to_numpy()
    np.testing.assert_array_equal(sub["Task2"].to_numpy(), predict(result.item_ctr, test_items))
    unseen = test_items > 40
    assert unseen.any()
    np.testing.assert_allclose(sub["Task2"].to_numpy()[unseen], result.item_ctr.global_ctr)


def test_run_popularity_include_valid(tmp_path, caplog):
    data = _synthetic_dir(tmp_path / "data")
    plain = run_popularity(data, out_zip=tmp_path / "a.zip")
    with caplog.at_level(logging.INFO):
        both = run_popularity(data, out_zip=tmp_path / "b.zip", include_valid=True, task="Task1&2")
    # The AUC is still that of a train-only fit; the submission uses train + valid.
    assert both.valid_auc == pytest.approx(plain.valid_auc)
    assert both.fitted_on == ("train", "valid")
    assert both.item_ctr.n_rows == 4000 + 1000
    assert "fitted on train only" in caplog.text
    report = check_submission_zip(tmp_path / "b.zip", test_parquet=data / "test.parquet")
    assert report.columns == ("ID", "Task1&2")


def test_cli_popularity_writes_valid_zip(tmp_path, capsys):
    data = _synthetic_dir(tmp_path / "data")
    out = tmp_path / "sub" / "popularity.zip"
    assert cli.main(["popularity", "--data-dir", str(data), "--out", str(out),
                     "--include-valid", "--all-columns"]) == 0
    printed = capsys.readouterr().out
    assert "valid AUC" in printed and str(out) in printed
    assert cli.main(["check-submission", str(out), "--test", str(data / "test.parquet")]) == 0
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["prediction.csv"]
        sub = pd.read_csv(archive.open("prediction.csv"))
    assert list(sub.columns) == ["ID", "Task1", "Task2", "Task1&2"]
    assert (sub["Task1"] == 0).all() and (sub["Task2"] > 0).all()


def test_cli_popularity_bad_data_exit_code(tmp_path, caplog):
    data = _synthetic_dir(tmp_path / "data")
    pq.write_table(pa.table({"item_id": [1, 2], "label": [1, 3]}), data / "train.parquet")
    out = tmp_path / "popularity.zip"
    assert cli.main(["popularity", "--data-dir", str(data), "--out", str(out)]) == 2
    assert "column 'label'" in caplog.text
    assert not out.exists()
