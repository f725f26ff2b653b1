"""`cryoseg.pick` on a small simulated tomogram: one prompt finds the planted copies."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cryoseg
from cryoseg.errors import InputError
from cryoseg.io import Particles, Volume
from cryoseg.pipelines import PickConfig


@pytest.fixture(scope="module")
def sim():
    from cryoseg.synth import SimulationConfig, simulate

    return simulate(SimulationConfig(shape=(56, 72, 72), seed=1, templates=("ribosome",), particles=4, vesicles=0,
                                     filaments=0, threads=1))


@pytest.fixture(scope="module")
def picked(sim):
    return cryoseg.pick(sim.tomogram, sim.particles.coords[:1])


def _scores(pred: Particles, truth: Particles):
    from cryoseg.eval import match_picks

    # compare positions only: our class id (1, "particle") is not the simulator's label id
    return match_picks(Particles(pred.coords), Particles(truth.coords), tolerance=4.0)


def test_one_prompt_finds_the_planted_copies(sim, picked):
    scores = _scores(picked.particles, sim.particles)
    assert scores.recall >= 0.75 and scores.precision >= 0.75, scores
    # the instance masks sit on the particles: most of each true particle is covered
    truth = sim.instances.data
    covered = [np.mean(picked.instances.data[truth == i] > 0) for i in np.unique(truth)[1:]]
    assert np.median(covered) > 0.7, covered


def test_result_is_consistent(sim, picked):
    labels = picked.instances.data
    n = len(picked.particles)
    assert labels.dtype == np.int32 and set(np.unique(labels)) == set(range(n + 1))
    assert np.array_equal(picked.mask.data, (labels > 0).astype(np.uint8))
    assert picked.instances.voxel_size == sim.tomogram.voxel_size == picked.mask.voxel_size
    assert list(picked.particles.instance_ids) == list(range(1, n + 1))
    assert picked.is_prompt.tolist() == [True] + [False] * (n - 1)
    assert picked.score[0] == 1.0 and np.all(np.diff(picked.score[1:]) <= 0)
    assert np.array_equal(picked.particles.scores, picked.score)
    # the written score passed the data-chosen cut; the verification report says how it was chosen
    assert np.all(picked.score[1:] >= picked.verification.cut.value)
    assert picked.verification.cut.how in ("mixture", "all")  # "all": too few candidates to split (3 here)
    assert np.all((picked.iou_scores > 0) & (picked.iou_scores <= 1))
    # centroids are the instances' centres of mass
    for label, centre in zip(picked.particles.instance_ids, picked.particles.coords):
        assert np.allclose(np.argwhere(labels == label).mean(axis=0), centre)
    c = picked.counts
    assert c["instances"] == n and c["prompts"] == 1 and c["proposals"] == len(picked.matches.points)
    # the prompted particle, proposed again by matching, is not a candidate
    assert np.min(np.linalg.norm(picked.verification.centre - picked.particles.coords[0], axis=1)) > 3
    statuses = [r.status for r in picked.records]
    assert statuses.count("ok") == n and statuses.count("skipped") == c["skipped_inside"]
    assert statuses.count("rejected_size") == c["rejected_size"]
    # every kept instance's volume is within the configured ratio of the prompted one's
    lo, hi = PickConfig().size_ratio
    sizes = np.bincount(labels.ravel())[1:]
    assert np.all((sizes / sizes[0] >= lo) & (sizes / sizes[0] <= hi))
    # proposals are decoded together: fewer calls than decoding each instance on its own
    segmented = [r for r in picked.records if r.status != "skipped"]
    assert c["n_predict"] < sum(r.n_planes + 6 for r in segmented)
    assert set(picked.seconds) >= {"segment_prompts", "features", "matching", "verify", "segment_proposals"}


def test_save_keeps_voxel_size_and_writes_every_format(tmp_path, sim, picked):
    from cryoseg.io.coords import read_particles
    from cryoseg.io.volumes import read_volume

    files = picked.save(tmp_path / "out")
    vs = sim.tomogram.voxel_size
    for name in ("instances", "mask"):
        assert read_volume(files[name]).voxel_size == vs
    assert np.array_equal(read_volume(files["instances"]).data, picked.instances.data)
    for name, fmt in (("particles.star", "star"), ("particles_relion5.star", "star5"), ("particles.csv", "csv"),
                      ("particles_copick.json", "copick")):
        back = read_particles(files[name], fmt=fmt, voxel_size=vs, shape=sim.tomogram.shape)
        assert np.allclose(back.coords, picked.particles.coords, atol=1e-3), name
    report = json.loads(files["report"].read_text())
    assert report["models"] == {"segmenter": "classical", "features": "filterbank"}
    assert report["counts"]["instances"] == len(picked.particles)
    assert report["seconds"]["matching"] > 0 and report["matching"]["n_evaluations"] > 0
    assert report["parameters"]["config"]["matching"]["top_k"] == 512
    table = (tmp_path / "out" / "particles_scores.csv").read_text().splitlines()
    assert table[0] == "z,y,x,label,score,correlation,similarity,iou_score,is_prompt"
    assert len(table) == len(picked.particles) + 1
    assert report["verification"]["cut_chosen_by"] == picked.verification.cut.how and report["leaks"] == []
    zarr = picked.save(tmp_path / "zarr", volume_format="zarr")
    assert read_volume(zarr["instances"]).voxel_size == vs


def test_negative_exemplar_removes_a_pick(sim, picked):
    wrong = picked.particles.coords[-1]  # pretend the last pick is a false positive
    again = cryoseg.pick(sim.tomogram, sim.particles.coords[:1], negative=[wrong])
    assert np.min(np.linalg.norm(again.particles.coords - wrong, axis=1)) > 4
    assert np.allclose(again.particles.coords[0], picked.particles.coords[0], atol=1.0)  # the prompt's instance stays
    assert 1 < len(again.particles) < len(picked.particles)


def test_bad_input(sim):
    with pytest.raises(InputError, match="outside the volume"):
        cryoseg.pick(sim.tomogram, [(10, 10, 200)])
    with pytest.raises(InputError, match="at least one prompt"):
        cryoseg.pick(sim.tomogram, np.zeros((0, 3)))
    with pytest.raises(InputError, match="size_ratio"):
        PickConfig(size_ratio=(2.0, 3.0))


def test_save_never_replaces_a_prompt_file_the_api_read(tmp_path):
    from cryoseg.errors import OverwriteInputError

    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 24, 28)).astype(np.float32)
    data[8:13, 10:15, 12:17] += 4.0
    out = tmp_path / "run"
    out.mkdir()
    prompts = out / "particles.csv"  # where the run would write its picks
    prompts.write_text("z,y,x\n10,12,14\n")
    result = cryoseg.segment(Volume(data, voxel_size=10.0), prompts)
    with pytest.raises(OverwriteInputError, match="particles.csv"):
        result.save(out)
    assert prompts.read_text() == "z,y,x\n10,12,14\n" and sorted(p.name for p in out.iterdir()) == ["particles.csv"]
