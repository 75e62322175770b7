"""One clean line instead of a traceback (issue 19, class 6), and the signal handling of the
sweeps (class 5) that needs no process: tuner configs FuxiCTR's autotuner would assert on,
results CSVs that are not ones, Ray addresses that are not addresses, write errors wrapped by
torch, a file past the size limit."""
from __future__ import annotations

import errno
import os
import signal
import socket

import pytest
import yaml

from fuxictr_mmctr import cli
from fuxictr_mmctr.errors import ConfigError, run_guarded, user_os_error
from fuxictr_mmctr.io import atomic_path
from fuxictr_mmctr.train import sweep
from fuxictr_mmctr.train.ray_sweep import parse_address, probe


def _tuner(tmp_path, config_dir, **spec):
    path = tmp_path / "t_tuner_config.yaml"
    base = {"base_config": str(config_dir), "base_expid": "DIN_sample",
            "dataset_id": "MicroLens_sample", "tuner_space": {"learning_rate": [1.0e-3]}}
    path.write_text(yaml.safe_dump({k: v for k, v in dict(base, **spec).items()
                                    if v is not None}))
    return path


def _tune(path, capfd, *extra):
    capfd.readouterr()
    code = cli.main(["tune", "--config", str(path), *extra])
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return code, err


@pytest.mark.parametrize("spec, message", [
    ({"base_expid": "DIN_sampel"}, "base_expid: expid 'DIN_sampel' not found; did you mean "
                                   "DIN_sample"),
    ({"base_expid": None}, "option base_expid: base_expid must name the expid"),
    ({"tuner_space": None}, "option tuner_space: tuner_space must map config keys"),
    ({"tuner_space": [1, 2]}, "option tuner_space: tuner_space must map config keys"),
    ({"base_config": "/no/such/folder"}, "base_config '/no/such/folder' is not a directory"),
    ({"dataset_id": "NoSuchData"}, "dataset_id=NoSuchData is not found in config"),
    ({"tuner_space": {"learnin_rate": [1]}}, "Invalid params in tuner config"),
])
def test_tuner_configs_the_autotuner_would_assert_on(smoke_config, tmp_path, monkeypatch,
                                                     capfd, spec, message):
    """The example: a base_expid that does not exist ended in FuxiCTR's AssertionError."""
    monkeypatch.chdir(tmp_path)
    code, err = _tune(_tuner(tmp_path, smoke_config, **spec), capfd)
    assert code == 2 and message in err and "t_tuner_config" in err


def test_a_tuner_config_that_is_not_a_mapping(tmp_path, capfd):
    path = tmp_path / "t.yaml"
    path.write_text("- just\n- a list\n")
    code, err = _tune(path, capfd)
    assert code == 2 and "not a tuner config" in err


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, "not a results CSV (not UTF-8 text)"),
    (b"name,score\nalice,3\n", "line 1 is not a FuxiCTR results row"),
])
def test_a_results_csv_that_is_not_one_stops_a_sweep_at_once(smoke_config, tmp_path,
                                                             monkeypatch, capfd, content,
                                                             message):
    monkeypatch.chdir(tmp_path)
    tuner = _tuner(tmp_path, smoke_config)
    (tmp_path / "t_tuner_config.csv").write_bytes(content)
    code, err = _tune(tuner, capfd)
    assert code == 2 and message in err and "t_tuner_config.csv" in err
    assert (tmp_path / "t_tuner_config.csv").read_bytes() == content


@pytest.mark.parametrize("address", ["no such host:xx", "127.0.0.1", "host:0", "host:70000",
                                     ":6379", "ray://"])
def test_malformed_ray_addresses_are_named(address):
    with pytest.raises(ConfigError, match="option --ray: .*expected HOST:PORT"):
        parse_address(address)


def test_ray_addresses_parse():
    assert parse_address("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert parse_address("ray://head:10001") == ("head", 10001)
    assert parse_address("[::1]:6379") == ("::1", 6379)


def test_an_address_where_nothing_listens_is_refused_at_once():
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: no Ray cluster reachable there"):
        probe(f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(ConfigError, match="unknown host 'no-such-host.invalid'"):
        probe("no-such-host.invalid:6379", timeout=5)


def test_a_write_error_wrapped_by_torch_is_one_line(tmp_path, capsys):
    """torch.save reports a full disk or EFBIG as RuntimeError('... unexpected pos ...')."""
    def job():
        try:
            raise OSError(errno.EFBIG, "File too large", str(tmp_path / "x.model"))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos")
    assert run_guarded(job) == 2
    assert "x.model: File too large" in capsys.readouterr().err

    def bug():
        try:
            raise FileNotFoundError(errno.ENOENT, "missing", "a.txt")
        except OSError:
            raise TypeError("a bug while handling it")
    with pytest.raises(TypeError):  # not a wrapper: the bug keeps its traceback
        run_guarded(bug)
    assert user_os_error(ValueError("x")) is None


def test_a_failed_write_names_its_target(tmp_path):
    target = tmp_path / "out.zip"
    with pytest.raises(OSError) as info:
        with atomic_path(target):
            raise OSError(errno.EFBIG, "File too large")  # as file.write raises it: no name
    assert info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_signal_is_recorded_not_fatal_while_a_sweep_ends_its_trials():
    previous = signal.getsignal(signal.SIGTERM)
    with sweep.stop_on_signals() as stop:
        stop.check()
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(sweep.Stopped) as info:
            for _ in range(100):  # the handler runs between bytecodes
                stop.check()
    assert info.value.exit_code == 128 + signal.SIGTERM and "SIGTERM" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_signal_the_process_ignores_stays_ignored():
    """Under `nohup` SIGHUP is ignored on purpose: the sweep must outlive the terminal."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with sweep.stop_on_signals() as stop:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            stop.check()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)

