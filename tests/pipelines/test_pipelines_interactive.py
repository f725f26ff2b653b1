"""`InteractiveSession`: clicks on one tomogram reuse models and embeddings, and give what one-off runs give; a
progress listener hears the work's steps and can cancel it."""

from __future__ import annotations

import numpy as np
import pytest

import cryoseg
from cryoseg.errors import InputError
from cryoseg.pipelines.interactive import InteractiveSession
from cryoseg.progress import Cancelled, listen, step, track
from cryoseg.segment3d import SelfPromptConfig
from cryoseg.synth import SimulationConfig, simulate


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationConfig(shape=(56, 72, 72), seed=1, templates=("ribosome",), particles=4, vesicles=0,
                                     filaments=0, threads=1))


def test_clicks_reuse_models_and_embeddings_and_match_one_off_runs(sim, tmp_path):
    session = InteractiveSession(sim.tomogram, cache_dir=tmp_path / "cache")
    prompt = sim.particles.coords[:1]
    first = session.segment(prompt)
    again = session.segment(prompt)
    assert first.counts["n_embed"] > 0 and again.counts["n_embed"] == 0
    assert session.segmenter() is session.segmenter()  # loaded once
    alone = cryoseg.segment(sim.tomogram, prompt)
    assert np.array_equal(again.instances.data, alone.instances.data)

    # a second click grows only its own instance; the first stays as it was
    two = session.segment(sim.particles.coords[:2])
    assert two.counts["prompts"] == 2 and two.counts["instances"] == 2
    assert np.array_equal(two.instances.data == 1, again.instances.data == 1)
    assert two.counts["n_predict"] < cryoseg.segment(sim.tomogram, sim.particles.coords[:2]).counts["n_predict"]
    assert again.instances.data.max() == 1  # an earlier result is a copy: later clicks do not change it
    # a new negative point starts over
    redone = session.segment(sim.particles.coords[:2], negatives=[[2, 2, 2]])
    assert redone.counts["n_predict"] > two.counts["n_predict"]

    picked = session.pick(prompt)
    assert np.array_equal(picked.particles.coords, cryoseg.pick(sim.tomogram, prompt).particles.coords)
    # a false pick deleted in the viewer comes back as a negative point: the pick runs with it
    negative = picked.particles.coords[-1:]
    rerun = session.pick(prompt, negatives=negative)
    assert rerun.counts["negatives"] == 1 and rerun.counts["n_embed"] < picked.counts["n_embed"]
    assert not any(np.allclose(c, negative[0], atol=1.5) for c in rerun.particles.coords)


def test_a_negated_view_of_the_slices_is_embedded_apart(sim):
    # compact-sam takes dark density; told the density is bright, it is shown negated slices. Those embeddings
    # must not serve a later click that shows it the slices as they are.
    centre = np.round(sim.particles.coords[0]).astype(int)
    corner = np.clip(centre - 12, 0, np.array(sim.tomogram.shape) - 24)
    crop = cryoseg.io.Volume(sim.tomogram.data[tuple(slice(c, c + 24) for c in corner)], sim.tomogram.voxel_size)
    prompt = (centre - corner)[None]
    session = InteractiveSession(crop)
    session.segment(prompt, segmenter="compact-sam", config=SelfPromptConfig(polarity="bright"))
    plain = session.segment(prompt, segmenter="compact-sam", config=SelfPromptConfig(polarity="dark"))
    assert plain.counts["n_embed"] > 0
    alone = cryoseg.segment(crop, prompt, segmenter="compact-sam", config=SelfPromptConfig(polarity="dark"))
    assert np.array_equal(plain.instances.data, alone.instances.data)


def test_a_session_estimates_the_density_polarity_once(sim, monkeypatch):
    import cryoseg.segment3d.wrappers as wrappers

    calls = []
    estimate = wrappers.estimate_polarity
    monkeypatch.setattr(wrappers, "estimate_polarity", lambda *a: calls.append(1) or estimate(*a))
    session = InteractiveSession(sim.tomogram)
    prompt = sim.particles.coords[:1]
    session.segment(prompt)
    assert not calls  # the classical segmenter takes either polarity: nothing to estimate
    first = session.segment(prompt, segmenter="compact-sam")
    session.segment(prompt, negatives=[[2, 2, 2]], segmenter="compact-sam")  # starts over
    session.pick(prompt, segmenter="compact-sam")
    assert len(calls) == 1
    alone = cryoseg.segment(sim.tomogram, prompt, segmenter="compact-sam")  # estimates it itself
    assert len(calls) == 2 and np.array_equal(first.instances.data, alone.instances.data)


def test_a_session_refuses_bad_prompts_and_voxel_sizes(sim):
    with pytest.raises(InputError):
        InteractiveSession(cryoseg.io.Volume(sim.tomogram.data, 0.0))
    session = InteractiveSession(sim.tomogram)
    with pytest.raises(InputError, match="outside"):
        session.segment([[0, 0, 500]])


def test_a_listener_hears_each_step_and_cancels_the_work(sim):
    heard = []
    with listen(lambda description, done, total: heard.append((description, done, total))):
        assert list(track([10, 20, 30], "counting")) == [10, 20, 30]
        step("a stage")
    assert heard == [("counting", 0, 3), ("counting", 1, 3), ("counting", 2, 3), ("counting", 3, 3),
                     ("a stage", 0, None)]
    step("nobody listens")  # outside the block: nothing is called

    stages = []

    def cancel_at_features(description: str, done: int, total: int | None) -> None:
        stages.append(description)
        if "features" in description:
            raise Cancelled

    with listen(cancel_at_features), pytest.raises(Cancelled):
        cryoseg.pick(sim.tomogram, sim.particles.coords[:1])
    assert stages[0].startswith("stage 1/5") and "stage 2/5" in stages[-1]
