"""Slabs: parsing, checks, and the automatic choice by structure content."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.unsup.slabs import Slab, check_slab, choose_slabs, parse_slab, structure_profile

NAMES = [("a.mrc", "a"), ("b.mrc", "b")]


def _volume_with_structure(z_lo: int, z_hi: int, shape=(40, 48, 48), seed=0) -> np.ndarray:
    """Noise everywhere; bright discs (structure larger than the noise) only on slices z_lo..z_hi-1."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(size=shape).astype(np.float32)
    yy, xx = np.mgrid[:shape[1], :shape[2]]
    discs = sum(((yy - cy) ** 2 + (xx - cx) ** 2 < 36) for cy, cx in ((12, 12), (30, 34), (36, 10)))
    vol[z_lo:z_hi] += 3.0 * discs
    return vol


def test_parse_slab_accepts_names_stems_and_indices():
    assert parse_slab("a.mrc:4:10", NAMES) == Slab(0, 4, 10)
    assert parse_slab("b:0:3", NAMES) == Slab(1, 0, 3)
    assert parse_slab("1:2:9", NAMES) == Slab(1, 2, 9)
    with pytest.raises(InputError, match="names no given tomogram; the tomograms are a.mrc, b.mrc"):
        parse_slab("c:0:3", NAMES)
    with pytest.raises(InputError, match="TOMOGRAM:START:STOP"):
        parse_slab("a.mrc:5", NAMES)
    with pytest.raises(InputError, match="whole numbers"):
        parse_slab("a:x:9", NAMES)


def test_check_slab_refuses_outside_and_thin_slabs():
    assert check_slab(Slab(0, 0, 40), (40, 8, 8), "a") == Slab(0, 0, 40)
    with pytest.raises(InputError, match="outside the volume, which has z slices 0..39"):
        check_slab(Slab(0, 35, 41), (40, 8, 8), "a")
    with pytest.raises(InputError, match="outside"):
        check_slab(Slab(0, 10, 10), (40, 8, 8), "a")
    with pytest.raises(InputError, match="2 slice\\(s\\) thick; give at least 3"):
        check_slab(Slab(0, 10, 12), (40, 8, 8), "a")


def test_structure_profile_is_higher_where_there_is_structure():
    profile = structure_profile(_volume_with_structure(20, 30))
    assert profile[20:30].min() > 3 * profile[:20].max()
    # independent of the grey scale
    np.testing.assert_allclose(structure_profile(7.0 * _volume_with_structure(20, 30) + 100), profile, rtol=1e-3)


def test_choose_slabs_finds_the_structured_range_in_the_right_tomogram():
    empty = _volume_with_structure(0, 0, seed=1)
    full = _volume_with_structure(18, 30, seed=2)
    (best,) = choose_slabs([empty, full], n_slabs=1, thickness=8)
    assert best.volume == 1 and 18 <= best.start and best.stop <= 30 and best.score > 0
    two = choose_slabs([empty, full], n_slabs=2, thickness=6)
    assert len(two) == 2 and all(s.volume == 1 for s in two)
    assert two[0].stop <= two[1].start or two[1].stop <= two[0].start  # no overlap
    assert two[0].score >= two[1].score


def test_choose_slabs_skips_the_margins_and_handles_thin_tomograms():
    vol = _volume_with_structure(0, 4)  # structure only in the top 10 %, which is skipped
    (slab,) = choose_slabs([vol], n_slabs=1, thickness=5, margin=0.1)
    assert slab.start >= 4
    (whole,) = choose_slabs([vol[:4]], n_slabs=1, thickness=10)
    assert (whole.start, whole.stop) == (0, 4)
    with pytest.raises(InputError, match="at least 3"):
        choose_slabs([vol[:2]])
