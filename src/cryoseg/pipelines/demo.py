"""The built-in main job: simulate a tomogram, pick one kind of particle from a single prompt, and score
the pick against the simulator's exact ground truth. Runs offline with the weight-free backends."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..eval import PickingScores, SegmentationScores, match_picks, segmentation_scores
from ..geometry import equivalent_radius
from ..io.particles import Particles
from ..io.report import REPORT, StageTimer, write_report
from ..synth import Simulation, SimulationConfig, simulate
from ..viz import save_preview

logger = logging.getLogger(__name__)



@dataclass
class DemoResult:
    """What the demo measured.

    Attributes:
        class_name: the particle kind that was prompted.
        prompt: (3,) z, y, x voxels of the single prompt.
        picking: picks of the pipeline against the true particles of that kind.
        segmentation: the semantic mask against the true label of that kind (IoU, Dice).
        files: every file written, by name.
        seconds: wall-clock seconds per stage.
    """

    class_name: str
    prompt: np.ndarray
    picking: PickingScores
    segmentation: SegmentationScores
    files: dict[str, Path]
    seconds: dict[str, float]


def choose_prompt(sim: Simulation) -> tuple[int, np.ndarray]:
    """The class with the largest particles (most labelled voxels each) and its particle nearest the centre,
    as a user would click a clearly visible one. Returns (class id, (3,) z, y, x)."""
    parts = sim.particles
    classes = np.unique(parts.classes)
    voxels = np.bincount(sim.labels.data.ravel().astype(np.int64), minlength=int(classes.max()) + 1)
    per_particle = [voxels[c] / np.count_nonzero(parts.classes == c) for c in classes]
    cls = int(classes[int(np.argmax(per_particle))])
    coords = parts.coords[parts.classes == cls]
    centre = (np.asarray(sim.tomogram.shape) - 1) / 2
    return cls, coords[np.argmin(np.linalg.norm(coords - centre, axis=1))]


def run_demo(outdir: str | Path, seed: int = 0, config: SimulationConfig | None = None) -> DemoResult:
    """Simulate (default config, `seed`), pick from one prompt, evaluate; write everything under `outdir`.

    Layout: `simulation/` (tomogram, labels, particles, report), `pick/` (instances, mask, picks, preview,
    report), `truth_preview.png`, `report.json`.
    """
    from ..io.atomic import staged_folder

    outdir = Path(outdir)
    with staged_folder(outdir, REPORT) as stage:
        result = _run(stage, seed, config)
    result.files = {k: outdir / p.relative_to(stage) for k, p in result.files.items()}
    return result


def _run(outdir: Path, seed: int, config: SimulationConfig | None) -> DemoResult:
    """`run_demo` writing into `outdir` (a staging folder), its report last."""
    from .. import api

    timer = StageTimer()
    with timer("simulate"):
        sim = simulate(config or SimulationConfig(seed=seed))
    files = {f"simulation/{k}": p for k, p in sim.save(outdir / "simulation").items()}
    cls, prompt = choose_prompt(sim)
    name = sim.particles.class_names.get(cls, f"class {cls}")
    logger.info("prompting one %s at (z, y, x) = %s", name, tuple(int(v) for v in prompt))
    with timer("pick"):
        result = api.pick(sim.tomogram, prompts=prompt[None])
    files.update({f"pick/{k}": p for k, p in result.save(outdir / "pick").items()})
    truth = sim.particles.subset(sim.particles.classes == cls)
    radius = equivalent_radius(np.count_nonzero(sim.labels.data == cls) / max(len(truth), 1))
    picking = match_picks(Particles(result.particles.coords, scores=result.particles.scores),
                          Particles(truth.coords), tolerance=max(2.0, radius / 2))
    segmentation = segmentation_scores(result.mask.data.astype(bool), sim.labels.data == cls)
    files["truth_preview"] = save_preview(sim.tomogram, outdir / "truth_preview.png", point=prompt,
                                          labels=sim.labels.data, picks=truth.coords, title=f"truth: {name}")
    files["report"] = write_report(outdir / REPORT, kind="demo", seed=seed, class_name=name, prompt=prompt,
                                   picking=picking.to_dict(), segmentation=segmentation.to_dict(),
                                   seconds=timer.seconds,
                                   files={k: str(p.relative_to(outdir)) for k, p in files.items()})
    return DemoResult(name, prompt, picking, segmentation, files, timer.seconds)
