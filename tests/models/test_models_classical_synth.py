"""The classical segmenter on the simulator's tomograms (CTF, missing wedge, noise): masks must be meaningful."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg import synth
from cryoseg.models.classical import ClassicalSegmenter


@pytest.fixture(scope="module")
def simulation():
    cfg = synth.SimulationConfig(shape=(64, 96, 96), particles=12, vesicles=0, filaments=0, seed=3, threads=1)
    return synth.simulate(cfg)


def _iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_centre_clicks_segment_simulated_particles(simulation):
    tomo = np.asarray(simulation.tomogram.data)
    inst = np.asarray(simulation.instances.data)
    seg = ClassicalSegmenter()
    ious = {}
    for (z, y, x), cls in zip(np.round(simulation.particles.coords).astype(int), simulation.particles.classes):
        if not (0 <= z < tomo.shape[0] and 0 <= y < tomo.shape[1] and 0 <= x < tomo.shape[2]) or inst[z, y, x] == 0:
            continue
        truth = inst[z] == inst[z, y, x]
        pred = seg.predict(seg.embed(tomo[z]), np.array([[[y, x]]], float), np.array([[1]]), multimask=True).best()
        ious.setdefault(int(cls), []).append(_iou(pred.masks[0, 0], truth))
    names = simulation.particles.class_names
    means = {names[c]: float(np.mean(v)) for c, v in ious.items()}
    assert len(means) >= 2, means
    # Solid particles and hollow ones clicked in their cavity are both found (median over particles).
    assert np.median(np.concatenate([v for v in ious.values()])) > 0.7, means
    if "ribosome" in means:
        assert means["ribosome"] > 0.75, means


def test_background_clicks_give_no_mask(simulation):
    from scipy import ndimage

    tomo = np.asarray(simulation.tomogram.data)
    far = np.argwhere(ndimage.distance_transform_edt(np.asarray(simulation.labels.data) == 0) > 8)
    picks = far[np.random.default_rng(0).choice(len(far), 30, replace=False)]
    seg = ClassicalSegmenter()
    found = sum(bool(seg.predict(seg.embed(tomo[z]), np.array([[[y, x]]], float), np.array([[1]])).masks.any())
                for z, y, x in picks)
    assert found <= 3
