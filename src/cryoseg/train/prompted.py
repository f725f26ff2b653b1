"""Training samples for a promptable segmenter, made on the fly by the simulator: a slice of a simulated tomogram in
any view (half of them with extra white or high-passed noise), a point on one instance placed as cross-plane
self-prompting places it (the instance's deepest pixel),
sometimes negative points on other instances of the slice,
and the instance's exact mask in that slice as the target. A propagation sample is laid out as the engine steps: the
instance's mask in one slice is the mask-logit prior and gives the point (its deepest pixel), the target is the
neighbouring slice's mask, empty past the instance's end (where propagation must stop).
The scenes come from `cryoseg.train.scenes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import VIEWS, view_length, view_slice
from ..segment3d.propagate import mask_depth

# instances smaller than this in a slice (pixels) are not prompted: a user clicks what can be seen
MIN_AREA = 12
# most negative points per sample: picking segments many prompts together, each the others' negatives
MAX_NEGATIVES = 2


@dataclass(frozen=True)
class PromptedBatch:
    """Samples of one shape, stacked.

    Attributes:
        images: (B, H, W) float32 slices.
        points: (B, P, 2) float64 (row, col) in slice pixels: the positive point first, then up to P - 1
            negative points on other instances (as picking passes the other prompts), padded with copies of the
            positive point (as the engine pads).
        labels: (B, P) int64, 1 positive, 0 negative.
        targets: (B, H, W) bool, the prompted instance's mask in the slice (may be empty in a propagation step).
        priors: (B, H, W) bool, the instance's mask in the neighbouring slice, grown, shrunk or shifted by a
            pixel or few (the prior a propagation step would give, and where its point comes from), or None for a
            batch of start prompts.
    """

    images: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    priors: np.ndarray | None


def _deepest(mask: np.ndarray) -> np.ndarray:
    """(row, col) of the mask's deepest pixel, as self-prompting places its points."""
    depth = mask_depth(mask)
    return np.asarray(np.unravel_index(int(np.argmax(depth)), mask.shape), dtype=np.float64)


def _perturbed(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`mask` grown by 0-3 pixels, or shrunk by 1-2 (when something is left), then shifted by up to a pixel."""
    from scipy import ndimage

    size = int(rng.integers(-2, 4))
    if size > 0:
        mask = ndimage.binary_dilation(mask, iterations=size)
    elif size < 0:
        shrunk = ndimage.binary_erosion(mask, iterations=-size)
        mask = shrunk if shrunk.any() else mask
    return np.roll(mask, tuple(int(v) for v in rng.integers(-1, 2, size=2)), axis=(0, 1))


def added_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` (H, W) with, half of the time, extra noise of 0.3-2 times its std: white, or high-passed (each pixel
    anti-correlated with its neighbours). Simulated noise is smooth (the CTF and the reconstruction correlate
    neighbours, about +0.4); real tomograms differ with their binning, filtering and noise model (the DeepFinder
    toy tomograms' neighbours correlate about -0.3), and a model trained on one texture alone fails on the other."""
    from scipy import ndimage

    if rng.random() < 0.5:
        return image
    noise = rng.normal(size=image.shape).astype(np.float32)
    if rng.random() < 0.5:
        noise = noise - ndimage.gaussian_filter(noise, 1.0)
        noise /= noise.std()
    return image + float(rng.uniform(0.3, 2.0)) * float(image.std()) * noise


def prompted_samples(tomogram: np.ndarray, instances: np.ndarray, rng: np.random.Generator, count: int,
                     with_prior: bool) -> PromptedBatch:
    """`count` samples from one simulated tomogram (cube-shaped, so every view's slices have one shape).

    Args:
        tomogram: (Z, Y, X) float32.
        instances: (Z, Y, X) int instance labels (particles, vesicles and filaments alike).
        rng: draws the views, slices and instances.
        count: samples to make.
        with_prior: make propagation steps (a prior mask from the neighbouring slice, the point from it, a target
            that may be empty) rather than start prompts.
    """
    images, points, labels_out, targets, priors = [], [], [], [], []
    while len(images) < count:
        view = VIEWS[int(rng.integers(3))]
        index = int(rng.integers(1, view_length(tomogram.shape, view) - 1))
        labels = view_slice(instances, view, index)
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        ids = ids[areas >= MIN_AREA]
        if not len(ids):
            continue
        label = int(rng.choice(ids))
        shown = labels == label
        others = [i for i in ids if i != label and rng.random() < 0.5][:MAX_NEGATIVES]
        negatives = [_deepest(labels == i) for i in others]
        if with_prior:
            # a propagation step as the engine takes it: the point from the previous slice's mask, the next slice
            # to segment; past the instance's end that slice's target is empty, and the model must learn to stop.
            # The previous mask is the model's own at inference, never exact: a grown, shrunk or shifted prior
            # teaches the model to follow the image rather than copy the prior.
            shown = _perturbed(shown, rng)
            priors.append(shown)
            index += int(rng.choice([-1, 1]))
            target = view_slice(instances, view, index) == label
        else:
            target = shown
        images.append(added_noise(np.asarray(view_slice(tomogram, view, index), np.float32), rng))
        positive = _deepest(shown)
        pad = [positive] * (MAX_NEGATIVES - len(negatives))
        points.append(np.stack([positive, *negatives, *pad]))
        labels_out.append([1] + [0] * len(negatives) + [1] * len(pad))
        targets.append(target)
    return PromptedBatch(np.stack(images), np.stack(points), np.asarray(labels_out, np.int64), np.stack(targets),
                         np.stack(priors) if with_prior else None)
