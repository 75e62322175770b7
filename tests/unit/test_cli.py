"""The ``mmctr`` command line: every command listed, reachable, with its shared options."""
from __future__ import annotations

import pytest

from fuxictr_mmctr import cli


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for name in cli.COMMANDS:
        assert f"    {name} " in out or f"    {name}\n" in out, name
    # the jobs of the three root scripts are commands too
    assert {"train", "predict", "tune", "blend", "demo"} <= set(cli.COMMANDS)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_its_own_help(name, capsys):
    command = cli.load_command(name)
    assert callable(command.add_arguments) and callable(command.run)
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mmctr {name}")


@pytest.mark.parametrize("name", ["train", "predict", "demo", "blend"])
def test_shared_options_are_defined_once(name, capsys):
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    out = capsys.readouterr().out
    assert "--gpu GPU" in out and "the GPU index, -1 for CPU (default: -1)" in out


def test_train_and_predict_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "nowhere"), "--expid", "X"]) == 2
    assert cli.main(["predict", "--config", str(tmp_path), "--expid", "X"]) == 2
    err = capsys.readouterr().err
    assert "nowhere: not a directory" in err and "Traceback" not in err
