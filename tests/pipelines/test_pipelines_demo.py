"""The built-in main job end to end on a small simulated tomogram."""

from __future__ import annotations

import json

import numpy as np

from cryoseg.cli.main import main
from cryoseg.eval import match_picks
from cryoseg.io import read_particles
from cryoseg.pipelines.demo import choose_prompt, run_demo
from cryoseg.synth import SimulationConfig, simulate


def test_choose_prompt_takes_the_largest_class_near_the_centre():
    sim = simulate(SimulationConfig(shape=(64, 96, 96), particles=6, vesicles=0, filaments=0, seed=3))
    cls, point = choose_prompt(sim)
    sizes = {c: np.count_nonzero(sim.labels.data == c) / np.count_nonzero(sim.particles.classes == c)
             for c in np.unique(sim.particles.classes)}
    assert cls == max(sizes, key=sizes.get)
    assert sim.labels.data[tuple(np.round(point).astype(int))] == cls


def test_demo_scores_the_pick_against_truth_and_writes_its_files(tmp_path):
    config = SimulationConfig(shape=(64, 96, 96), particles=9, vesicles=0, filaments=0, seed=1)
    result = run_demo(tmp_path / "demo", seed=1, config=config)
    # this tomogram has 3 ribosomes, well apart: one prompt finds each of them and nothing else
    assert result.class_name == "ribosome"
    assert (result.picking.n_truth, result.picking.tp, result.picking.fp, result.picking.fn) == (3, 3, 0, 0)
    assert result.picking.mean_distance < 1.0  # voxels, centroid to true centre
    assert result.segmentation.mean_iou > 0.7
    # the scores are those of the files written: re-scored from disk, they agree
    picks = read_particles(tmp_path / "demo" / "pick" / "particles.csv")
    truth = read_particles(tmp_path / "demo" / "simulation" / "particles.csv")
    ribosome = next(c for c, name in truth.class_names.items() if name == "ribosome")
    rescored = match_picks(picks, truth.subset(truth.classes == ribosome), tolerance=result.picking.tolerance)
    assert (rescored.tp, rescored.fp, rescored.fn) == (3, 0, 0)
    record = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert record["picking"]["tp"] == result.picking.tp
    for name in ("simulation/tomogram", "pick/preview", "truth_preview"):
        assert result.files[name].is_file(), name


def test_demo_refuses_a_non_empty_output_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "-o", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
