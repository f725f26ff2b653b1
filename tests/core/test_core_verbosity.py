"""--quiet and --verbose, and progress bars only on terminals."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Particles
from cryoseg.io.coords import write_particles
from cryoseg.progress import progress_enabled, set_progress_enabled, track


@pytest.fixture
def picks(tmp_path):
    # x = 30 lies outside a 20-voxel-wide volume: the conversion warns about it
    return write_particles(Particles(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 30.0]])), tmp_path / "in.csv")


def test_default_prints_summary_and_warnings(tmp_path, picks, capsys):
    assert main(["convert", str(picks), str(tmp_path / "o.csv"), "--shape", "4,10,20"]) == 0
    captured = capsys.readouterr()
    assert "converted 2 particles" in captured.out
    assert "WARNING: " in captured.err and "1 of 2 particles lie outside the volume" in captured.err
    assert "DEBUG" not in captured.err


def test_quiet_prints_nothing_but_still_works(tmp_path, picks, capsys):
    out = tmp_path / "o.csv"
    assert main(["--quiet", "convert", str(picks), str(out), "--shape", "4,10,20"]) == 0
    assert capsys.readouterr() == ("", "")
    assert out.is_file()
    assert main(["-q", "simulate", "-o", str(tmp_path / "sim"), "--shape", "32,48,48", "--particles", "1",
                 "--templates", "shell", "--vesicles", "0", "--filaments", "0", "--tilt-step", "10"]) == 0
    assert capsys.readouterr() == ("", "")
    assert not progress_enabled()
    assert main(["-q", "preview", str(tmp_path / "sim" / "tomogram.mrc"), "-o", str(tmp_path / "p.png")]) == 0
    assert capsys.readouterr() == ("", "") and (tmp_path / "p.png").is_file()


def test_quiet_still_reports_errors(tmp_path, capsys):
    assert main(["-q", "convert", str(tmp_path / "missing.csv"), str(tmp_path / "o.csv")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("cryoseg: error: ") and "missing.csv" in captured.err


def test_verbose_adds_debug_lines(tmp_path, picks, capsys):
    assert main(["--verbose", "convert", str(picks), str(tmp_path / "o.star")]) == 0
    err = capsys.readouterr().err
    assert "DEBUG: read 2 particles from" in err and "DEBUG: wrote 2 particles to" in err


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    set_progress_enabled(True)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # as for a pipe or log file, whatever pytest's stderr is
    assert list(track(range(5), "counting things")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich then treats stderr as a terminal
    assert list(track(range(5), "counting things")) == [0, 1, 2, 3, 4]
    assert "counting things" in capsys.readouterr().err
    set_progress_enabled(False)  # what --quiet does
    assert list(track(range(5), "counting things")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""
