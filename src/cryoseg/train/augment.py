"""The 8 dihedral transforms of the square (90° turns and flips) as augmentations, applied jointly to images,
labels and embedding grids on their last two axes (..., H, W), numpy arrays and torch tensors alike.

Why these and no others: training on cached embeddings of frozen encoders. An image encoder maps the (H, W) pixel
grid to an (h, w) patch grid. A dihedral transform maps both grids onto themselves (for square grids) and keeps
every patch over the same pixels, so moving the cached embedding (C, h, w) and the label map (H, W) with the same
transform keeps them aligned, with no need to run the encoder again. Nothing else in common use has that property
(arbitrary angles, crops and scalings move pixels across patch borders).

Exactness:
- The transforms commute exactly (up to float rounding) with resampling a square grid to another square grid when
  the resampling is symmetric under reflection: bilinear or bicubic with half-pixel centres (align_corners=False)
  and area averaging. Nearest-neighbour resampling is not symmetric in general (torch's "nearest" takes
  floor(i * scale); "nearest-exact" breaks ties one way), so a label map resized that way may differ at a few
  pixels; transform labels at their own resolution, after resizing, where that matters.
- For a non-square grid a 90° (or 270°) turn swaps H and W: an (H, W) image becomes (W, H), and so must any
  embedding grid or resize target computed for it.
- The encoder's values are not equivariant (position embeddings, learned filters): the transformed embedding is the
  embedding of the image moved along with the image, not what the encoder would compute for the moved image. That
  is the intended feature-space augmentation; the geometry is exact, the features are the encoder's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError

T = TypeVar("T")


def _is_torch(x: Any) -> bool:
    # checked by module name so that numpy-only callers never import torch
    return type(x).__module__.split(".")[0] == "torch"


@dataclass(frozen=True)
class Dihedral:
    """One of the 8 dihedral transforms of the last two axes (H, W): first mirror left-right when `flip` (reverse
    W), then turn `k` times by 90° from the H axis towards the W axis (numpy's and torch's `rot90(x, k, (-2, -1))`,
    counter-clockwise as displayed with row 0 at the top).

    Group structure: `a @ b` is "b, then a"; `inverse()` undoes; `Dihedral()` is the identity.
    """

    k: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or not 0 <= self.k <= 3:
            raise InputError(f"Dihedral k (quarter turns) must be 0, 1, 2 or 3, got {self.k!r}")
        if not isinstance(self.flip, (bool, np.bool_)):
            raise InputError(f"Dihedral flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "flip", bool(self.flip))

    @property
    def swaps_axes(self) -> bool:
        """Whether an (H, W) input comes out as (W, H)."""
        return self.k % 2 == 1

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape `apply` gives for an input of `shape` (..., H, W)."""
        shape = tuple(int(s) for s in shape)
        return shape[:-2] + (shape[-1], shape[-2]) if self.swaps_axes else shape

    def inverse(self) -> Dihedral:
        """The transform that undoes this one. A mirrored transform is its own inverse (F R^k F = R^-k)."""
        return self if self.flip else Dihedral((-self.k) % 4, False)

    def __matmul__(self, other: Dihedral) -> Dihedral:
        """`self @ other`: apply `other` first, then `self`. With R a quarter turn and F the mirror,
        R^a F^f R^b F^g = R^(a + (-1)^f b) F^(f xor g), since F R = R^-1 F."""
        if not isinstance(other, Dihedral):
            return NotImplemented
        k = (self.k - other.k if self.flip else self.k + other.k) % 4
        return Dihedral(k, self.flip != other.flip)

    def apply(self, x: T) -> T:
        """The transform of `x` on its last two axes.

        Args:
            x: numpy array or torch tensor (..., H, W), at least 2D.

        Returns:
            The same kind of array, (..., H, W), or (..., W, H) for an odd `k`; numpy output is a contiguous copy
            (so it converts to torch without negative strides).
        """
        ndim = x.ndim if hasattr(x, "ndim") else np.ndim(x)
        if ndim < 2:
            raise InputError(f"a dihedral transform needs at least 2 axes (..., H, W), got shape {np.shape(x)}")
        if _is_torch(x):
            import torch

            out = torch.flip(x, dims=(-1,)) if self.flip else x
            return torch.rot90(out, self.k, dims=(-2, -1)) if self.k else (out.clone() if out is x else out)
        arr = np.asarray(x)
        out = arr[..., ::-1] if self.flip else arr
        return np.ascontiguousarray(np.rot90(out, self.k, axes=(-2, -1)))

    def apply_all(self, *xs: Any) -> tuple[Any, ...]:
        """`apply` to each of `xs` (an image, its labels, its embedding grid...), as a tuple in the same order."""
        return tuple(self.apply(x) for x in xs)

    def __str__(self) -> str:
        return f"rot{90 * self.k}{'+flip' if self.flip else ''}"


def all_dihedral() -> tuple[Dihedral, ...]:
    """The 8 transforms, identity first (for test-time augmentation: average predictions mapped back with
    `inverse()`)."""
    return tuple(Dihedral(k, flip) for flip in (False, True) for k in range(4))


def random_dihedral(rng: np.random.Generator) -> Dihedral:
    """One of the 8 transforms, uniformly at random from `rng`."""
    i = int(rng.integers(8))
    return Dihedral(i % 4, i >= 4)
