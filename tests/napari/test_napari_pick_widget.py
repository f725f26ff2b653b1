"""The "Segment and pick" widget in a real viewer: clicks (points added to the prompts layer) give 3D masks, a pick
gives scored picks, deleting a false pick reruns the search with it as a negative, work can be cancelled, and
errors end in one status line."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.eval import match_picks
from cryoseg.io.particles import Particles
from cryoseg.napari.pick_widget import INSTANCES, NEGATIVE, PICKS, POSITIVE, PROMPTS, PickWidget

from .conftest import wait_until_idle


@pytest.fixture
def widget(viewer_with_tomogram):
    widget = PickWidget(viewer_with_tomogram)
    viewer_with_tomogram.window.add_dock_widget(widget)
    return widget


def _true_instance(sim, k):
    return sim.instances.data == sim.particles.instance_ids[k]


def test_a_click_shows_the_particles_3d_mask_on_the_tomograms_geometry(widget, small_sim, qtbot):
    viewer = widget.viewer
    tomogram = viewer.layers["tomogram"]
    assert widget.tomogram.value is tomogram and PROMPTS in viewer.layers
    np.testing.assert_allclose(tomogram.scale, small_sim.tomogram.voxel_size)  # Å by default
    prompt = small_sim.particles.coords[0]
    widget.add_prompts(prompt, POSITIVE)  # a click in add mode
    wait_until_idle(qtbot, widget)
    assert widget.tasks.last_error is None, widget.tasks.status.value
    labels = viewer.layers[INSTANCES]
    np.testing.assert_allclose(labels.scale, tomogram.scale)
    np.testing.assert_allclose(labels.translate, tomogram.translate)
    mask = np.asarray(labels.data) > 0
    truth = _true_instance(small_sim, 0)
    assert mask[tuple(np.round(prompt).astype(int))]
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.5
    assert "1 instance(s)" in widget.tasks.status.value

    first = widget.last_result
    widget.segment_button.clicked()  # the same prompt again: every slice is already embedded
    wait_until_idle(qtbot, widget)
    assert widget.last_result is not first and widget.last_result.counts["n_embed"] == 0
    assert np.array_equal(np.asarray(labels.data) > 0, mask)

    widget.add_prompts(small_sim.particles.coords[1], POSITIVE)  # a second click: two instances
    wait_until_idle(qtbot, widget)
    assert len(np.unique(np.asarray(viewer.layers[INSTANCES].data))) == 3


def test_pick_all_of_this_kind_then_delete_a_pick_to_search_again(widget, small_sim, qtbot):
    viewer = widget.viewer
    widget.follow_clicks.value = False
    widget.add_prompts(small_sim.particles.coords[0], POSITIVE)
    assert widget.last_result is None  # not following clicks: nothing ran
    widget.pick_button.clicked()
    wait_until_idle(qtbot, widget)
    assert widget.tasks.last_error is None, widget.tasks.status.value
    picks = viewer.layers[PICKS]
    np.testing.assert_allclose(picks.scale, viewer.layers["tomogram"].scale)
    scores = np.asarray(picks.features["score"], float)
    assert len(scores) == len(picks.data) >= 1
    found = match_picks(Particles(np.asarray(picks.data), scores=scores), Particles(small_sim.particles.coords),
                        tolerance=4.0)
    assert found.f1 >= 0.85, found
    if len(np.unique(scores)) > 1:  # rings coloured by score
        assert len(np.unique(np.round(picks.border_color, 6), axis=0)) > 1

    # the score slider hides picks below it
    widget.min_score.value = float(np.median(scores))
    assert np.array_equal(picks.shown, scores >= widget.min_score.value)

    # a deleted pick becomes a negative point, and with clicks followed the search runs again
    widget.follow_clicks.value = True
    before = widget.last_result
    doomed = np.asarray(picks.data)[-1].copy()
    picks.selected_data = {len(picks.data) - 1}
    picks.remove_selected()
    positives, negatives = widget.prompts()
    assert len(positives) == 1 and len(negatives) == 1
    np.testing.assert_allclose(negatives[0], doomed, atol=1e-6)
    assert list(viewer.layers[PROMPTS].features["kind"]) == [POSITIVE, NEGATIVE]
    wait_until_idle(qtbot, widget)
    assert widget.last_result is not before and widget.last_result.counts["negatives"] == 1


def test_cancel_stops_a_pick_and_changes_no_layer(widget, small_sim, qtbot):
    widget.follow_clicks.value = False
    widget.add_prompts(small_sim.particles.coords[0], POSITIVE)
    assert widget.run("pick")
    widget.tasks.cancel()
    wait_until_idle(qtbot, widget)
    assert widget.tasks.status.value == "cancelled"
    assert widget.last_result is None and PICKS not in widget.viewer.layers


def test_errors_end_in_one_status_line_and_napari_stays_usable(widget, small_sim, qtbot, tmp_path):
    widget.follow_clicks.value = False
    widget.segment_button.clicked()  # no prompt yet
    assert "click a particle first" in widget.tasks.status.value
    widget.add_prompts(small_sim.particles.coords[0], POSITIVE)
    widget.segmenter.value = "sam-vit-b"
    widget.weights.value = str(tmp_path / "no-such-weights")
    widget.segment_button.clicked()
    wait_until_idle(qtbot, widget)
    status = widget.tasks.status.value
    assert status.startswith("error: ") and "\n" not in status and widget.tasks.last_error
    widget.segmenter.value = "classical"
    widget.weights.value = ""
    widget.segment_button.clicked()
    wait_until_idle(qtbot, widget)
    assert widget.tasks.last_error is None and INSTANCES in widget.viewer.layers


def test_the_layer_unit_rescales_cryoseg_layers_and_is_remembered(widget, small_sim):
    from cryoseg.napari.layers import preferred_unit

    tomogram = widget.viewer.layers["tomogram"]
    widget.unit.value = "nm"
    np.testing.assert_allclose(tomogram.scale, np.array(small_sim.tomogram.voxel_size) / 10)
    assert str(tomogram.units[0]) == "nanometer" and preferred_unit() == "nm"
    np.testing.assert_allclose(widget.viewer.layers[PROMPTS].scale, tomogram.scale)
    widget.unit.value = "Å"
    np.testing.assert_allclose(tomogram.scale, small_sim.tomogram.voxel_size)
