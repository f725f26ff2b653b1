"""`cryoseg evaluate` through the CLI entry point: picks, label volumes, instances, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Particles, Volume
from cryoseg.io.coords import write_particles
from cryoseg.io.volumes import write_volume

SHAPE = (12, 20, 24)


@pytest.fixture
def picks(tmp_path):
    coords = np.array([[3.0, 5.0, 5.0], [8.0, 15.0, 6.0], [6.0, 10.0, 20.0]])
    truth = write_particles(Particles(coords, classes=np.array([1, 2, 2])), tmp_path / "truth.csv")
    shifted = write_particles(Particles(coords + [0, 0, 4], classes=np.array([1, 2, 2]),
                                        scores=np.array([0.9, 0.8, 0.7])), tmp_path / "shifted.csv")
    return truth, shifted


@pytest.fixture
def label_volumes(tmp_path):
    labels = np.zeros(SHAPE, np.int16)
    labels[2:6, 3:9, 3:9] = 1
    labels[7:10, 10:16, 12:20] = 2
    pred = labels.copy()
    pred[2:6, 3:9, 3:6] = 0  # half of class 1 missed: IoU 1/2
    truth = write_volume(Volume(labels, voxel_size=10.0), tmp_path / "labels.mrc")
    predicted = write_volume(Volume(pred, voxel_size=10.0), tmp_path / "pred.mrc")
    return truth, predicted


def test_picks_against_themselves(tmp_path, picks, capsys):
    truth, _ = picks
    report = tmp_path / "report.json"
    assert main(["evaluate", str(truth), str(truth), "-o", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["kind"] == "picking" and data["command"] == "evaluate"
    assert data["scores"]["f1"] == 1.0 and data["scores"]["tp"] == 3
    assert data["scores"]["per_class"]["2"]["tp"] == 2
    assert data["parameters"]["tolerance"] == 5.0 and data["parameters"]["tolerance_unit"] == "voxel"
    assert "versions" in data
    out = capsys.readouterr().out
    assert "picking" in out and "1.000" in out


def test_picks_tolerance_in_voxels_and_angstrom(tmp_path, picks):
    truth, shifted = picks
    r1, r2, r3 = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert main(["evaluate", str(shifted), str(truth), "--tolerance", "3", "-o", str(r1)]) == 0
    assert json.loads(r1.read_text())["scores"]["f1"] == 0.0  # shifted 4 voxels, beyond 3
    assert main(["evaluate", str(shifted), str(truth), "--tolerance", "4.5", "-o", str(r2)]) == 0
    scores = json.loads(r2.read_text())["scores"]
    assert scores["f1"] == 1.0 and scores["average_precision"] == 1.0
    # 4 voxels along x at 5 Å/voxel = 20 Å.
    assert main(["evaluate", str(shifted), str(truth), "--unit", "angstrom", "--tolerance", "25",
                 "--voxel-size", "30,30,5", "-o", str(r3)]) == 0
    scores = json.loads(r3.read_text())["scores"]
    assert scores["tp"] == 3 and scores["mean_distance"] == pytest.approx(20.0)


def test_picks_angstrom_with_tomogram_voxel_size(tmp_path, picks):
    truth, shifted = picks
    tomo = write_volume(Volume(np.zeros(SHAPE, np.float32), voxel_size=10.0), tmp_path / "tomo.mrc")
    report = tmp_path / "r.json"
    assert main(["evaluate", str(shifted), str(truth), "--unit", "angstrom", "--tolerance", "35",
                 "--tomogram", str(tomo), "-o", str(report)]) == 0
    assert json.loads(report.read_text())["scores"]["tp"] == 0  # 40 Å > 35 Å


def test_label_volumes(tmp_path, label_volumes, capsys):
    truth, pred = label_volumes
    report = tmp_path / "seg.json"
    assert main(["evaluate", str(truth), str(truth), "-o", str(report)]) == 0
    assert json.loads(report.read_text())["scores"]["mean_iou"] == 1.0
    assert main(["evaluate", str(pred), str(truth), "-o", str(report), "--overwrite"]) == 0
    data = json.loads(report.read_text())
    assert data["kind"] == "segmentation"
    assert data["scores"]["per_class"]["1"]["iou"] == pytest.approx(0.5)
    assert data["scores"]["per_class"]["2"]["iou"] == 1.0
    assert data["scores"]["mean_iou"] == pytest.approx(0.75)
    assert "segmentation" in capsys.readouterr().out


def test_instance_volumes(tmp_path, label_volumes):
    truth, pred = label_volumes
    report = tmp_path / "inst.json"
    assert main(["evaluate", str(pred), str(truth), "--instances", "-o", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["kind"] == "instances"
    assert data["scores"]["tp"] == 2 and data["scores"]["f1"] == 1.0  # IoU 0.5 and 1.0, threshold inclusive
    assert main(["evaluate", str(pred), str(truth), "--instances", "--iou-threshold", "0.6", "-o", str(report),
                 "--overwrite"]) == 0
    assert json.loads(report.read_text())["scores"]["tp"] == 1


def test_without_output_only_prints(tmp_path, label_volumes, capsys):
    truth, pred = label_volumes
    before = sorted(tmp_path.iterdir())
    assert main(["evaluate", str(pred), str(truth)]) == 0
    assert "0.750" in capsys.readouterr().out
    assert sorted(tmp_path.iterdir()) == before


def test_bad_inputs_write_nothing(tmp_path, picks, label_volumes, cli_refuses):
    truth_csv, _ = picks
    truth_mrc, pred_mrc = label_volumes
    other = write_volume(Volume(np.zeros((12, 20, 25), np.int16)), tmp_path / "other.mrc")
    report = str(tmp_path / "r.json")
    cli_refuses(["evaluate", str(other), str(truth_mrc), "-o", report], "has shape (12, 20, 25) but", tmp_path)
    cli_refuses(["evaluate", str(truth_csv), str(truth_mrc), "-o", report],
                "one is a coordinate file, the other a volume", tmp_path)
    cli_refuses(["evaluate", str(truth_csv), str(tmp_path / "x.png"), "-o", report],
                "neither a coordinate file", tmp_path)
    cli_refuses(["evaluate", str(truth_csv), str(truth_csv), "--unit", "angstrom", "-o", report],
                "needs the voxel size", tmp_path)
    cli_refuses(["evaluate", str(truth_csv), str(truth_csv), "--unit", "parsec", "-o", report],
                "tolerance unit must be", tmp_path)
    cli_refuses(["evaluate", str(pred_mrc), str(truth_mrc), "--tolerance", "3", "-o", report],
                "apply to coordinate files, not to volumes", tmp_path)
    cli_refuses(["evaluate", str(truth_csv), str(truth_csv), "--instances", "-o", report],
                "apply to label volumes", tmp_path)
    cli_refuses(["evaluate", str(tmp_path / "missing.csv"), str(truth_csv), "-o", report],
                "missing.csv", tmp_path)
    cli_refuses(["evaluate", str(pred_mrc), str(truth_mrc), "--instances", "--iou-threshold", "0", "-o", report],
                "IoU threshold must be in (0, 1]", tmp_path)


def test_refuses_to_overwrite_an_input(tmp_path, picks, capsys):
    truth, shifted = picks
    original = truth.read_bytes()
    assert main(["evaluate", str(shifted), str(truth), "-o", str(truth)]) == 2
    assert "refusing to overwrite input" in capsys.readouterr().err
    assert truth.read_bytes() == original


def test_real_deepfinder_files_against_themselves(tmp_path, shared_data):
    toy = shared_data / "deepfinder_toy"
    picks, labels = toy / "tomo1_particles.csv", toy / "tomo1_labels.mrc"
    report = tmp_path / "picks.json"
    assert main(["evaluate", str(picks), str(picks), "-o", str(report)]) == 0
    scores = json.loads(report.read_text())["scores"]
    assert scores["f1"] == 1.0 and scores["tp"] == 27 and len(scores["per_class"]) == 9
    assert main(["evaluate", str(labels), str(labels), "-o", str(report), "--overwrite"]) == 0
    scores = json.loads(report.read_text())["scores"]
    assert scores["mean_iou"] == 1.0 and sorted(scores["per_class"], key=int) == [str(c) for c in range(1, 10)]
    # Another tomogram's picks are mostly elsewhere: F1 well below 1.
    assert main(["evaluate", str(toy / "tomo2_particles.csv"), str(picks), "-o", str(report), "--overwrite"]) == 0
    assert json.loads(report.read_text())["scores"]["f1"] < 0.5


def test_simulation_scores_perfectly_against_its_own_ground_truth(tmp_path, capsys):
    """The issue's done-when: `cryoseg simulate` output evaluated against itself gives F1 = 1 and mIoU = 1."""
    sim = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(sim), "--shape", "48,96,96", "--particles", "4", "--vesicles", "1",
                 "--filaments", "1", "--seed", "0"]) == 0
    reports = {name: tmp_path / f"{name}.json" for name in ("csv", "star", "labels", "instances")}
    assert main(["evaluate", str(sim / "particles.csv"), str(sim / "particles.csv"), "-o", str(reports["csv"])]) == 0
    # the STAR table against the CSV one: both formats carry the same picks and classes
    assert main(["evaluate", str(sim / "particles.star"), str(sim / "particles.csv"), "-o",
                 str(reports["star"])]) == 0
    for name in ("csv", "star"):
        scores = json.loads(reports[name].read_text())["scores"]
        assert (scores["f1"], scores["tp"], scores["fp"], scores["fn"]) == (1.0, 4, 0, 0)
        assert sorted(scores["per_class"]) == ["2", "3", "4"]
        assert all(c["f1"] == 1.0 for c in scores["per_class"].values())
    assert main(["evaluate", str(sim / "labels.mrc"), str(sim / "labels.mrc"), "-o", str(reports["labels"])]) == 0
    scores = json.loads(reports["labels"].read_text())["scores"]
    assert scores["mean_iou"] == 1.0 and sorted(scores["per_class"], key=int) == ["1", "2", "3", "4", "5"]
    assert main(["evaluate", str(sim / "instances.mrc"), str(sim / "instances.mrc"), "--instances", "-o",
                 str(reports["instances"])]) == 0
    scores = json.loads(reports["instances"].read_text())["scores"]
    assert scores["f1"] == 1.0 and scores["tp"] == 6  # 4 particles, 1 vesicle, 1 filament


def test_voxel_size_override_replaces_the_tomogram_header(tmp_path, picks):
    truth, shifted = picks
    tomo = write_volume(Volume(np.zeros(SHAPE, np.float32), voxel_size=10.0), tmp_path / "tomo.mrc")
    report = tmp_path / "r.json"
    # 4 voxels at 5 Å (not the header's 10 Å) = 20 Å, within 35 Å
    assert main(["evaluate", str(shifted), str(truth), "--unit", "angstrom", "--tolerance", "35", "--tomogram",
                 str(tomo), "--voxel-size", "5", "-o", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["scores"]["tp"] == 3 and data["parameters"]["voxel_size"] == [5.0, 5.0, 5.0]


def test_class_option_scores_a_single_kind_pick_against_that_class(tmp_path, capsys):
    import json

    import numpy as np

    from cryoseg.cli.main import main
    from cryoseg.io import Particles
    from cryoseg.io.coords import write_particles

    truth = Particles(np.array([[5, 5, 5], [20, 20, 20], [40, 40, 40.0]]), classes=[2, 2, 3],
                      class_names={2: "ribosome", 3: "shell"})
    truth_path = write_particles(truth, tmp_path / "truth.csv")
    pred_path = write_particles(Particles(np.array([[5, 5, 6], [20, 21, 20.0]]), classes=[1, 1]),
                                tmp_path / "pred.csv")
    report = tmp_path / "r.json"
    assert main(["evaluate", str(pred_path), str(truth_path), "--class", "ribosome", "-o", str(report)]) == 0
    scores = json.loads(report.read_text())["scores"]
    assert scores["tp"] == 2 and scores["fp"] == 0 and scores["fn"] == 0
    assert main(["evaluate", str(pred_path), str(truth_path), "--class", "3", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["scores"]["tp"] == 0
    capsys.readouterr()
    assert main(["evaluate", str(pred_path), str(truth_path), "--class", "ferritin", "-o", str(tmp_path / "x.json")]) == 2
    assert "classes present: 2 (ribosome), 3 (shell)" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_class_option_needs_classes_in_the_truth_and_names_the_file(tmp_path, capsys):
    plain = write_particles(Particles(np.array([[5, 5, 5.0]])), tmp_path / "truth.csv")
    pred = write_particles(Particles(np.array([[5, 5, 6.0]])), tmp_path / "pred.csv")
    assert main(["evaluate", str(pred), str(plain), "--class", "2", "-o", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "truth.csv: the particles have no classes, so class 2 cannot be selected" in err
    assert not (tmp_path / "r.json").exists()


def test_tomogram_without_voxel_size_warns_and_voxel_tolerance_still_works(tmp_path, capsys, caplog):
    import logging

    tomo = write_volume(Volume(np.zeros((20, 20, 20), np.float32), voxel_size=0.0), tmp_path / "novs.mrc")
    picks = write_particles(Particles(np.array([[5, 5, 5.0], [10, 10, 10]])), tmp_path / "p.csv")
    report = tmp_path / "r.json"
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        assert main(["evaluate", str(picks), str(picks), "--tomogram", str(tomo), "-o", str(report)]) == 0
    assert "novs.mrc: the header gives no voxel size" in caplog.text
    data = json.loads(report.read_text())
    assert data["scores"]["tp"] == 2 and data["parameters"]["voxel_size"] is None
