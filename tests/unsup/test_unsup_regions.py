"""Region splitting (watershed, CellPose routing), particle/membrane separation and 3D centre merging, on drawn
shapes with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk, ellipse
from skimage.measure import label

from cryoseg.errors import InputError, MissingDependencyError
from cryoseg.unsup import regions
from cryoseg.unsup.regions import (
    RegionRules,
    cellpose_weights,
    merge_centres_3d,
    separate_particles,
    split_regions,
)

YY, XX = np.mgrid[:96, :96]


def _disc(centre, radius, shape=(96, 96)) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[disk(centre, radius, shape=shape)] = True
    return out


def _band(width=3.0) -> np.ndarray:
    """A long thin arc (a membrane) across the lower part of the image."""
    return (np.abs(np.hypot(YY - 160, XX - 48) - 100) < width / 2) & (YY < 90)


@pytest.fixture
def no_cellpose(monkeypatch):
    """CellPose absent whatever is installed here; calling it fails the test."""
    monkeypatch.setattr(regions, "_cellpose_available", lambda: None)

    def must_not_run(*args, **kwargs):
        raise AssertionError("cellpose must not run")

    monkeypatch.setattr(regions, "_cellpose_labels", must_not_run)


def test_two_touching_discs_split_into_two(no_cellpose):
    a, b = _disc((48, 39), 10), _disc((48, 57), 10)  # centres 18 apart: they overlap in a neck
    labels = split_regions(a | b)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert np.array_equal(labels > 0, a | b)
    for disc, other in ((a, b), (b, a)):
        own = disc & ~other
        ids, counts = np.unique(labels[own], return_counts=True)
        region = labels == ids[np.argmax(counts)]
        assert counts.max() / own.sum() > 0.95  # the disc's own pixels are one region ...
        assert (region & own).sum() / region.sum() > 0.9  # ... which is mostly that disc


def test_a_single_disc_and_a_thin_band_stay_one_region(no_cellpose):
    one = _disc((48, 48), 10)
    assert np.array_equal(split_regions(one), one.astype(np.int32))
    band = _band()
    assert label(band).max() == 1
    assert split_regions(band).max() == 1
    # The merge of shallow borders is what keeps it whole: the seeds alone cut the ridge into many pieces.
    assert split_regions(band, min_depth=0.0).max() > 5
    assert split_regions(np.zeros((10, 10), bool)).max() == 0


def test_every_foreground_pixel_gets_a_region(no_cellpose):
    mask = _band() | _disc((20, 20), 6)
    mask[5, 80] = True  # a lone pixel: no peak_local_max seed of its own
    labels = split_regions(mask)
    assert np.array_equal(labels > 0, mask)
    assert labels[5, 80] > 0 and np.count_nonzero(labels == labels[5, 80]) == 1


def test_auto_without_cellpose_is_the_watershed(no_cellpose):
    mask = _disc((48, 39), 10) | _disc((48, 57), 10)
    assert np.array_equal(split_regions(mask, method="auto"), split_regions(mask, method="watershed"))


def test_auto_routes_to_cellpose_when_it_and_its_weights_are_present(monkeypatch):
    calls = []

    def fake_cellpose(mask, weights):
        calls.append(weights)
        out = np.zeros(mask.shape, np.int32)
        out[:, :48] = 7  # left half one "cell", right half another, background included
        out[:, 48:] = 3
        return out

    monkeypatch.setattr(regions, "_cellpose_available", lambda: Path("/weights/cpsam"))
    monkeypatch.setattr(regions, "_cellpose_labels", fake_cellpose)
    mask = _disc((48, 48), 20)
    labels = split_regions(mask, method="auto")
    assert calls == [Path("/weights/cpsam")]
    assert labels.dtype == np.int32 and labels.max() == 2
    assert np.array_equal(labels > 0, mask)  # CellPose's labels are cut to the mask
    assert set(np.unique(labels[mask & (XX < 48)])) == {2} and set(np.unique(labels[mask & (XX >= 48)])) == {1}
    # "watershed" never asks CellPose; the watershed keeps the disc whole.
    assert split_regions(mask, method="watershed").max() == 1 and len(calls) == 1


def test_cellpose_asked_for_but_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))  # an empty model folder
    with pytest.raises(MissingDependencyError, match=str(tmp_path)) as err:
        split_regions(_disc((48, 48), 10), method="cellpose")
    assert "\n" not in str(err.value)


def test_cellpose_weights_found_only_on_disk(monkeypatch, tmp_path):
    monkeypatch.setattr(regions, "_cellpose_major", lambda: None)  # as here: cellpose not installed
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    assert cellpose_weights() is None
    (tmp_path / "cyto3").write_bytes(b"weights")
    assert cellpose_weights() == tmp_path / "cyto3"
    # Without the variable: ~/.cellpose/models, as cellpose itself.
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cellpose_weights() is None
    (tmp_path / ".cellpose" / "models").mkdir(parents=True)
    (tmp_path / ".cellpose" / "models" / "cpsam").write_bytes(b"weights")
    assert cellpose_weights() == tmp_path / ".cellpose" / "models" / "cpsam"
    # An installed cellpose 3 does not load Cellpose-SAM weights.
    monkeypatch.setattr(regions, "_cellpose_major", lambda: 3)
    assert cellpose_weights() is None


def test_split_regions_bad_input():
    with pytest.raises(InputError, match="method"):
        split_regions(_disc((48, 48), 5), method="cellpos")
    with pytest.raises(InputError, match="0 and 1"):
        split_regions(np.full((8, 8), 0.5))
    with pytest.raises(InputError, match="H, W"):
        split_regions(np.zeros((2, 8, 8), bool))
    with pytest.raises(InputError, match="min_distance"):
        split_regions(_disc((48, 48), 5), min_distance=0)


def test_disc_is_a_particle_and_the_band_is_membrane():
    band, disc = _band(), _disc((20.3, 30.6), 6)
    labels = label(band | disc)
    out = separate_particles(labels)
    assert np.array_equal(out.particles, disc) and np.array_equal(out.membrane, band)
    assert not out.dropped.any()
    assert out.centres.shape == (1, 2)
    assert np.linalg.norm(out.centres[0] - (20.3, 30.6)) < 1.0
    assert np.array_equal(separate_particles(disc).particles, disc)  # a bool mask is one region


def test_too_large_or_elongated_regions_are_membrane():
    big = _disc((40, 40), 20)  # diameter 40 > 30
    elongated = np.zeros((96, 96), bool)
    elongated[ellipse(15, 75, 10, 5, shape=(96, 96), rotation=0.5)] = True  # 2:1, a particle's area
    tiny = _disc((80, 10), 1)  # diameter ~3 < 5
    out = separate_particles(label(big | elongated | tiny))
    assert not out.particles.any() and len(out.centres) == 0
    assert np.array_equal(out.membrane, big | elongated)
    assert np.array_equal(out.dropped, tiny)  # smaller than any particle: a speck of threshold noise
    # The same big disc is a particle when the size range allows it.
    assert np.array_equal(separate_particles(label(big), RegionRules(max_diameter=45)).particles, big)


def test_a_disc_touching_the_band_is_neither_particle_nor_membrane():
    band = _band()
    top = np.argwhere(band[:, 48])[:, 0].min()  # the band's top edge in column 48
    touching = _disc((top - 6, 48), 6)  # rows top - 11 .. top - 1: its lowest row sits right above the band
    assert not (touching & band).any() and (np.roll(touching, 1, axis=0) & band).any()
    clear = _disc((top - 12, 20), 6)  # a few pixels of gap
    out = separate_particles(1 * band + 2 * touching + 3 * clear)  # as split_regions gives them: three regions
    assert np.array_equal(out.dropped, touching)
    assert np.array_equal(out.particles, clear) and np.array_equal(out.membrane, band)
    assert len(out.centres) == 1 and abs(out.centres[0, 1] - 20) < 1


def test_region_rules_are_checked():
    with pytest.raises(InputError, match="diameter"):
        RegionRules(min_diameter=10, max_diameter=5)
    with pytest.raises(InputError, match="min_membrane_distance"):
        RegionRules(min_membrane_distance=-1)
    with pytest.raises(InputError, match="non-negative integers"):
        separate_particles(np.full((4, 4), 0.5))


def _ball_slices(centre, radius, zs):
    """Per-slice (y, x) detections of a ball: the centroid of each cross-section it has on slices `zs`."""
    out = []
    for z in zs:
        r2 = radius**2 - (z - centre[0]) ** 2
        out.append(np.array([centre[1:]]) + 0.2 * np.sin(z) if r2 > 0 else np.zeros((0, 2)))
    return out


def test_a_ball_over_five_slices_is_one_centre():
    zs = list(range(4, 17))
    per_slice = _ball_slices((10, 30, 40), 2.9, zs)  # seen on z 8..12
    assert sum(len(p) for p in per_slice) == 5
    out = merge_centres_3d(per_slice, zs, radius=4.0)
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out[0], (10, 30, 40), atol=0.3)


def test_two_balls_two_centres_and_a_speck_is_dropped():
    zs = list(range(20))
    a, b = _ball_slices((5, 20, 20), 3.5, zs), _ball_slices((12, 60, 70), 2.5, zs)
    per_slice = [np.concatenate([p, q]) for p, q in zip(a, b)]
    per_slice[15] = np.concatenate([per_slice[15], [[40.0, 40.0]]])  # a speck on one slice
    out = merge_centres_3d(per_slice, zs, radius=4.0)
    np.testing.assert_allclose(out, [(5, 20, 20), (12, 60, 70)], atol=0.3)
    # Unsorted z indices give the same answer; a single slice keeps its detections.
    order = np.random.default_rng(0).permutation(20)
    np.testing.assert_allclose(merge_centres_3d([per_slice[i] for i in order], order, radius=4.0), out)
    single = np.array([[40.0, 40.0], [10.0, 12.0]])
    np.testing.assert_allclose(merge_centres_3d([single], [15], radius=4.0), [(15, 10, 12), (15, 40, 40)])


def test_an_object_missed_on_one_slice_is_kept_once():
    zs = list(range(8))
    per_slice = [np.array([[30.0, 30.0]]) if z != 3 else np.array([[80.0, 10.0]]) for z in zs]
    per_slice[4] = np.array([[31.0, 30.0]])  # the chain resumes a pixel away
    out = merge_centres_3d(per_slice, zs, radius=5.0)
    # Two chains (z 0-2 and 4-7, 4.5 apart in z) are one object; the better supported chain (4 slices) stays.
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out[0], (5.5, 30.25, 30.0))


def test_merge_centres_bad_input():
    with pytest.raises(InputError, match="z indices"):
        merge_centres_3d([np.zeros((0, 2))], [0, 1], radius=3.0)
    with pytest.raises(InputError, match="distinct"):
        merge_centres_3d([np.zeros((0, 2))] * 2, [1, 1], radius=3.0)
    with pytest.raises(InputError, match="radius"):
        merge_centres_3d([np.zeros((0, 2))], [0], radius=0.0)
    with pytest.raises(InputError, match=r"\(N, 2\)"):
        merge_centres_3d([np.zeros((3, 3))], [0], radius=3.0)
    assert merge_centres_3d([np.zeros((0, 2))] * 3, [0, 1, 2], radius=3.0).shape == (0, 3)


def test_short_non_round_regions_are_not_membrane():
    band = _band()  # long: membrane
    stub = np.zeros_like(band)
    stub[80:84, 10:24] = True  # 14 pixels long, thin: threshold noise when membranes must be 30 long
    rules = RegionRules(min_membrane_length=30)
    out = separate_particles(label(band | stub), rules)
    assert np.array_equal(out.membrane, band) and np.array_equal(out.dropped, stub)
    assert np.array_equal(separate_particles(label(band | stub)).membrane, band | stub)  # default: no length rule
