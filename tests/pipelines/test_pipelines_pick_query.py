"""A pick's saved query (`query.npz`) applied to other tomograms: it finds their particles, and models, settings or
voxel sizes that do not match it are refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import cryoseg
from cryoseg.errors import CorruptFileError, InputError
from cryoseg.io import Particles, Volume
from cryoseg.pipelines import PickConfig
from cryoseg.pipelines.pick_query import PickQuery, with_settings


def _simulate(seed: int):
    from cryoseg.synth import SimulationConfig, simulate

    return simulate(SimulationConfig(shape=(56, 72, 72), seed=seed, templates=("ribosome",), particles=4, vesicles=0,
                                     filaments=0, threads=1))


@pytest.fixture(scope="module")
def first():
    return _simulate(1)


@pytest.fixture(scope="module")
def second():
    return _simulate(2)


@pytest.fixture(scope="module")
def saved_query(first, tmp_path_factory):
    result = cryoseg.pick(first.tomogram, first.particles.coords[:1])
    files = result.save(tmp_path_factory.mktemp("pick"))
    return result, files["query"]


def _f1(pred: Particles, truth: Particles) -> float:
    from cryoseg.eval import match_picks

    return match_picks(Particles(pred.coords), Particles(truth.coords), tolerance=4.0).f1


def test_the_saved_query_round_trips(saved_query):
    result, path = saved_query
    assert path.name == "query.npz"
    loaded = PickQuery.load(path)
    made = result.query
    assert np.array_equal(loaded.vector, made.vector) and loaded.vector.shape == (made.vector.size,)
    assert np.array_equal(loaded.exemplars.cubes, made.exemplars.cubes)
    assert np.array_equal(loaded.exemplars.centres, made.exemplars.centres)
    assert loaded.config == result.config and loaded.reference_voxels == made.reference_voxels
    assert loaded.voxel_size == result.instances.voxel_size and loaded.polarity == made.polarity
    assert loaded.models["features"]["name"] == "filterbank" and len(loaded.exemplars) == 1
    # the prompted instance's centre sits at the centre of its cube
    assert np.allclose(loaded.exemplars.centres[0], loaded.exemplars.half, atol=1.0)


def test_a_saved_query_finds_the_particles_of_another_tomogram(saved_query, first, second):
    _, path = saved_query
    result = cryoseg.pick(second.tomogram, query=path)
    assert _f1(result.particles, second.particles) >= 0.85
    assert result.counts["prompts"] == 0 and result.counts["query_prompts"] == 1
    assert not result.is_prompt.any() and "segment_prompts" not in result.seconds
    # applied back to its own tomogram, it finds the same particles as the pick that made it
    again = cryoseg.pick(first.tomogram, query=path)
    assert _f1(again.particles, first.particles) >= 0.85


def test_exemplar_cubes_correlate_like_the_tomogram_they_were_cut_from(first):
    from cryoseg.verify import Exemplars, VerifyConfig, lowpass, verify

    smooth = lowpass(first.tomogram.data, 1.0)
    prompts, candidates = first.particles.coords[:2], first.particles.coords[2:]
    config = VerifyConfig(cut=0.0)
    from_points = verify(smooth, candidates, prompts, 6.0, config=config)
    from cryoseg.verify import exemplar_half

    cubes = Exemplars.cut(smooth, prompts, exemplar_half(6.0, config))
    from_cubes = verify(smooth, candidates, cubes, 6.0, config=config)
    assert np.allclose(from_points.score, from_cubes.score, atol=1e-5)
    assert np.array_equal(from_points.centre, from_cubes.centre)


def test_prompts_and_a_query_together_are_refused(saved_query, second):
    _, path = saved_query
    with pytest.raises(InputError, match="not both"):
        cryoseg.pick(second.tomogram, second.particles.coords[:1], query=path)


def test_other_models_settings_or_voxel_size_are_refused(saved_query, second):
    from cryoseg.models.filterbank import FilterBankConfig, FilterBankExtractor

    _, path = saved_query
    other = FilterBankExtractor(FilterBankConfig(sigmas=(1.0, 2.0)))
    with pytest.raises(InputError, match="query was made with features 'filterbank'"):
        cryoseg.pick(second.tomogram, query=path, features=other)
    fixed = with_settings(PickQuery.load(path).config, verify={"lowpass": 2.0})
    with pytest.raises(InputError, match="verify.lowpass"):
        cryoseg.pick(second.tomogram, query=path, config=fixed)
    coarser = Volume(second.tomogram.data, 13.7)
    with pytest.raises(InputError, match="query was made at 10 Å"):
        cryoseg.pick(coarser, query=path)


def test_settings_that_do_not_fix_the_query_may_change(saved_query, second):
    _, path = saved_query
    strict = with_settings(PickQuery.load(path).config, verify={"cut": 0.99})
    result = cryoseg.pick(second.tomogram, query=path, config=strict)
    assert len(result.particles) == 0 and result.verification.cut.how == "given"


def test_a_corrupt_or_missing_query_is_one_clear_error(tmp_path, saved_query):
    _, path = saved_query
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptFileError, match="not a readable cryoseg query"):
        PickQuery.load(truncated)
    with pytest.raises(FileNotFoundError, match="no such query file"):
        PickQuery.load(tmp_path / "absent.npz")


def test_pick_config_survives_json():
    from cryoseg.io.report import as_json, dataclass_from_json

    config = with_settings(PickConfig(), size_ratio=(0.5, 2.0), feature_views=("z", "y"),
                           matching={"levels": (8, 4), "tau_sim": 0.4}, verify={"cut": 0.3})
    back = dataclass_from_json(PickConfig, as_json(config))
    assert back == config and isinstance(back.matching.levels, tuple)
    assert dataclasses.replace(back, slice_step=2) != config


def test_cli_applies_a_query_and_refuses_a_mismatched_one(tmp_path, saved_query, second, capsys, cli_refuses):
    from cryoseg.cli.main import main
    from cryoseg.io.coords import read_particles

    _, path = saved_query
    tomo = second.save(tmp_path / "sim")["tomogram"]
    out = tmp_path / "out"
    code = main(["pick", str(tomo), "--query", str(path), "-o", str(out), "--top-k", "64"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "from the query of 1 prompt(s)" in captured.out and "stage 1/5: no prompts to segment" in captured.err
    picks = read_particles(out / "particles.star", voxel_size=second.tomogram.voxel_size)
    assert _f1(picks, second.particles) >= 0.85
    assert (out / "query.npz").is_file()  # the query travels on with the picks
    cli_refuses(["pick", tomo, "--query", path, "-o", tmp_path / "o2", "--prompt", "10,10,10"], "not both", tmp_path)
    cli_refuses(["pick", tomo, "--query", tmp_path / "nope.npz", "-o", tmp_path / "o3"], "no such query file",
                tmp_path)
