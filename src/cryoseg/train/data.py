"""2D training samples cut from volumes or image stacks, their split into training and validation, and label checks.

Everything here is numpy only (no torch), so the CLI and the data checks stay light. A sample is one slice: an image
(H, W) float32 and, for supervised training, its label map (H, W) int64 with 0 for background and 1..K for the K
classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import check_views, view_image_shape, view_length, view_slice
from ..io.volume import Volume


@dataclass
class SliceSet:
    """2D samples, all of one size.

    Attributes:
        images: (N, H, W) float32.
        labels: (N, H, W) int64 (0 background, 1..K classes), or None for unlabelled data (self-supervised
            pretraining, pseudo-labelling).
        sources: N names, one per slice, saying where it was cut: "<volume name>:<axis><index>", e.g. "tomo1:z12".
    """

    images: np.ndarray
    labels: np.ndarray | None
    sources: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 3:
            raise InputError(f"SliceSet images must be (N, H, W), got shape {self.images.shape}")
        if self.labels is not None and self.labels.shape != self.images.shape:
            raise InputError(f"SliceSet labels {self.labels.shape} and images {self.images.shape} differ in shape")
        if len(self.sources) != len(self.images):
            raise InputError(f"SliceSet has {len(self.images)} images but {len(self.sources)} source names")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> SliceSet:
        """The slices at `indices` (in that order), as a new SliceSet (copies)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        labels = None if self.labels is None else self.labels[idx]
        return SliceSet(self.images[idx], labels, [self.sources[i] for i in idx.tolist()])


def _as_array(item: Any, what: str, i: int) -> np.ndarray:
    data = item.data if isinstance(item, Volume) else np.asarray(item)
    if data.ndim == 2:  # a single EM image: a stack of one
        data = data[None]
    if data.ndim != 3:
        raise InputError(f"{what} {i} must be a (Z, Y, X) volume or a (Y, X) image, got shape {data.shape}")
    return data


def _as_labels(data: np.ndarray, i: int) -> np.ndarray:
    """Integer labels as int64. Float label maps (MRC mode 2 is common for label volumes) are accepted when every
    value is a whole number."""
    if data.dtype == bool or np.issubdtype(data.dtype, np.integer):
        return data.astype(np.int64)
    if not np.issubdtype(data.dtype, np.floating):
        raise InputError(f"labels {i} must be integers, got dtype {data.dtype}")
    values = np.unique(data)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        bad = values[~np.isfinite(values) | (values != np.round(values))]
        raise InputError(f"labels {i} must be whole numbers, found {bad[:5].tolist()}")
    return data.astype(np.int64)


def slices_from_volumes(images: Sequence[np.ndarray | Volume], labels: Sequence[np.ndarray | Volume] | None = None,
                        axis: str = "z", names: Sequence[str] | None = None) -> SliceSet:
    """Cut every slice along `axis` out of each volume (and its label volume) into one SliceSet.

    Args:
        images: volumes (Z, Y, X) (arrays or `Volume`s); a 2D (Y, X) image counts as a stack of one slice.
        labels: one label volume per image, each of the same shape as its image, or None (unlabelled).
        axis: "z", "y" or "x": the view to slice (see `cryoseg.geometry`): "z" gives (Y, X) slices, "y" (Z, X),
            "x" (Z, Y). Every volume must give slices of one size.
        names: one name per volume for the slices' source names; default "volume0", "volume1", ...

    Returns:
        SliceSet with images (N, H, W) float32, labels (N, H, W) int64 or None, N = total slices.
    """
    view = check_views(axis)
    if len(view) != 1:
        raise InputError(f"slice along one axis ('z', 'y' or 'x'), got {axis!r}")
    view = view[0]
    if len(images) == 0:
        raise InputError("no volumes given to cut training slices from")
    if labels is not None and len(labels) != len(images):
        raise InputError(f"got {len(images)} image volumes but {len(labels)} label volumes; give one label "
                         "volume per image")
    names = [f"volume{i}" for i in range(len(images))] if names is None else [str(n) for n in names]
    if len(names) != len(images):
        raise InputError(f"got {len(images)} volumes but {len(names)} names")

    out_images, out_labels, sources = [], [], []
    plane: tuple[int, int] | None = None
    for i, item in enumerate(images):
        data = _as_array(item, "image", i)
        lab = None
        if labels is not None:
            lab = _as_array(labels[i], "labels", i)
            if lab.shape != data.shape:
                raise InputError(f"image {i} ({names[i]}) has shape {data.shape} but its labels have shape "
                                 f"{lab.shape}")
            lab = _as_labels(lab, i)
        if not np.all(np.isfinite(data)):
            raise InputError(f"image {i} ({names[i]}) contains NaN or infinite values; clean them first "
                             "(e.g. nan_policy='clean')")
        shape = view_image_shape(data.shape, view)
        if plane is None:
            plane = shape
        elif shape != plane:
            raise InputError(f"image {i} ({names[i]}) gives {view} slices of shape {shape} but image 0 gives "
                             f"{plane}; crop or tile the volumes to one slice size")
        for k in range(view_length(data.shape, view)):
            out_images.append(np.asarray(view_slice(data, view, k), dtype=np.float32))
            if lab is not None:
                out_labels.append(view_slice(lab, view, k))
            sources.append(f"{names[i]}:{view}{k}")
    stacked_labels = np.stack(out_labels).astype(np.int64) if labels is not None else None
    return SliceSet(np.stack(out_images).astype(np.float32), stacked_labels, sources)


def split(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split items 0..n-1 at random into training and validation indices, the same way for the same arguments.

    Neighbouring slices of one volume are nearly the same image, so a split of slices flatters the validation
    metric; where there are several volumes, split the volumes (n = number of volumes) rather than their slices.

    Args:
        n: number of items (slices, tiles or volumes).
        val_fraction: share of items for validation, in (0, 1); rounded, but when n >= 2 each side gets at least
            one item.
        seed: seed of the shuffle.

    Returns:
        (train_idx, val_idx): sorted int64 arrays, disjoint, together 0..n-1. With n == 1, val_idx is empty.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"split needs at least one item, got n={n!r}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = int(n)
    n_val = 0 if n == 1 else min(max(int(round(n * val_fraction)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """The batches of one epoch over items 0..n-1: index arrays of `batch_size` (the last may be shorter).

    The order depends only on (seed, epoch), not on how many epochs ran before in this process, so a resumed
    training sees the same batches as an uninterrupted one.
    """
    if n < 0 or batch_size < 1:
        raise InputError(f"batch_indices needs n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n) if shuffle else np.arange(n)
    return [order[i:i + batch_size].astype(np.int64) for i in range(0, n, batch_size)]


def check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Check that `labels` holds only 0 (background) and the classes 1..n_classes; count pixels per value.

    Args:
        labels: integer label maps of any shape, e.g. (N, H, W).
        n_classes: number of foreground classes K.

    Returns:
        (K + 1,) int64: pixels of background (index 0) and of each class 1..K. A zero count means a class has no
        example; the caller decides whether to warn or refuse.
    """
    if isinstance(n_classes, bool) or int(n_classes) != n_classes or n_classes < 1:
        raise InputError(f"n_classes must be a whole number >= 1, got {n_classes!r}")
    labels = np.asarray(labels)
    if not (labels.dtype == bool or np.issubdtype(labels.dtype, np.integer)):
        raise InputError(f"labels must be integers, got dtype {labels.dtype}")
    values, counts = np.unique(labels.astype(np.int64), return_counts=True)
    bad = values[(values < 0) | (values > n_classes)]
    if bad.size:
        more = f" and {bad.size - 10} more" if bad.size > 10 else ""
        raise InputError(f"labels hold values {bad[:10].tolist()}{more} outside 0..{n_classes} "
                         f"(0 background, 1..{n_classes} classes)")
    out = np.zeros(int(n_classes) + 1, np.int64)
    out[values] = counts
    return out
