"""No hang, no orphan (issue 19, class 5): a tuner driver stopped by SIGTERM ends the trial it
started (which then writes no results row), for the subprocess sweep and the Ray sweep; an
unreachable or silent Ray address is refused within its deadline."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, point_config_at


def _long_sweep(repo_config, data_root, name):
    """A one-trial tuner config whose trial would train for minutes."""
    config_dir = point_config_at(repo_config, data_root)
    path = config_dir / "model_config" / "DIN.yaml"
    config = yaml.safe_load(path.read_text())
    config["DIN_sample"].update(epochs=500, early_stop_patience=500, batch_size=256, verbose=0,
                                max_len=8)
    path.write_text(yaml.safe_dump(config))
    tuner = repo_config / "tuners" / f"{name}.yaml"
    tuner.write_text(yaml.safe_dump({"base_config": str(config_dir), "base_expid": "DIN_sample",
                                     "dataset_id": "MicroLens_sample",
                                     "tuner_space": {"learning_rate": [1.0e-3]}}))
    return tuner


def _start(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(ROOT / "run_param_tuner.py"), *map(str, args)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _processes_mentioning(text: str):
    """pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_for_epoch(work, proc, deadline_s=240):
    """Wait until the trial has written its first checkpoint (it is training)."""
    folder = work / "checkpoints" / "MicroLens_sample"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        if list(folder.glob("DIN_sample_*.model")):
            return next(iter(folder.glob("DIN_sample_*.log")))
        time.sleep(0.3)
    out = proc.stdout.read() if proc.poll() is not None else ""
    raise AssertionError(f"the trial never checkpointed (driver exit {proc.poll()}): {out[-3000:]}")


def _stop_and_check(proc, work, tuner, log, marker):
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the driver did not stop within 60 s of SIGTERM")
    out = proc.stdout.read()
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert "rerun the same command to resume" in out
    deadline = time.monotonic() + 30
    while _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(marker) == [], "a trial outlived its driver"
    size = log.stat().st_size
    time.sleep(3)
    assert log.stat().st_size == size  # nobody is training any more
    results = work / f"{tuner.stem}.csv"
    assert not results.exists() or results.read_text().strip() == ""  # no row afterwards
    return out


def test_sigterm_to_the_subprocess_sweep_ends_its_trial(tiny_sample, repo_config, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    tuner = _long_sweep(repo_config, tiny_sample, "signals")
    proc = _start("--config", tuner, "--gpu", -1, cwd=work)
    log = _wait_for_epoch(work, proc)
    out = _stop_and_check(proc, work, tuner, log, str(tuner.with_suffix("")))
    assert "ending trial DIN_sample_001" in out


def test_sigterm_to_the_ray_driver_cancels_its_trial(ray_cluster, tiny_sample, repo_config,
                                                     tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    tuner = _long_sweep(repo_config, tiny_sample, "ray_signals")
    proc = _start("--config", tuner, "--ray", ray_cluster, "--gpu", -1, cwd=work)
    log = _wait_for_epoch(work, proc)
    out = _stop_and_check(proc, work, tuner, log, "trial DIN_sample_001")
    assert "cancelling trial DIN_sample_001" in out


def test_a_silent_ray_address_is_refused_within_its_deadline(tiny_sample, repo_config,
                                                             tmp_path):
    """Something listens but never answers as a Ray cluster: ray.init retried for ever."""
    pytest.importorskip("ray", reason="pip install 'fuxictr_mmctr[ray]'")
    tuner = _long_sweep(repo_config, tiny_sample, "silent")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        start = time.monotonic()
        proc = _start("--config", tuner, "--ray", f"127.0.0.1:{port}", "--ray-timeout", 3,
                      cwd=tmp_path)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out[-3000:]
    assert f"127.0.0.1:{port}: no answer from a Ray cluster within 3 s" in out
    assert "Traceback" not in out and time.monotonic() - start < 60


@pytest.mark.parametrize("address, message", [
    ("no such host:xx", "'no such host:xx': expected HOST:PORT"),   # was ValueError
    ("127.0.0.1:1", "127.0.0.1:1: no Ray cluster reachable there"),  # was retried for ever
])
def test_an_unreachable_ray_address_is_one_line(tiny_sample, repo_config, tmp_path,
                                                monkeypatch, capfd, address, message):
    pytest.importorskip("ray", reason="pip install 'fuxictr_mmctr[ray]'")
    from fuxictr_mmctr import cli

    monkeypatch.chdir(tmp_path)
    tuner = _long_sweep(repo_config, tiny_sample, "unreachable")
    start = time.monotonic()
    assert cli.main(["tune", "--config", str(tuner), "--ray", address]) == 2
    out, err = capfd.readouterr()
    assert message in err and "Traceback" not in out + err
    assert time.monotonic() - start < 30
