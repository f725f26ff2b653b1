"""Run folders are complete or clearly incomplete (no record), and an interrupted run leaves no debris behind a
rerun."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cryoseg.errors import OverwriteInputError
from cryoseg.io import Volume, write_volume
from cryoseg.io.atomic import staged_folder


def _debris(folder):
    return [p.name for p in folder.parent.iterdir() if ".partial-" in p.name] + \
        [p.name for p in folder.glob(".*.tmp")] if folder.exists() else []


def test_a_new_folder_appears_whole(tmp_path):
    out = tmp_path / "run"
    with staged_folder(out, "report.json") as stage:
        (stage / "a.txt").write_text("a")
        assert not out.exists()  # nothing visible while the run works
        (stage / "report.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "report.json"]
    assert not _debris(out)


def test_an_error_changes_nothing(tmp_path, snapshot):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "report.json").write_text("old")
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with staged_folder(out, "report.json") as stage:
            (stage / "a.txt").write_text("new")
            raise RuntimeError("boom")
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_files_keeps_others_and_moves_the_record_last(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    for name, text in (("a.txt", "old"), ("mine.txt", "user's"), ("report.json", "old")):
        (out / name).write_text(text)
    (out / "store.zarr").mkdir()
    (out / "store.zarr" / "old-chunk").write_text("x")
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append(os.path.basename(b)), real_replace(a, b)))
    with staged_folder(out, "report.json") as stage:
        (stage / "report.json").write_text("new")
        (stage / "a.txt").write_text("new")
        (stage / "store.zarr").mkdir()
        (stage / "store.zarr" / "chunk").write_text("y")
    assert moved[-1] == "report.json" and set(moved) == {"a.txt", "store.zarr", "report.json"}
    assert (out / "a.txt").read_text() == "new" and (out / "report.json").read_text() == "new"
    assert (out / "mine.txt").read_text() == "user's"  # not ours: left alone
    assert [p.name for p in (out / "store.zarr").iterdir()] == ["chunk"]  # a folder store is replaced whole
    assert not _debris(out)


def test_a_failure_while_moving_leaves_the_folder_without_its_record(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "report.json").write_text("old")
    real_replace = os.replace

    def fail_on_b(src, dst):
        if os.path.basename(dst) == "b.txt":
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_b)
    with pytest.raises(OSError, match="disk full"):
        with staged_folder(out, "report.json") as stage:
            for name in ("a.txt", "b.txt", "report.json"):
                (stage / name).write_text("new")
    assert not (out / "report.json").exists()  # incomplete, and it says so
    assert not _debris(out)


def test_an_output_that_would_replace_an_input_is_refused_before_any_move(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "tomogram.mrc").write_text("input")
    with pytest.raises(OverwriteInputError):
        with staged_folder(out, "report.json", inputs=[out / "tomogram.mrc"]) as stage:
            (stage / "a.txt").write_text("new")
            (stage / "tomogram.mrc").write_text("output")
            (stage / "report.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["tomogram.mrc"]
    assert (out / "tomogram.mrc").read_text() == "input"


def test_sigkill_during_the_writes_then_an_overwrite_rerun_leaves_no_debris(tmp_path):
    """A real SIGKILL in the middle of a pick's writes; then `pick --overwrite` into the same folder."""
    from cryoseg.cli.main import main

    rng = np.random.default_rng(1)
    data = rng.normal(size=(20, 24, 28)).astype(np.float32)
    data[8:13, 10:15, 12:17] += 4.0
    tomo = write_volume(Volume(data, voxel_size=10.0), tmp_path / "tomo.mrc")
    out = tmp_path / "picks"
    assert main(["-q", "pick", str(tomo), "--prompt", "10,12,14", "-o", str(out)]) == 0
    complete = sorted(p.name for p in out.iterdir())
    # the run is killed after writing its first particle file (atomic_path leaves its temporary folder too)
    script = textwrap.dedent(f"""
        import os, signal
        import cryoseg.io.coords as coords
        real = coords.write_particles
        def write_then_die(*args, **kwargs):
            path = real(*args, **kwargs)
            os.makedirs(os.path.join(os.path.dirname(path), ".particles.csv.x1y2.tmp"))
            os.kill(os.getpid(), signal.SIGKILL)
        coords.write_particles = write_then_die
        from cryoseg.cli.main import main
        main(["-q", "pick", {str(tomo)!r}, "--prompt", "10,12,14", "-o", {str(out)!r}, "--overwrite"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == complete  # the earlier, complete result is untouched
    assert _debris(out)  # the killed run's staging folder is still there...
    assert main(["-q", "pick", str(tomo), "--prompt", "10,12,14", "-o", str(out), "--overwrite"]) == 0
    assert not _debris(out)  # ...and the rerun removed it
    assert sorted(p.name for p in out.iterdir()) == complete
