"""`cryoseg unsup ...` end to end on the toy tomogram, and its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io.coords import read_particles
from cryoseg.io.volume import Volume
from cryoseg.io.volumes import read_volume, write_volume

FAST = ["--canvas", "256", "--tile", "128"]
TRAIN = ["--epochs", "3", "--crops-per-epoch", "16", "--patch", "32"]


@pytest.fixture
def tomo(tmp_path, toy):
    return write_volume(toy(), tmp_path / "toy.mrc")


def test_run_does_pseudo_labels_training_and_segmentation(tmp_path, tomo, true_centres):
    out = tmp_path / "run"
    assert main(["unsup", "run", str(tomo), "-o", str(out), "--slab", "toy.mrc:2:6", *FAST, *TRAIN]) == 0
    assert (out / "pseudo-labels" / "report.json").is_file()
    model_files = {p.name for p in (out / "model").iterdir()}
    assert {"model.safetensors", "config.json", "report.json", "curves.png"} <= model_files
    seg = out / "segment" / "toy"
    labels = read_volume(seg / "labels.mrc")
    assert labels.voxel_size == (10.0, 10.0, 10.0) and labels.shape == (8, 96, 96)
    assert set(np.unique(labels.data)) <= {0, 1, 2}
    assert (seg / "preview.png").stat().st_size > 0 and (seg / "particles.star").is_file()
    report = json.loads((seg / "report.json").read_text())
    assert report["kind"] == "unsup-segmentation" and report["class_names"] == ["membrane", "particle"]
    assert report["labels"]["particle_diameter_nm"] == [8.0, 40.0] and report["model"].endswith("model")
    picks = read_particles(seg / "particles.csv")
    assert len(picks) == report["particles"]


def test_the_three_steps_chain_through_their_folders(tmp_path, tomo):
    pl, model, seg = tmp_path / "pl", tmp_path / "model", tmp_path / "seg"
    assert main(["unsup", "pseudo-labels", str(tomo), "-o", str(pl), "--slab", "toy:2:6", *FAST]) == 0
    pseudo = json.loads((pl / "report.json").read_text())
    assert pseudo["slabs"][0]["particles"] == 3 and pseudo["features"]["name"] == "filterbank"
    assert main(["unsup", "train", str(pl), "-o", str(model), *TRAIN]) == 0
    assert main(["unsup", "segment", str(model), str(tomo), "-o", str(seg), "--probabilities"]) == 0
    assert read_volume(seg / "probability_membrane.mrc").shape == (8, 96, 96)
    # the run is repeatable: a second training with the same settings gives the same weights
    again = tmp_path / "model2"
    assert main(["unsup", "train", str(pl), "-o", str(again), *TRAIN]) == 0
    assert (again / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()


def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, tomo, cli_refuses, isolated_home):
    out = tmp_path / "out"
    run = ["unsup", "pseudo-labels", tomo, "-o", out, *FAST]
    cli_refuses([*run, "--slab", "toy:4:9"], "outside the volume, which has z slices 0..7", tmp_path)
    cli_refuses([*run, "--slab", "toy:4:5"], "1 slice(s) thick", tmp_path)
    cli_refuses([*run, "--slab", "other.mrc:0:4"], "names no given tomogram", tmp_path)
    cli_refuses([*run, "--slab", "toy:4"], "TOMOGRAM:START:STOP", tmp_path)
    cli_refuses([*run, "--features", "stable-diffusion-v1-4"], "looked in hub cache", tmp_path)
    cli_refuses([*run, "--features", "stable-difusion"], "unknown model", tmp_path)
    cli_refuses([*run, "--particle-diameter", "30,10"], "particle_diameter_nm", tmp_path)
    cli_refuses([*run, "--canvas", "300"], "multiple of the tile", tmp_path)
    flat = write_volume(Volume(np.ones((6, 64, 64), np.float32), voxel_size=10.0), tmp_path / "flat.mrc")
    cli_refuses(["unsup", "pseudo-labels", flat, "-o", out, *FAST], "no membrane or particle found", tmp_path)
    novs = write_volume(Volume(np.ones((6, 64, 64), np.float32), voxel_size=0.0), tmp_path / "novs.mrc")
    cli_refuses(["unsup", "run", novs, "-o", out], "voxel size", tmp_path)
    cli_refuses(["unsup", "train", tmp_path, "-o", out], "not a pseudo-label folder", tmp_path)
    cli_refuses(["unsup", "segment", tmp_path, tomo, "-o", out], "is incomplete: missing model.safetensors", tmp_path)


def test_without_monai_the_student_commands_refuse_before_any_work(tmp_path, tomo, cli_refuses, monkeypatch):
    import cryoseg.models.registry as registry

    real = registry.is_installed
    monkeypatch.setattr(registry, "is_installed", lambda name: name != "monai" and real(name))
    out = tmp_path / "out"
    cli_refuses(["unsup", "run", tomo, "-o", out, *FAST], "the student network needs monai", tmp_path)
    cli_refuses(["unsup", "train", tmp_path, "-o", out], "pip install 'cryoseg[models]'", tmp_path)
    cli_refuses(["unsup", "segment", tmp_path, tomo, "-o", out], "needs monai", tmp_path)
    # the pseudo-labels need neither torch nor MONAI
    assert main(["unsup", "pseudo-labels", str(tomo), "-o", str(out), "--slab", "toy:2:6", *FAST]) == 0
