"""IDs are used or checked, never ignored (issue 19, class 2): a predictions table with an ID
column is aligned by it or refused, predictions that are not real numbers are refused, and a
test file whose own ID column disagrees with its row order is refused. On the tiny sample's
test split (1000 rows)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fuxictr_mmctr import cli, compat
from fuxictr_mmctr.submit.submission import (SubmissionError, build_submission,
                                             check_submission_zip, load_predictions,
                                             validate_submission)


@pytest.fixture
def test_file(tiny_sample):
    return tiny_sample / "MicroLens_1M_x1" / "test.parquet"


@pytest.fixture
def values():
    return np.random.default_rng(0).random(1000)


def _submit(tmp_path, test_file, pred, *extra):
    out = tmp_path / "sub.zip"
    code = cli.main(["submit", "--pred", str(pred), "--test", str(test_file), "--out", str(out),
                     *extra])
    return code, out


def _zip_values(path):
    table = pd.read_csv(path, **compat.EXACT_FLOATS_CSV)
    assert list(table["ID"]) == list(range(len(table)))
    return table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rows_in_another_order_are_aligned_by_id(tmp_path, test_file, values, suffix):
    """The example: `ID,Task2` rows shuffled were taken by position (every row misaligned)."""
    table = pd.DataFrame({"ID": np.arange(1000), "Task2": values}).sample(frac=1, random_state=3)
    pred = tmp_path / f"preds{suffix}"
    table.to_csv(pred, index=False) if suffix == ".csv" else table.to_parquet(pred, index=False)
    code, out = _submit(tmp_path, test_file, pred)
    assert code == 0
    np.testing.assert_array_equal(_zip_values(out)["Task2"].to_numpy(), values)


def test_an_id_column_of_floats_is_not_taken_for_predictions(tmp_path, test_file, values):
    """`ID` written as 0.0, 1.0, ... was the first float column: it is the key, not the value."""
    table = pd.DataFrame({"ID": np.arange(1000, dtype=float)[::-1], "score": values[::-1]})
    table.to_csv(tmp_path / "p.csv", index=False)
    np.testing.assert_array_equal(load_predictions(tmp_path / "p.csv", n_rows=1000), values)
    with pytest.raises(SubmissionError, match="ID column, not predictions"):
        load_predictions(tmp_path / "p.csv", column="ID", n_rows=1000)


def test_the_task_column_is_preferred_to_the_first_float_column(tmp_path, test_file, values):
    """A four-column file (ID, Task1 = 0, Task2, Task1&2 = 0) with --task Task2 took Task1."""
    table = pd.DataFrame({"ID": np.arange(1000), "Task1": 0.0, "Task2": values, "Task1&2": 0.0})
    table.to_csv(tmp_path / "four.csv", index=False)
    code, out = _submit(tmp_path, test_file, tmp_path / "four.csv", "--task", "Task2")
    assert code == 0
    np.testing.assert_array_equal(_zip_values(out)["Task2"].to_numpy(), values)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.iloc[:999], "1 of the 1000 test IDs have no prediction"),
    (lambda t: t.assign(ID=t["ID"].where(t["ID"] != 7, 8)), "ID 8 appears more than once"),
    (lambda t: t.assign(ID=t["ID"] + 1), "ID 1000 outside 0..999"),
    (lambda t: t.assign(ID=t["ID"] - 1), "ID -1 outside 0..999"),
    (lambda t: t.assign(ID=t["ID"] + 0.5), "is not a whole number"),
    (lambda t: t.assign(ID=[f"r{i}" for i in t["ID"]]), "IDs must be integers"),
])
def test_ids_that_are_not_a_permutation_are_refused(tmp_path, test_file, values, mutate,
                                                     message, caplog):
    table = mutate(pd.DataFrame({"ID": np.arange(1000), "Task2": values}))
    table.to_csv(tmp_path / "bad.csv", index=False)
    code, out = _submit(tmp_path, test_file, tmp_path / "bad.csv")
    assert code == 2 and not out.exists()
    assert message in caplog.text and "bad.csv, column 'ID'" in caplog.text


@pytest.mark.parametrize("make, dtype", [
    (lambda v: v.astype(np.complex128) + 0.5j, "complex"),
    (lambda v: v.astype(np.complex64), "complex"),
    (lambda v: v > 0.5, "boolean"),
    (lambda v: v.astype(str), "not numeric"),
])
def test_predictions_that_are_not_real_numbers_are_refused(tmp_path, test_file, values, make,
                                                           dtype, caplog):
    """Complex predictions lost their imaginary part silently; booleans became 0/1."""
    np.save(tmp_path / "p.npy", make(values))
    code, out = _submit(tmp_path, test_file, tmp_path / "p.npy")
    assert code == 2 and not out.exists() and dtype in caplog.text
    with pytest.raises(SubmissionError, match=dtype):
        build_submission({"Task2": make(values)}, n_rows=1000)


def test_table_columns_that_are_not_real_numbers_are_refused(tmp_path, values):
    pd.DataFrame({"Task2": values > 0.5}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(SubmissionError, match="b.csv, column 'Task2': boolean"):
        load_predictions(tmp_path / "b.csv", prefer="Task2")
    pd.DataFrame({"Task2": values.astype(complex)}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(SubmissionError, match="c.csv, column 'Task2': predictions are not num"):
        load_predictions(tmp_path / "c.csv", prefer="Task2")  # "(0.63+0j)": text to pandas
    frame = pd.DataFrame({"ID": np.arange(1000), "Task2": values.astype(complex)})
    with pytest.raises(SubmissionError, match="complex values"):
        validate_submission(frame, n_rows=1000)


def test_a_test_file_whose_ids_are_not_its_row_order_is_refused(tmp_path, test_file, values,
                                                               caplog):
    """The submission's ID is the test file's row order; a test file carrying its own ID
    column in another order would file every prediction under another row's ID."""
    table = pq.read_table(test_file)
    ids = np.arange(table.num_rows)
    ids[[10, 11]] = ids[[11, 10]]
    shuffled = tmp_path / "test.parquet"
    pq.write_table(table.append_column("ID", pa.array(ids)), shuffled)
    np.save(tmp_path / "p.npy", values)
    code, out = _submit(tmp_path, shuffled, tmp_path / "p.npy")
    assert code == 2 and not out.exists()
    assert "test.parquet, column 'ID', row 10: the test file's IDs are not its row order" \
        in caplog.text
    in_order = tmp_path / "in_order.parquet"
    pq.write_table(table.append_column("ID", pa.array(np.arange(table.num_rows))), in_order)
    code, out = _submit(tmp_path, in_order, tmp_path / "p.npy")
    assert code == 0
    check_submission_zip(out, in_order)
    with pytest.raises(SubmissionError, match="not its row order"):
        check_submission_zip(out, shuffled)
