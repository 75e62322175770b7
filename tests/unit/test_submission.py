"""Tests of the Codabench submission writer and checker (fuxictr_mmctr.submit.submission)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fuxictr_mmctr import cli, compat
from fuxictr_mmctr.errors import DataFileNotFound, DataValidationError
from fuxictr_mmctr.submit.submission import (
    TASK_COLUMNS,
    SubmissionError,
    build_submission,
    check_submission_zip,
    count_rows,
    validate_submission,
    write_submission,
    write_submission_zip,
)

N_ROWS = 6


@pytest.fixture()
def test_parquet(tmp_path: Path) -> Path:
    """A tiny test split shaped like MicroLens (no label column)."""
    path = tmp_path / "test.parquet"
    table = pa.table({
        "user_id": pa.array(range(1, N_ROWS + 1), pa.int64()),
        "item_seq": pa.array([[0, 0, i + 1] for i in range(N_ROWS)], pa.list_(pa.int64())),
        "likes_level": pa.array([1] * N_ROWS, pa.int64()),
        "views_level": pa.array([2] * N_ROWS, pa.int64()),
        "item_id": pa.array([3, 1, 2, 5, 4, 1], pa.int64()),
    })
    pq.write_table(table, path)
    return path


@pytest.fixture()
def preds() -> np.ndarray:
    # Includes values that %.6f-style formatting would collapse into ties.
    return np.array([0.1, 0.25, 1e-12, 3e-12, 0.999999999, 1.0 / 3.0])


def _good_frame(n: int = N_ROWS) -> pd.DataFrame:
    return pd.DataFrame({"ID": np.arange(n), "Task2": np.linspace(0.0, 1.0, n)})


def _zip_with(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False)


# ------------------------------------------------------------------------------------------
# count_rows
# ------------------------------------------------------------------------------------------
def test_count_rows_reads_metadata(test_parquet):
    assert count_rows(test_parquet) == N_ROWS


def test_count_rows_missing_file(tmp_path):
    with pytest.raises(DataFileNotFound, match="nope.parquet: file not found"):
        count_rows(tmp_path / "nope.parquet")


def test_count_rows_not_parquet(tmp_path):
    bad = tmp_path / "test.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataValidationError, match="test.parquet: not a readable parquet file"):
        count_rows(bad)


# ------------------------------------------------------------------------------------------
# validate_submission: every refusal
# ------------------------------------------------------------------------------------------
def test_validate_accepts_good_frame():
    validate_submission(_good_frame(), n_rows=N_ROWS)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda df: df.iloc[:-1], r"5 rows, but test.parquet has 6"),
        (lambda df: df.assign(Task2=df.Task2.where(df.ID != 3, np.nan)), r"Task2', row 3: missing or NaN"),
        (lambda df: df.assign(Task2=df.Task2.where(df.ID != 2, np.inf)), r"Task2', row 2: infinite"),
        (lambda df: df.assign(Task2=df.Task2.where(df.ID != 2, -np.inf)), r"Task2', row 2: infinite"),
        (lambda df: df.assign(Task2=df.Task2.where(df.ID != 4, 1.5)), r"Task2', row 4: value 1.5 outside"),
        (lambda df: df.assign(Task2=df.Task2.where(df.ID != 1, -0.01)), r"Task2', row 1: value -0.01 outside"),
        (lambda df: df.assign(ID=[0, 2, 1, 3, 4, 5]), r"'ID', row 1: IDs must be 0..5 .*found 2"),
        (lambda df: df.assign(ID=df.ID + 1), r"'ID', row 0: IDs must be 0..5 .*found 1 where 0"),
        (lambda df: df.assign(ID=df.ID.astype(float)), r"'ID'.*IDs must be integers"),
        (lambda df: df.drop(columns="Task2"), r"no task column"),
        (lambda df: df.drop(columns="ID"), r"no ID column"),
        (lambda df: df.assign(Task3=0.5), r"unknown column\(s\) \['Task3'\]"),
        (lambda df: df[["Task2", "ID"]], r"ID must be the first column"),
        (lambda df: pd.concat([df, df[["Task2"]]], axis=1), r"'Task2'.*duplicate column"),
        (lambda df: df.assign(Task2=df.Task2.astype(object).where(df.ID != 5, "abc")),
         r"Task2', row 5: non-numeric value 'abc'"),
        (lambda df: df.assign(Task2=df.ID > 2), r"Task2': boolean values"),
    ],
    ids=["row-count", "nan", "inf", "-inf", "above-1", "below-0", "ids-order", "ids-start",
         "ids-float", "no-task", "no-id", "unknown-col", "id-not-first", "duplicate-col",
         "non-numeric", "boolean"],
)
def test_validate_refuses(mutate, match):
    df = mutate(_good_frame())
    with pytest.raises(SubmissionError, match=match) as info:
        validate_submission(df, n_rows=N_ROWS)
    assert "prediction.csv" in str(info.value)


def test_validate_accepts_bounds_exactly():
    df = _good_frame().assign(Task2=[0.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    validate_submission(df, n_rows=N_ROWS)


# ------------------------------------------------------------------------------------------
# build_submission
# ------------------------------------------------------------------------------------------
def test_build_submission_single_task(preds):
    df = build_submission({"Task2": preds}, n_rows=N_ROWS)
    assert list(df.columns) == ["ID", "Task2"]
    assert df["ID"].tolist() == list(range(N_ROWS))
    np.testing.assert_array_equal(df["Task2"].to_numpy(), preds)


def test_build_submission_all_columns_zero_fill(preds):
    df = build_submission({"Task1&2": preds}, n_rows=N_ROWS, all_columns=True)
    assert list(df.columns) == ["ID", *TASK_COLUMNS]
    assert (df["Task1"] == 0).all() and (df["Task2"] == 0).all()
    np.testing.assert_array_equal(df["Task1&2"].to_numpy(), preds)


@pytest.mark.parametrize(
    "predictions, match",
    [
        ({}, "no task column"),
        ({"Task9": np.zeros(N_ROWS)}, "unknown task column"),
        ({"Task2": np.zeros(N_ROWS + 1)}, "7 predictions for 6 test rows"),
        ({"Task2": np.zeros((N_ROWS, 2))}, "1-d array"),
        ({"Task2": np.full(N_ROWS, 2.0)}, "row 0: value 2.0 outside"),
    ],
)
def test_build_submission_refuses(predictions, match):
    with pytest.raises(SubmissionError, match=match):
        build_submission(predictions, n_rows=N_ROWS)


# ------------------------------------------------------------------------------------------
# Writing: good path and atomicity
# ------------------------------------------------------------------------------------------
def test_write_submission_zip_layout_and_values(tmp_path, preds, test_parquet):
    out = write_submission({"Task2": preds}, zip_path=tmp_path / "sub" / "submission.zip",
                           n_rows=N_ROWS)
    assert out == tmp_path / "sub" / "submission.zip"
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["prediction.csv"]
        text = archive.read("prediction.csv").decode("utf-8")
    assert text.splitlines()[0] == "ID,Task2"
    back = pd.read_csv(io.StringIO(text), **compat.EXACT_FLOATS_CSV)
    assert back["ID"].tolist() == list(range(N_ROWS))
    # Lossless float formatting: values read back bit-identical (so the AUC cannot move).
    np.testing.assert_array_equal(back["Task2"].to_numpy(), preds)
    # No temporary files are left beside the archive.
    assert sorted(p.name for p in out.parent.iterdir()) == ["submission.zip"]
    report = check_submission_zip(out, test_parquet=test_parquet)
    assert report.n_rows == N_ROWS and report.columns == ("ID", "Task2")


def test_write_four_column_layout(tmp_path, preds):
    out = write_submission({"Task1": preds}, zip_path=tmp_path / "s.zip", n_rows=N_ROWS,
                           all_columns=True)
    with zipfile.ZipFile(out) as archive:
        back = pd.read_csv(archive.open("prediction.csv"), **compat.EXACT_FLOATS_CSV)
    assert list(back.columns) == ["ID", "Task1", "Task2", "Task1&2"]
    assert (back["Task2"] == 0).all() and (back["Task1&2"] == 0).all()
    np.testing.assert_array_equal(back["Task1"].to_numpy(), preds)


def test_write_is_deterministic(tmp_path, preds):
    a = write_submission({"Task2": preds}, zip_path=tmp_path / "a.zip", n_rows=N_ROWS)
    b = write_submission({"Task2": preds}, zip_path=tmp_path / "b.zip", n_rows=N_ROWS)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "predictions",
    [
        {"Task2": np.full(N_ROWS, np.nan)},
        {"Task2": np.full(N_ROWS, np.inf)},
        {"Task2": np.full(N_ROWS, 1.01)},
        {"Task2": np.full(N_ROWS, -0.5)},
        {"Task2": np.zeros(N_ROWS - 1)},
        {},
    ],
    ids=["nan", "inf", "above-1", "below-0", "row-count", "no-task"],
)
def test_refusal_writes_nothing(tmp_path, predictions):
    target = tmp_path / "submission.zip"
    with pytest.raises(SubmissionError):
        write_submission(predictions, zip_path=target, n_rows=N_ROWS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "predictions",
    [{"Task2": np.full(N_ROWS, np.nan)}, {"Task2": np.zeros(N_ROWS + 2)}],
    ids=["nan", "row-count"],
)
def test_refusal_keeps_existing_zip(tmp_path, preds, predictions):
    target = write_submission({"Task2": preds}, zip_path=tmp_path / "submission.zip",
                              n_rows=N_ROWS)
    before = target.read_bytes()
    with pytest.raises(SubmissionError):
        write_submission(predictions, zip_path=target, n_rows=N_ROWS)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["submission.zip"]


def test_write_failure_mid_write_keeps_existing_zip(tmp_path, preds, monkeypatch):
    target = write_submission({"Task2": preds}, zip_path=tmp_path / "submission.zip",
                              n_rows=N_ROWS)
    before = target.read_bytes()
    df = build_submission({"Task2": preds[::-1].copy()}, n_rows=N_ROWS)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError, match="disk full"):
        write_submission_zip(df, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["submission.zip"]


def test_write_refuses_non_zip_name(tmp_path):
    with pytest.raises(SubmissionError, match=r"must end in \.zip"):
        write_submission_zip(_good_frame(), tmp_path / "prediction.csv")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# check_submission_zip: every refusal of a crafted archive
# ------------------------------------------------------------------------------------------
def test_check_accepts_hand_made_zip(tmp_path, test_parquet):
    path = _zip_with(tmp_path / "s.zip", {"prediction.csv": _csv(_good_frame())})
    report = check_submission_zip(path, test_parquet=test_parquet)
    assert report.n_rows == N_ROWS and report.columns == ("ID", "Task2")
    assert report.extra_entries == ()


def test_check_nested_csv(tmp_path, test_parquet):
    path = _zip_with(tmp_path / "s.zip", {"submission/prediction.csv": _csv(_good_frame())})
    with pytest.raises(SubmissionError, match=r"must be at the root.*submission/prediction.csv"):
        check_submission_zip(path, test_parquet=test_parquet)


def test_check_root_and_nested_csv_is_ambiguous(tmp_path, test_parquet):
    text = _csv(_good_frame())
    path = _zip_with(tmp_path / "s.zip", {"prediction.csv": text, "x/prediction.csv": text})
    with pytest.raises(SubmissionError, match="ambiguous"):
        check_submission_zip(path, test_parquet=test_parquet)


def test_check_no_csv(tmp_path, test_parquet):
    path = _zip_with(tmp_path / "s.zip", {"predictions.csv": _csv(_good_frame())})
    with pytest.raises(SubmissionError, match=r"no prediction.csv in the archive"):
        check_submission_zip(path, test_parquet=test_parquet)


def test_check_empty_zip(tmp_path, test_parquet):
    path = _zip_with(tmp_path / "s.zip", {})
    with pytest.raises(SubmissionError, match=r"no prediction.csv"):
        check_submission_zip(path, test_parquet=test_parquet)


def test_check_corrupt_zip(tmp_path, test_parquet, preds):
    good = write_submission({"Task2": preds}, zip_path=tmp_path / "good.zip", n_rows=N_ROWS)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SubmissionError, match="not a zip archive"):
        check_submission_zip(truncated, test_parquet=test_parquet)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(SubmissionError, match="not a zip archive"):
        check_submission_zip(garbage, test_parquet=test_parquet)


def test_check_corrupt_member(tmp_path, test_parquet):
    # A stored (uncompressed) member with one flipped byte: the directory is fine, the CRC fails.
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("prediction.csv", _csv(_good_frame()))
    data = bytearray(path.read_bytes())
    offset = data.index(b"ID,Task2")
    data[offset + 1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SubmissionError, match="cannot read the archive"):
        check_submission_zip(path, test_parquet=test_parquet)


def test_check_missing_zip(tmp_path, test_parquet):
    with pytest.raises(SubmissionError, match="archive not found"):
        check_submission_zip(tmp_path / "none.zip", test_parquet=test_parquet)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("ID,Task2\n0,0.1\n1,0.2\n", r"2 rows, but test.parquet has 6"),
        ("ID,Task2\n" + "".join(f"{i},abc\n" for i in range(N_ROWS)), r"row 0: non-numeric value 'abc'"),
        ("ID,Task2\n" + "".join(f"{i},{0.1 if i != 3 else 'x'}\n" for i in range(N_ROWS)),
         r"Task2', row 3: non-numeric value 'x'"),
        ("ID,Task2\n" + "".join(f"{i},{0.1 if i != 2 else ''}\n" for i in range(N_ROWS)),
         r"Task2', row 2: missing or NaN"),
        ("ID,Task2\n" + "".join(f"{i},{0.1 if i != 2 else 'inf'}\n" for i in range(N_ROWS)),
         r"Task2', row 2: infinite"),
        ("ID,Task2\n" + "".join(f"{i},{0.1 if i != 4 else 7}\n" for i in range(N_ROWS)),
         r"Task2', row 4: value 7.0 outside"),
        ("ID,Task2\n" + "".join(f"{i + 1},0.1\n" for i in range(N_ROWS)), r"'ID', row 0: IDs"),
        ("ID,Task2\n" + "".join(f"{i}.0,0.1\n" for i in range(N_ROWS)), r"IDs must be integers"),
        ("ID,Task2,Task2\n" + "".join(f"{i},0.1,0.1\n" for i in range(N_ROWS)), "duplicate column"),
        ("ID,\n" + "".join(f"{i},0.1\n" for i in range(N_ROWS)), "empty column name"),
        ("ID, Task2\n" + "".join(f"{i},0.1\n" for i in range(N_ROWS)), "surrounding spaces"),
        ("ID\n" + "".join(f"{i}\n" for i in range(N_ROWS)), "no task column"),
        ("ID,Task2\n" + "".join(f"{i},0.1,9\n" for i in range(N_ROWS)), "more fields than the header"),
        ("ID,Task2\n0,0.1,9\n" + "".join(f"{i},0.1\n" for i in range(1, N_ROWS)),
         "more fields than the header"),
        ("ID,Task2\n" + "".join(f"{i},0.1\n" for i in range(N_ROWS - 1)) + "5,0.1,9\n",
         r"malformed csv.*Expected 2 fields in line 7, saw 3"),
    ],
    ids=["empty", "row-count", "all-text", "one-text", "empty-cell", "inf", "above-1", "ids-start",
         "ids-float", "dup-header", "empty-header", "spaced-header", "no-task", "extra-fields",
         "extra-first-row", "ragged"],
)
def test_check_refuses_bad_csv(tmp_path, test_parquet, text, match):
    path = _zip_with(tmp_path / "s.zip", {"prediction.csv": text})
    with pytest.raises(SubmissionError, match=match) as info:
        check_submission_zip(path, test_parquet=test_parquet)
    assert "s.zip!prediction.csv" in str(info.value)


def test_check_warns_on_extra_entries(tmp_path, test_parquet, caplog):
    path = _zip_with(tmp_path / "s.zip", {"prediction.csv": _csv(_good_frame()), "README.txt": "hi"})
    report = check_submission_zip(path, test_parquet=test_parquet)
    assert report.extra_entries == ("README.txt",)
    assert "README.txt" in caplog.text


# ------------------------------------------------------------------------------------------
# CLI: mmctr submit / mmctr check-submission
# ------------------------------------------------------------------------------------------
def test_cli_submit_npy_then_check(tmp_path, test_parquet, preds, capsys):
    pred = tmp_path / "pred.npy"
    np.save(pred, preds.astype(np.float32))
    out = tmp_path / "submission.zip"
    assert cli.main(["submit", "--pred", str(pred), "--test", str(test_parquet),
                     "--out", str(out)]) == 0
    assert cli.main(["check-submission", str(out), "--test", str(test_parquet)]) == 0
    assert "OK" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        back = pd.read_csv(archive.open("prediction.csv"), **compat.EXACT_FLOATS_CSV)
    np.testing.assert_array_equal(back["Task2"].to_numpy(np.float32), preds.astype(np.float32))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_submit_table_all_columns(tmp_path, test_parquet, preds, suffix):
    table = pd.DataFrame({"row": np.arange(N_ROWS), "score": preds, "other": preds / 2})
    pred = tmp_path / f"pred{suffix}"
    table.to_csv(pred, index=False) if suffix == ".csv" else table.to_parquet(pred, index=False)
    out = tmp_path / "submission.zip"
    args = ["submit", "--pred", str(pred), "--test", str(test_parquet), "--out", str(out),
            "--task", "Task1&2", "--all-columns"]
    assert cli.main(args) == 0  # default column: first float column ("score")
    with zipfile.ZipFile(out) as archive:
        back = pd.read_csv(archive.open("prediction.csv"), **compat.EXACT_FLOATS_CSV)
    assert list(back.columns) == ["ID", "Task1", "Task2", "Task1&2"]
    np.testing.assert_array_equal(back["Task1&2"].to_numpy(), preds)
    assert cli.main(args + ["--pred-column", "other"]) == 0
    with zipfile.ZipFile(out) as archive:
        back = pd.read_csv(archive.open("prediction.csv"), **compat.EXACT_FLOATS_CSV)
    np.testing.assert_array_equal(back["Task1&2"].to_numpy(), preds / 2)
    assert cli.main(args + ["--pred-column", "missing"]) == 2


def test_cli_submit_refusal_exit_code_and_no_zip(tmp_path, test_parquet, caplog):
    pred = tmp_path / "pred.npy"
    np.save(pred, np.full(N_ROWS, 1.5))
    out = tmp_path / "submission.zip"
    assert cli.main(["submit", "--pred", str(pred), "--test", str(test_parquet),
                     "--out", str(out)]) == 2
    assert not out.exists()
    assert "outside [0, 1]" in caplog.text and "pred.npy" in caplog.text
    np.save(pred, np.full(N_ROWS - 1, 0.5))
    assert cli.main(["submit", "--pred", str(pred), "--test", str(test_parquet),
                     "--out", str(out)]) == 2
    assert not out.exists()
    assert cli.main(["submit", "--pred", str(tmp_path / "missing.npy"), "--test",
                     str(test_parquet), "--out", str(out)]) == 2


def test_cli_check_refuses(tmp_path, test_parquet, caplog):
    path = _zip_with(tmp_path / "s.zip", {"dir/prediction.csv": _csv(_good_frame())})
    assert cli.main(["check-submission", str(path), "--test", str(test_parquet)]) == 2
    assert "root" in caplog.text
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"garbage")
    assert cli.main(["check-submission", str(bad), "--test", str(test_parquet)]) == 2


def test_check_names_a_zip_whose_compressed_data_is_corrupt(tmp_path, test_parquet):
    """zlib's own error (not a BadZipFile) used to escape as a traceback."""
    n = pq.read_metadata(test_parquet).num_rows
    good = write_submission({"Task2": np.random.default_rng(0).random(n)}, tmp_path / "s.zip",
                            n_rows=n)
    data = bytearray(good.read_bytes())
    start = data.index(b"prediction.csv") + 40  # inside the deflate stream of the entry
    data[start:start + 30] = bytes(b ^ 0xFF for b in data[start:start + 30])
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(SubmissionError, match="cannot read the archive"):
        check_submission_zip(bad, test_parquet)
    assert cli.main(["check-submission", str(bad), "--test", str(test_parquet)]) == 2
