"""Training samples for a promptable segmenter, made on the fly by the simulator: a slice of a simulated tomogram in
any view (half of them with extra white or high-passed noise), a point on one instance placed as cross-plane
self-prompting places it (the instance's deepest pixel),
sometimes negative points on other instances of the slice,
and the instance's exact mask in that slice as the target. A propagation sample is laid out as the engine steps: the
instance's mask in one slice is the mask-logit prior and gives the point (its deepest pixel), the target is the
neighbouring slice's mask, empty past the instance's end (where propagation must stop).

Every scene is drawn from a seed: random templates (the shared density maps and the built-in shapes), particle
count, SNR, defocus, tilt range, vesicles and filaments, so that the same seed always gives the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import VIEWS, view_length, view_slice
from ..segment3d.propagate import mask_depth

# instances smaller than this in a slice (pixels) are not prompted: a user clicks what can be seen
MIN_AREA = 12
# density maps of the shared template folder that training never draws, so benchmarks can test on unseen kinds
HELD_OUT_TEMPLATES = ("1bxn", "4v4r")
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


def scene_config(seed: int, shape: tuple[int, int, int] = (128, 128, 128), templates: Path | None = None,
                 held_out: bool = False):
    """A random `SimulationConfig` drawn from `seed`: 2-4 kinds of particle (density maps from `templates`, a
    folder of MRC files, and built-in shapes), 10-40 particles per 128³, SNR 0.1-1.5, defocus 1.5-4.5 µm, tilt
    range ±45-70°, 0-2 vesicles, 0-1 filament. SNR is drawn log-uniformly: particle contrast (background minus
    particle mean over the tomogram's std) of about 0.45-1.1, reaching down to the DeepFinder toy tomograms' 0.5.

    Training scenes never hold the maps named in `HELD_OUT_TEMPLATES`; `held_out=True` makes a test scene of only
    those (from `templates`, which must then hold them)."""
    from ..synth import SimulationConfig
    from ..synth.templates import BUILTIN_SHAPES

    rng = np.random.default_rng(seed)
    maps = sorted(templates.glob("*.mrc")) if templates is not None else []
    if held_out:
        pool = [str(p) for p in maps if p.stem in HELD_OUT_TEMPLATES]
        if not pool:
            raise InputError(f"no held-out template ({', '.join(HELD_OUT_TEMPLATES)}) in {templates}")
    else:
        pool = [str(p) for p in maps if p.stem not in HELD_OUT_TEMPLATES] + sorted(BUILTIN_SHAPES)
    kinds = tuple(rng.choice(pool, size=min(len(pool), int(rng.integers(2, 5))), replace=False))
    tilt = float(rng.uniform(45, 70))
    particles = max(3, int(rng.integers(10, 41) * np.prod(shape) / 128 ** 3))
    return SimulationConfig(shape=shape, seed=seed, templates=kinds, particles=particles,
                            snr=float(np.exp(rng.uniform(np.log(0.1), np.log(1.5)))), defocus=float(rng.uniform(1.5, 4.5)),
                            tilt_range=(-tilt, tilt), vesicles=int(rng.integers(0, 3)),
                            filaments=int(rng.integers(0, 2)), threads=1)


def simulate_scene(seed: int, shape: tuple[int, int, int] = (128, 128, 128), templates: Path | None = None,
                   held_out: bool = False):
    """The `Simulation` of `scene_config(seed, ...)`; where its particles do not fit (large kinds in a small
    volume), half as many without membranes and filaments, and so on."""
    import dataclasses

    from ..synth import simulate

    config = scene_config(seed, shape, templates, held_out)
    while True:
        try:
            return simulate(config)
        except InputError:
            if config.particles <= 1:
                raise
            config = dataclasses.replace(config, particles=config.particles // 2, vesicles=0, filaments=0)


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
