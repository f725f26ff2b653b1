"""The CLI shell: exit codes and one-line errors."""

from __future__ import annotations

from cryoseg.cli.main import main


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "cryoseg" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err
