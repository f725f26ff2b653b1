"""Default particle, vesicle and filament counts: unchanged at 128³, fitted to smaller volumes, never overriding
what the user set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io.volumes import read_volume
from cryoseg.synth import SimulationConfig
from cryoseg.synth.config import REFERENCE_COUNTS
from cryoseg.synth.membranes import BilayerProfile
from cryoseg.synth.scene import DEFAULT_FILL_FRACTION, _needed_fraction, build_scene, resolve_counts
from cryoseg.synth.templates import load_templates


@pytest.fixture(scope="module")
def builtin():
    return load_templates(SimulationConfig().templates, 10.0, 0.3)


def counts(config: SimulationConfig) -> tuple[int, int, int]:
    return config.particles, config.vesicles, config.filaments


@pytest.mark.parametrize("shape", [(128, 128, 128), (200, 512, 512), (128, 128, 200)])
def test_reference_counts_at_the_default_size_and_above(builtin, shape):
    config = SimulationConfig(shape=shape)
    assert counts(resolve_counts(config, builtin)) == (30, 2, 1)
    assert REFERENCE_COUNTS == {"particles": 30, "vesicles": 2, "filaments": 1}
    assert config.class_counts(3) == [10, 10, 10]  # None means the default here too


@pytest.mark.parametrize(("shape", "expected"), [
    ((64, 96, 96), (8, 0, 0)),  # 28 % of 128³: 8 particles; vesicles and the filament would crowd them
    ((48, 64, 64), (3, 0, 0)),  # 2.8 particles -> 3
    ((32, 64, 64), (3, 0, 0)),  # 1.4 -> 1, raised to one per class because that fits
    ((100, 100, 100), (14, 1, 0)),
])
def test_small_volumes_get_fewer_default_objects_that_fit(builtin, shape, expected):
    resolved = resolve_counts(SimulationConfig(shape=shape), builtin)
    assert counts(resolved) == expected
    profile = BilayerProfile.from_config(resolved)
    per_class = resolved.class_counts(len(builtin))
    assert _needed_fraction(resolved, builtin, per_class, profile, largest=True) <= DEFAULT_FILL_FRACTION


def test_counts_the_user_set_are_kept(builtin):
    config = SimulationConfig(shape=(64, 96, 96), particles=2, vesicles=1, filaments=1)
    assert counts(resolve_counts(config, builtin)) == (2, 1, 1)
    only_particles = resolve_counts(SimulationConfig(shape=(64, 96, 96), particles=8), builtin)
    assert counts(only_particles) == (8, 0, 0)  # the earlier failure: default vesicles now fit the volume


@pytest.mark.parametrize("shape", [(64, 96, 96), (48, 64, 64), (100, 100, 100), (40, 128, 128)])
def test_fitted_defaults_place_without_failing(builtin, shape):
    for seed in range(4):  # placement only (no imaging): the random part that could fail
        config = resolve_counts(SimulationConfig(shape=shape, seed=seed), builtin)
        streams = np.random.SeedSequence(seed).spawn(5)
        rngs = dict(zip(("filaments", "vesicles", "particles", "rotations", "noise"),
                        (np.random.default_rng(s) for s in streams)))
        scene = build_scene(config, builtin, config.class_counts(len(builtin)), rngs)
        assert len(scene.centers) == config.particles and len(scene.vesicles) == config.vesicles


def test_small_default_simulation_through_the_cli(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(out), "--shape", "48,64,64", "--seed", "1"]) == 0
    record = json.loads((out / "report.json").read_text())
    assert (record["config"]["particles"], record["config"]["vesicles"], record["config"]["filaments"]) == (3, 0, 0)
    assert set(np.unique(read_volume(out / "labels.mrc").data)) == {0, 2, 3, 4}  # every class present
    assert main(["-q", "simulate", "-o", str(tmp_path / "b"), "--shape", "64,96,96", "--particles", "8"]) == 0
    assert len((tmp_path / "b" / "particles.csv").read_text().splitlines()) == 9


def test_user_vesicles_that_do_not_fit_are_an_error_naming_the_options(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(out), "--shape", "48,64,64", "--vesicles", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryoseg: error: ") and err.count("\n") == 1
    assert "--vesicles" in err and "larger volume" in err
    assert not out.exists()


def test_a_particle_larger_than_the_volume_says_what_to_change(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(out), "--shape", "24,48,48"]) == 2
    err = capsys.readouterr().err
    assert "'ribosome' (30 voxels across) does not fit" in err and "--shape" in err and "--templates" in err
    assert not out.exists()
