"""The unsupervised method against ground truth, and what the diffusion path costs.

Datasets:
  * simulated tomograms with vesicle membranes and particles (`cryoseg.synth`, three seeds; no filaments);
  * ISBI 2012: 20 real serial-section TEM images with membrane ground truth (4 nm pixels, 50 nm sections);
  * the cylindra microtubule crop: scored against a tube of 12.5 nm outer radius around its given axis.
Rows per dataset:
  * pseudo-labels    the pseudo-labels alone, scored on the slab slices they cover;
  * student          the student U-Net trained on them, on the whole volume (and on the slab slices, for a
                     like-for-like comparison with the pseudo-labels);
  * baseline         Gaussian filter + Otsu threshold + the same region splitting, particle rules and removal of
                     small membrane components;
  * LoG              Laplacian-of-Gaussian blobs at the particles' radius (particles only).
Scores: membrane IoU and Dice (label 1 against the truth's membrane); particle precision/recall/F1 of the centres
within the true particle's radius. The microtubule: IoU, precision and recall of all structure (membrane or
particle) against the solid tube.
Cost: the diffusion path with a random-weight real-size Stable Diffusion v1.4 (UNet, VAE, CLIP text): seconds per
512 tile and peak memory, in a child process, beside the weight-free features.

    python benchmarks/bench_unsup.py --quick                               # one small simulated tomogram
    python benchmarks/bench_unsup.py --out benchmarks/bench_unsup.md       # everything
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cryoseg.eval import match_picks, segmentation_scores
from cryoseg.io.particles import Particles
from cryoseg.io.volume import Volume
from cryoseg.progress import set_progress_enabled

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
log = logging.getLogger("bench_unsup")


@dataclass
class Dataset:
    name: str
    volume: Volume
    membrane: np.ndarray | None  # (Z, Y, X) bool truth, or None
    particles: Particles | None  # true centres
    particle_radius: float  # voxels
    tube: np.ndarray | None = None  # (Z, Y, X) bool solid tube (microtubule)


def simulated(seed: int, shape: tuple[int, int, int]) -> Dataset:
    from cryoseg.synth import SimulationConfig, simulate

    sim = simulate(SimulationConfig(shape=shape, seed=seed, vesicles=3, filaments=0, particles=40))
    labels = np.asarray(sim.labels.data)
    counts = np.bincount(labels.ravel().astype(np.int64))
    particle_voxels = counts[2:].sum()
    radius = float((3 * particle_voxels / max(1, len(sim.particles)) / (4 * np.pi)) ** (1 / 3))
    vol = Volume(np.asarray(sim.tomogram.data, dtype=np.float32), voxel_size=sim.config.voxel_size)
    return Dataset(f"simulated {'x'.join(map(str, shape))} seed {seed}", vol, labels == 1,
                   Particles(sim.particles.coords), radius)


def isbi() -> Dataset:
    import tifffile

    raw = tifffile.imread(SHARED / "isbi2012" / "raw_00-19.tif").astype(np.float32)
    truth = tifffile.imread(SHARED / "isbi2012" / "membranes_00-19.tif") == 1
    return Dataset("ISBI 2012 (20 x 512 x 512)", Volume(raw, voxel_size=(500.0, 40.0, 40.0)), truth, None, 0.0)


def microtubule() -> Dataset:
    import tifffile

    data = tifffile.imread(SHARED / "cylindra_mt" / "13pf_MT.tif").astype(np.float32)
    nm = 1.052
    axis = np.array([[18.97, 190.0, 28.99], [18.97, 107.8, 51.48], [18.97, 35.2, 79.90]]) / nm  # voxels
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in data.shape], indexing="ij"), -1).reshape(-1, 3)
    dist = np.full(len(grid), np.inf)
    for a, b in zip(axis[:-1], axis[1:]):  # distance to the axis polyline
        t = np.clip((grid - a) @ (b - a) / np.dot(b - a, b - a), 0, 1)
        dist = np.minimum(dist, np.linalg.norm(grid - (a + t[:, None] * (b - a)), axis=1))
    tube = (dist * nm <= 12.5).reshape(data.shape)
    return Dataset("cylindra microtubule (36 x 206 x 94)", Volume(data, voxel_size=10 * nm), None, None, 0.0, tube)


def membrane_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    s = segmentation_scores(pred.astype(np.uint8), truth.astype(np.uint8), classes=[1])
    return float(s.per_class[1].iou), float(s.per_class[1].dice)


def particle_f1(centres: np.ndarray, truth: Particles, radius: float, z_range: tuple[int, int] | None = None
                ) -> tuple[float, float, float]:
    true = truth.coords
    if z_range is not None:  # only the particles whose centre lies within the slab
        true = true[(true[:, 0] >= z_range[0]) & (true[:, 0] < z_range[1])]
        centres = centres[(centres[:, 0] >= z_range[0]) & (centres[:, 0] < z_range[1])]
    s = match_picks(Particles(centres), Particles(true), tolerance=radius)
    return float(s.precision), float(s.recall), float(s.f1)


def baseline_labels(volume: Volume, sigma: float, labels_config) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian + Otsu (dark density is structure in these tomograms) + the method's splitting, particle rules and
    small-membrane removal (everything after the structure map is the same as for the pseudo-labels)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from cryoseg.unsup.labels import classify_slices, particle_centres

    voxel_nm = volume.voxel_size[1] / 10
    smooth = ndimage.gaussian_filter(np.asarray(volume.data, np.float32), sigma)
    structure = smooth < threshold_otsu(smooth)
    if structure.mean() > 0.5:
        structure = ~structure
    out = classify_slices(structure, voxel_nm, labels_config, float(np.prod(volume.voxel_size)) / 1000).labels
    return out, particle_centres(out, voxel_nm, labels_config)


def evaluate(ds: Dataset, workdir: Path, epochs: int) -> list[dict]:
    from cryoseg.baselines import LoGConfig, log_blobs
    from cryoseg.pipelines.unsup import NoStructureError, StudentTrainConfig, pseudo_labels, segment, train_student
    from cryoseg.unsup.labels import MEMBRANE, LabelConfig

    rows = []
    labels_config = LabelConfig()
    start = time.perf_counter()
    try:
        pseudo = pseudo_labels([ds.volume])
    except NoStructureError as exc:
        log.warning("%s: %s", ds.name, exc)
        return [{"dataset": ds.name, "method": "pseudo-labels", "where": "no structure found"}]
    t_pseudo = time.perf_counter() - start
    start = time.perf_counter()
    config = StudentTrainConfig()
    config = replace(config, train=replace(config.train, epochs=epochs))
    model = train_student(pseudo, workdir / f"model_{abs(hash(ds.name))}", config)
    t_train = time.perf_counter() - start
    start = time.perf_counter()
    seg = segment(model.model_dir, ds.volume, labels_config)
    t_seg = time.perf_counter() - start
    base_labels, base_centres = baseline_labels(ds.volume, 2.0, labels_config)
    slabs = [(s.slab.start, s.slab.stop) for s in pseudo.slabs]
    slab_idx = np.concatenate([np.arange(a, b) for a, b in slabs])
    pseudo_labels_stack = np.concatenate([s.labels for s in pseudo.slabs])

    def row(method: str, labels: np.ndarray | None, centres: np.ndarray | None, where: str, seconds: float | None,
            z: np.ndarray | None = None) -> dict:
        r = {"dataset": ds.name, "method": method, "where": where, "seconds": seconds}
        if labels is not None and ds.membrane is not None:
            truth = ds.membrane if z is None else ds.membrane[z]
            r["membrane_iou"], r["membrane_dice"] = membrane_scores(labels == MEMBRANE, truth)
        if labels is not None and ds.tube is not None:
            truth = ds.tube if z is None else ds.tube[z]
            found = labels > 0
            inter = np.count_nonzero(found & truth)
            r["tube_iou"] = inter / max(1, np.count_nonzero(found | truth))
            r["tube_precision"] = inter / max(1, np.count_nonzero(found))
            r["tube_recall"] = inter / max(1, np.count_nonzero(truth))
        if centres is not None and ds.particles is not None:
            zr = None if z is None else (int(z.min()), int(z.max()) + 1)
            r["precision"], r["recall"], r["f1"] = particle_f1(centres, ds.particles, ds.particle_radius, zr)
        return r

    pseudo_centres = np.concatenate([s.centres for s in pseudo.slabs])
    rows.append(row("pseudo-labels", pseudo_labels_stack, pseudo_centres, "slabs", t_pseudo, slab_idx))
    rows.append(row("student", seg.labels.data[slab_idx], seg.particles.coords, "slabs", None, slab_idx))
    rows.append(row("student", seg.labels.data, seg.particles.coords, "volume", t_train + t_seg))
    rows.append(row("baseline (Gaussian + Otsu)", base_labels, base_centres, "volume", None))
    if ds.particles is not None:
        picks = log_blobs(ds.volume.data, ds.particle_radius, LoGConfig(polarity="auto"))
        rows.append(row("LoG", None, picks.coords, "volume", None))
    log.info("%s: pseudo %.1f s, train %.1f s, segment %.1f s, slabs %s", ds.name, t_pseudo, t_train, t_seg, slabs)
    return rows


def diffusion_cost(features: str, repeats: int) -> dict:
    """Seconds per 512 tile and peak RSS of one affinity source, in this (child) process."""
    from cryoseg.unsup.affinity import affinity_source

    tile = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    start = time.perf_counter()
    source = affinity_source(features) if features != "sd-random" else _random_sd()
    build = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        source.affinity(tile)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"features": features, "build_s": build, "tile_s": float(np.median(times)), "peak_mb": peak}


def _random_sd():
    from cryoseg.unsup.diffusion import random_diffusion_source

    return random_diffusion_source(full_size=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small simulated tomogram only")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="also write the table and notes to this .md file")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_unsup"))
    parser.add_argument("--cost-only", metavar="FEATURES", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_progress_enabled(False)
    if args.cost_only:
        print(json.dumps(diffusion_cost(args.cost_only, 3 if args.cost_only == "filterbank" else 1)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        datasets = [simulated(1, (64, 192, 192))]
    else:
        datasets = [simulated(s, (64, 256, 256)) for s in (1, 2, 3)] + [isbi(), microtubule()]
    rows = []
    for ds in datasets:
        rows += evaluate(ds, args.workdir, args.epochs if not args.quick else 10)
    costs = []
    for features in (["filterbank"] if args.quick else ["filterbank", "sd-random"]):
        out = subprocess.run([sys.executable, __file__, "--cost-only", features], capture_output=True, text=True)
        if out.returncode == 0:
            costs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        else:
            costs.append({"features": features, "error": out.stderr.strip().splitlines()[-1]})
    lines = table(rows, costs)
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join([f"Command: `python {' '.join(sys.argv)}`", "", *lines, ""]))


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(rows: list[dict], costs: list[dict]) -> list[str]:
    cols = ["dataset", "method", "where", "membrane_iou", "membrane_dice", "precision", "recall", "f1", "tube_iou",
            "tube_precision", "tube_recall", "seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    lines += ["", "| features | build s | s per 512 tile | peak RSS MB |", "|---|---|---|---|"]
    for c in costs:
        if "error" in c:
            lines.append(f"| {c['features']} | failed: {c['error']} | | |")
        else:
            lines.append(f"| {c['features']} | {c['build_s']:.1f} | {c['tile_s']:.2f} | {c['peak_mb']:.0f} |")
    return lines


if __name__ == "__main__":
    main()
