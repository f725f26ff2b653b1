"""Simulated training scenes shared by cryoseg's compact models: a random simulated tomogram per seed
(`scene_config`, `simulate_scene`), the templates kept out of training for benchmarks, and the settings every
simulator-trained run shares (`SceneTrainConfig`).

Every scene is drawn from a seed: random templates (the shared density maps and the built-in shapes), particle
count, SNR, defocus, tilt range, vesicles and filaments, so that the same seed always gives the same scene.
Training seeds stay below `VALIDATION_SEED`; validation scenes start there; benchmarks use seeds above 2 * 10^6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

# density maps of the shared template folder that training never draws, so benchmarks can test on unseen kinds
HELD_OUT_TEMPLATES = ("1bxn", "4v4r")
VALIDATION_SEED = 1_000_000  # validation scenes' seeds start here; training seeds stay below


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


@dataclass(frozen=True)
class SceneTrainConfig:
    """Settings every run trained on simulated scenes shares; each model's config subclasses it with its own
    defaults and fields.

    Attributes:
        epochs: passes; each simulates `scenes` new tomograms.
        scenes: tomograms simulated per epoch.
        batches_per_scene: batches drawn from each tomogram.
        batch_size: samples (slices) per batch.
        lr: AdamW learning rate.
        lr_schedule: "constant" or "cosine" (see `TrainConfig`).
        seed: seeds the scenes, the samples and torch.
        shape: (Z, Y, X) of the simulated tomograms (a cube: every view's slices share one shape).
        templates: folder of MRC density maps to draw particle kinds from (besides the built-in shapes).
        patience: stop after this many epochs without a better validation score.
        device: where to train: "cpu", "cuda", "cuda:N", "mps", or None for the best available (a GPU when there
            is one).
    """

    epochs: int = 80
    scenes: int = 2
    batches_per_scene: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    shape: tuple[int, int, int] = (128, 128, 128)
    templates: str | None = None
    patience: int = 20
    device: str | None = None

    def __post_init__(self) -> None:
        if len(set(self.shape)) != 1:
            raise InputError(f"the training tomograms must be cubes, got shape {self.shape}")
        for name in ("epochs", "scenes", "batches_per_scene", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise InputError(f"{type(self).__name__}.{name} must be at least 1")

    def scene(self, seed: int) -> Any:
        """The simulated scene of `seed` (a `Simulation`) in this run's shape, from its templates."""
        return simulate_scene(seed, self.shape, Path(self.templates) if self.templates else None)

    def training_seed(self, epoch: int, k: int) -> int:
        """The seed of scene `k` of `epoch`: from the run's seed and the epoch alone (reproducible, resumable),
        below `VALIDATION_SEED`."""
        return (self.seed * 100_003 + epoch * self.scenes + k) % VALIDATION_SEED

    def fit_settings(self) -> Any:
        """The `TrainConfig` of `fit` for this run."""
        from .config import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           patience=self.patience, lr_schedule=self.lr_schedule)
