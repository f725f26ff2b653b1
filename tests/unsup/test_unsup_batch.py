"""`cryoseg batch unsup`'s job: a trained student segments each tomogram, loaded once per worker process."""

from __future__ import annotations

import json

from cryoseg.batch import Tomogram, UnsupJob
from cryoseg.cli.main import main
from cryoseg.io.volumes import write_volume

FAST = ["--canvas", "256", "--tile", "128"]
TRAIN = ["--epochs", "2", "--crops-per-epoch", "8", "--patch", "32"]


def test_the_job_segments_each_tomogram_with_one_model_load(tmp_path, toy):
    a, b = write_volume(toy(seed=0), tmp_path / "a.mrc"), write_volume(toy(seed=1), tmp_path / "b.mrc")
    out = tmp_path / "run"
    assert main(["unsup", "run", str(a), "-o", str(out), "--slab", "a.mrc:2:6", *FAST, *TRAIN]) == 0
    job = UnsupJob(str(out / "model"))
    job.check()
    first = job.run(Tomogram("a", a), tmp_path / "batch" / "a")
    second = job.run(Tomogram("b", b), tmp_path / "batch" / "b")
    assert first["models_loaded"] and not second["models_loaded"] and first["pid"] == second["pid"]
    report = json.loads((tmp_path / "batch" / "b" / "report.json").read_text())
    assert report["kind"] == "unsup-segmentation" and report["particles"] == second["particles"]
    assert (tmp_path / "batch" / "b" / "labels.mrc").is_file()
