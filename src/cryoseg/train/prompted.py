"""Training samples for a promptable segmenter, made on the fly by the simulator: a slice of a simulated tomogram in
any view, a point on one instance placed as cross-plane self-prompting places it (the instance's deepest pixel),
optionally the neighbouring slice's mask as a mask-logit prior (as propagation gives the previous slice's
logits), and the instance's exact mask in that slice as the target.

Every scene is drawn from a seed: random templates (the shared density maps and the built-in shapes), particle
count, SNR, defocus, tilt range, vesicles and filaments, so that the same seed always gives the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import VIEWS, view_length, view_slice
from ..segment3d.propagate import mask_depth

# instances smaller than this in a slice (pixels) are not prompted: a user clicks what can be seen
MIN_AREA = 12


@dataclass(frozen=True)
class PromptedBatch:
    """Samples of one shape, stacked.

    Attributes:
        images: (B, H, W) float32 slices.
        points: (B, 2) float64 (row, col) of the positive point, in slice pixels.
        targets: (B, H, W) bool, the prompted instance's mask in the slice.
        priors: (B, H, W) bool, the instance's mask in the neighbouring slice (the prior a propagation step
            would give), or None for a batch of start prompts.
    """

    images: np.ndarray
    points: np.ndarray
    targets: np.ndarray
    priors: np.ndarray | None


def scene_config(seed: int, shape: tuple[int, int, int] = (128, 128, 128), templates: Path | None = None):
    """A random `SimulationConfig` drawn from `seed`: 2-4 kinds of particle (density maps from `templates`, a
    folder of MRC files, and built-in shapes), 10-40 particles per 128³, SNR 0.2-1.5, defocus 1.5-4.5 µm, tilt range
    ±45-70°, 0-2 vesicles, 0-1 filament."""
    from ..synth import SimulationConfig
    from ..synth.templates import BUILTIN_SHAPES

    rng = np.random.default_rng(seed)
    pool = sorted(str(p) for p in templates.glob("*.mrc")) if templates is not None else []
    pool += sorted(BUILTIN_SHAPES)
    kinds = tuple(rng.choice(pool, size=min(len(pool), int(rng.integers(2, 5))), replace=False))
    tilt = float(rng.uniform(45, 70))
    particles = max(3, int(rng.integers(10, 41) * np.prod(shape) / 128 ** 3))
    return SimulationConfig(shape=shape, seed=seed, templates=kinds, particles=particles,
                            snr=float(rng.uniform(0.2, 1.5)), defocus=float(rng.uniform(1.5, 4.5)),
                            tilt_range=(-tilt, tilt), vesicles=int(rng.integers(0, 3)),
                            filaments=int(rng.integers(0, 2)), threads=1)


def simulate_scene(seed: int, shape: tuple[int, int, int] = (128, 128, 128), templates: Path | None = None):
    """The `Simulation` of `scene_config(seed, ...)`; where its particles do not fit (large kinds in a small
    volume), half as many without membranes and filaments, and so on."""
    import dataclasses

    from ..errors import InputError
    from ..synth import simulate

    config = scene_config(seed, shape, templates)
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


def prompted_samples(tomogram: np.ndarray, instances: np.ndarray, rng: np.random.Generator, count: int,
                     with_prior: bool) -> PromptedBatch:
    """`count` samples from one simulated tomogram (cube-shaped, so every view's slices have one shape).

    Args:
        tomogram: (Z, Y, X) float32.
        instances: (Z, Y, X) int instance labels (particles, vesicles and filaments alike).
        rng: draws the views, slices and instances.
        count: samples to make.
        with_prior: give every sample the neighbouring slice's mask as its prior (a propagation step), or none
            (a start prompt).
    """
    images, points, targets, priors = [], [], [], []
    while len(images) < count:
        view = VIEWS[int(rng.integers(3))]
        index = int(rng.integers(1, view_length(tomogram.shape, view) - 1))
        labels = view_slice(instances, view, index)
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        ids = ids[areas >= MIN_AREA]
        if not len(ids):
            continue
        label = int(rng.choice(ids))
        target = labels == label
        if with_prior:
            neighbour = view_slice(instances, view, index + int(rng.choice([-1, 1]))) == label
            if not neighbour.any():
                continue
            priors.append(neighbour)
        images.append(np.asarray(view_slice(tomogram, view, index), np.float32))
        points.append(_deepest(target))
        targets.append(target)
    return PromptedBatch(np.stack(images), np.stack(points), np.stack(targets),
                         np.stack(priors) if with_prior else None)
