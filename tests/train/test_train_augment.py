"""The 8 dihedral transforms: their meaning, group laws, numpy = torch, and commuting with square resampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryoseg.errors import InputError
from cryoseg.train import Dihedral, all_dihedral, random_dihedral

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def x() -> np.ndarray:
    # leading axes and a non-square (H, W) with distinct values: every transform gives a different array
    return np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)


def test_meaning_of_k_and_flip(x):
    np.testing.assert_array_equal(Dihedral(1).apply(x), np.rot90(x, 1, axes=(2, 3)))
    np.testing.assert_array_equal(Dihedral(0, True).apply(x), x[..., ::-1])
    np.testing.assert_array_equal(Dihedral(3, True).apply(x), np.rot90(x[..., ::-1], 3, axes=(2, 3)))
    np.testing.assert_array_equal(Dihedral().apply(x), x)
    # counter-clockwise as displayed: the top-right corner goes to the top-left
    img = np.zeros((3, 3))
    img[0, 2] = 1
    assert Dihedral(1).apply(img)[0, 0] == 1


def test_eight_distinct_transforms(x):
    group = all_dihedral()
    assert len(group) == 8 and group[0] == Dihedral()
    squares = [g.apply(x[..., :4, :4]).tobytes() for g in group]
    assert len(set(squares)) == 8


def test_inverse_undoes_on_non_square_input(x):
    for g in all_dihedral():
        y = g.apply(x)
        assert y.shape == g.output_shape(x.shape)
        assert y.shape == ((2, 3, 5, 4) if g.swaps_axes else x.shape)
        np.testing.assert_array_equal(g.inverse().apply(y), x)
        np.testing.assert_array_equal(g.apply(g.inverse().apply(x)), x)
        assert g.inverse() @ g == Dihedral() and g @ g.inverse() == Dihedral()


def test_composition_is_apply_one_then_the_other(x):
    seen = set()
    for a, b in itertools.product(all_dihedral(), repeat=2):
        c = a @ b
        np.testing.assert_array_equal(c.apply(x), a.apply(b.apply(x)), err_msg=f"{a} @ {b}")
        seen.add(c)
    assert seen == set(all_dihedral())  # closed
    for a, b, c in itertools.product(all_dihedral(), repeat=3):
        assert (a @ b) @ c == a @ (b @ c)


def test_numpy_and_torch_agree(x):
    t = torch.from_numpy(x)
    for g in all_dihedral():
        out_np = g.apply(x)
        out_t = g.apply(t)
        assert isinstance(out_t, torch.Tensor) and isinstance(out_np, np.ndarray)
        assert out_np.flags.c_contiguous
        np.testing.assert_array_equal(out_t.numpy(), out_np)
        torch.from_numpy(out_np)  # no negative strides
    ident = Dihedral().apply(t)
    ident[0, 0, 0, 0] = -1  # a copy: the input is untouched
    assert t[0, 0, 0, 0] == 0


def test_apply_all_keeps_image_labels_and_embedding_aligned():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(16, 16)).astype(np.float32)
    labels = (image > 0.5).astype(np.int64)
    embedding = torch.from_numpy(image.reshape(4, 4, 4, 4).mean(axis=(1, 3)))[None].repeat(3, 1, 1)  # (C, h, w)
    for g in all_dihedral():
        img2, lab2, emb2 = g.apply_all(image, labels, embedding)
        np.testing.assert_array_equal(lab2, (img2 > 0.5).astype(np.int64))
        # the patch grid moves with the pixels: pooling the moved image gives the moved embedding
        pooled = torch.from_numpy(img2.reshape(4, 4, 4, 4).mean(axis=(1, 3)))
        torch.testing.assert_close(emb2[1], pooled)


@pytest.mark.parametrize("mode, size", [("bilinear", 7), ("bicubic", 20), ("area", 4), ("area", 5)])
def test_commutes_with_symmetric_resampling_of_square_grids(mode, size):
    x = torch.randn(1, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}

    def resize(t):
        return F.interpolate(t, size=(size, size), mode=mode, **kwargs)

    for g in all_dihedral():
        torch.testing.assert_close(resize(g.apply(x)), g.apply(resize(x)), atol=1e-5, rtol=1e-5)


def test_nearest_does_not_commute_with_flips():
    # documented exception: nearest-neighbour index choices are not mirror-symmetric
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    g = Dihedral(0, True)
    resized = F.interpolate(g.apply(x), size=(2, 2), mode="nearest")
    assert not torch.equal(resized, g.apply(F.interpolate(x, size=(2, 2), mode="nearest")))


def test_random_dihedral_is_uniform_and_seeded():
    draws = [random_dihedral(np.random.default_rng(1)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    rng = np.random.default_rng(0)
    counts = {g: 0 for g in all_dihedral()}
    for _ in range(800):
        counts[random_dihedral(rng)] += 1
    assert all(60 < c < 140 for c in counts.values()), counts


def test_bad_arguments():
    for k in (-1, 4, 1.0, True):
        with pytest.raises(InputError, match="0, 1, 2 or 3"):
            Dihedral(k)
    with pytest.raises(InputError, match="flip"):
        Dihedral(0, 1)
    with pytest.raises(InputError, match="2 axes"):
        Dihedral(1).apply(np.zeros(3))
