"""The pipeline's stages run once per set of inputs: skipped when their key and outputs are
unchanged, run again when either changed, when asked to, or when their record is unreadable."""
from __future__ import annotations

from fuxictr_mmctr.pipeline.stages import Stages, content_digest


def _step(out, calls, value="x"):
    def step():
        calls.append(value)
        out.write_text(value)
        return {"file": out}, {"value": value}
    return step


def test_a_stage_runs_once_per_key(tmp_path):
    stages, out, calls = Stages(tmp_path), tmp_path / "a.txt", []
    first = stages.run("a", {"setting": 1}, _step(out, calls))
    again = Stages(tmp_path).run("a", {"setting": 1}, _step(out, calls))   # a new process
    assert calls == ["x"] and not first.skipped and again.skipped
    assert again.result == {"value": "x"} and again.outputs == {"file": str(out)}
    Stages(tmp_path).run("a", {"setting": 2}, _step(out, calls, "y"))       # a changed setting
    assert calls == ["x", "y"] and out.read_text() == "y"


def test_a_lost_output_a_forced_rerun_and_a_broken_record_run_the_stage_again(tmp_path):
    out, calls = tmp_path / "a.txt", []
    Stages(tmp_path).run("train:A", {}, _step(out, calls))
    out.unlink()
    Stages(tmp_path).run("train:A", {}, _step(out, calls))
    Stages(tmp_path, rerun=("train:",)).run("train:A", {}, _step(out, calls))
    assert len(calls) == 3
    record = next((tmp_path / "stages").glob("*.json"))
    record.write_text("{not json")
    Stages(tmp_path).run("train:A", {}, _step(out, calls))
    assert len(calls) == 4


def test_a_failed_step_leaves_no_record(tmp_path):
    def fail():
        raise RuntimeError("killed")
    try:
        Stages(tmp_path).run("a", {}, fail)
    except RuntimeError:
        pass
    calls = []
    assert not Stages(tmp_path).run("a", {}, _step(tmp_path / "a.txt", calls)).skipped


def test_a_step_run_elsewhere_is_saved_and_then_up_to_date(tmp_path):
    """What the pipeline's parallel trainings do: ask whether a stage must run (``current``),
    run it in a worker, then ``save`` its record; the next run finds it up to date."""
    out, key = tmp_path / "a.txt", {"setting": 1}
    assert Stages(tmp_path).current("train:A", key) is None
    out.write_text("x")
    saved = Stages(tmp_path).save("train:A", key, {"file": out}, {"AUC": 0.7}, 12.5)
    found = Stages(tmp_path).current("train:A", key)
    assert found.skipped and found.seconds == 12.5 and found.result == {"AUC": 0.7}
    assert found.key == saved.key
    assert Stages(tmp_path).current("train:A", {"setting": 2}) is None
    assert Stages(tmp_path, rerun=("train:",)).current("train:A", key) is None


def test_content_digest_follows_bytes_not_names(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert content_digest(a) == content_digest(b)
    b.write_bytes(b"other")
    assert content_digest(a) != content_digest(b)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x").write_bytes(b"1")
    before = content_digest(folder)
    (folder / "x").write_bytes(b"2")
    assert content_digest(folder) != before
