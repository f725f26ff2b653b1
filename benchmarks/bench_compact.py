"""Does the compact segmenter trained on the simulator beat the classical one, on data it never saw?

Instance IoU of single prompted 3D segmentations (`cryoseg.segment` with one point at a true particle centre)
against the exact masks: simulated 128³ tomograms of held-out seeds (the training scenes use seeds below 10^6;
these use 2·10^6 + k, with the random templates, SNR, defocus and tilt of `scene_config`), the DeepFinder toy
tomograms (a particle's mask is the connected component of its class label under its centre) and the real
microtubule crop (the mask is the wall, 7.5-12.5 nm from the approximate axis; the prompt on the wall). Also seconds per
512² slice of each segmenter's embedding and one decode, and the one-prompt pick F1 (filter-bank features) on the
held-out simulated tomograms.

    python benchmarks/bench_compact.py --weights /tmp/compact-train/model --out benchmarks/bench_compact.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = 2_000_000


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def simulated_cases(n: int, per_tomogram: int):
    """(name, volume, [(prompt, truth mask)]) for held-out simulated tomograms."""
    from cryoseg.train.prompted import simulate_scene

    for k in range(n):
        sim = simulate_scene(HELD_OUT + k, (128, 128, 128), SHARED / "templates", held_out=True)
        rng = np.random.default_rng(k)
        chosen = rng.choice(len(sim.particles), size=min(per_tomogram, len(sim.particles)), replace=False)
        pairs = [(sim.particles.coords[i], sim.instances.data == sim.particles.instance_ids[i]) for i in chosen]
        yield f"simulated seed {HELD_OUT + k}", sim.tomogram, pairs, sim


def deepfinder_cases(per_tomogram: int):
    import pandas as pd

    from cryoseg.io.volumes import read_volume

    for t in range(1, 6):
        volume = read_volume(SHARED / "deepfinder_toy" / f"tomo{t}.mrc", voxel_size=10.0)
        labels = np.asarray(read_volume(SHARED / "deepfinder_toy" / f"tomo{t}_labels.mrc").data)
        table = pd.read_csv(SHARED / "deepfinder_toy" / f"tomo{t}_particles.csv")
        pairs = []
        for _, row in table.head(per_tomogram).iterrows():
            centre = np.array([row["z"], row["y"], row["x"]], float)
            z, y, x = np.round(centre).astype(int)
            components, _ = ndimage.label(labels == labels[z, y, x])
            if labels[z, y, x] > 0:
                pairs.append((centre, components == components[z, y, x]))
        yield f"DeepFinder toy tomo{t}", volume, pairs, None


def microtubule_case():
    from cryoseg.io.volumes import read_volume

    volume = read_volume(SHARED / "cylindra_mt" / "13pf_MT.tif")
    axis = np.array([(18.97, 190.0, 28.99), (18.97, 107.8, 51.48), (18.97, 35.2, 79.90)]) / 1.052  # nm -> voxels
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in volume.shape], indexing="ij"), -1).reshape(-1, 3)
    distance = np.full(len(grid), np.inf)
    for a, b in zip(axis[:-1], axis[1:]):
        d = b - a
        t = np.clip((grid - a) @ d / (d @ d), 0, 1)
        distance = np.minimum(distance, np.linalg.norm(grid - (a + t[:, None] * d), axis=1))
    distance = distance.reshape(volume.shape) * 1.052  # nm
    wall = (distance >= 7.5) & (distance <= 12.5)  # a microtubule is a hollow tube: its wall is the object
    prompt = axis[1] + np.array([10.0 / 1.052, 0.0, 0.0])  # on the wall, 10 nm above the axis
    return "microtubule crop (real)", volume, [(prompt, wall)], None


def instance_iou(segmenter, cases) -> dict[str, float]:
    import cryoseg

    out = {}
    for name, volume, pairs, _ in cases:
        scores = []
        for prompt, truth in pairs:
            result = cryoseg.segment(volume, prompt[None], segmenter=segmenter)
            scores.append(_iou(np.asarray(result.instances.data) > 0, truth))
        out[name] = float(np.mean(scores)) if scores else float("nan")
    return out


def seconds_per_slice(segmenter, repeats: int = 5) -> float:
    image = np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32)
    segmenter.embed(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        emb = segmenter.embed(image)
        segmenter.predict(emb, np.array([[[256.0, 256.0]]]), np.array([[1]]))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def pick_f1(segmenter, sims) -> list[float]:
    import cryoseg
    from cryoseg.eval import match_picks
    from cryoseg.geometry import equivalent_radius
    from cryoseg.io.particles import Particles

    scores = []
    for sim in sims:
        cls = int(np.bincount(sim.particles.classes).argmax())
        truth = sim.particles.coords[sim.particles.classes == cls]
        result = cryoseg.pick(sim.tomogram, truth[:1], segmenter=segmenter)
        radius = equivalent_radius(np.count_nonzero(sim.labels.data == cls) / len(truth))
        scores.append(match_picks(Particles(result.particles.coords, scores=result.particles.scores),
                                  Particles(truth), tolerance=max(2.0, radius / 2)).f1)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="compact-sam weights folder (default: the shipped ones)")
    parser.add_argument("--tomograms", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from cryoseg.models.loaders import load_segmenter

    torch.set_num_threads(2)
    models = {"classical": load_segmenter("classical"),
              "compact-sam": load_segmenter("compact-sam", weights=args.weights, device="cpu")}
    sims = list(simulated_cases(args.tomograms, args.prompts))
    cases = sims + list(deepfinder_cases(args.prompts)) + [microtubule_case()]
    ious = {name: instance_iou(model, cases) for name, model in models.items()}
    lines = ["| data | instance IoU, classical | instance IoU, compact-sam | difference |", "|---|---|---|---|"]
    for name, *_ in cases:
        a, b = ious["classical"][name], ious["compact-sam"][name]
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    mean = {m: float(np.nanmean(list(v.values()))) for m, v in ious.items()}
    lines.append(f"| **mean** | {mean['classical']:.3f} | {mean['compact-sam']:.3f} | "
                 f"{mean['compact-sam'] - mean['classical']:+.3f} |")
    lines += ["", "| segmenter | s per 512² slice (embed + one decode, median of 5) | one-prompt pick F1 per simulated "
              "tomogram (filter-bank features) |", "|---|---|---|"]
    for name, model in models.items():
        f1 = pick_f1(model, [s[3] for s in sims])
        lines.append(f"| {name} | {seconds_per_slice(model):.3f} | {', '.join(f'{v:.3f}' for v in f1)} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
