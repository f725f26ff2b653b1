"""Do cryoseg's compact models, trained on the simulator, beat the classical segmenter and the filter bank on data
they never saw?

1. Instance IoU of single prompted 3D segmentations (`cryoseg.segment`, one point at a true particle centre) against
   the exact masks, classical vs compact-sam: simulated 128³ tomograms of held-out seeds (2·10^6 + k; training
   seeds stay below 10^6) holding only the held-out templates (`cryoseg.train.scenes.HELD_OUT_TEMPLATES`, 1bxn
   and 4v4r, never drawn in training), with the random SNR, defocus and tilt of `scene_config`; the DeepFinder toy
   tomograms (a particle's mask is the connected component of its class label under its centre); the real
   microtubule crop (the mask is the wall, 7.5-12.5 nm from the approximate axis; the prompt on the wall).
2. One-prompt picking (`cryoseg.pick` from one true centre, the prompted particle left out of truth and picks, as
   in bench_picking.py) with each combination of segmenter (classical, compact-sam) and features (filterbank,
   compact-features): F1 and AP per class on the held-out simulated tomograms and the five DeepFinder toy
   tomograms; then each tomogram's mean F1 per combination and whether the compact pair reaches the classical
   pair's there.
Seconds per slice and memory of every backend, against real-size SAM ViT-B and DINOv2 ViT-S, are in
bench_models.py.

    python benchmarks/bench_compact.py --out benchmarks/bench_compact.md   # the shipped weights
    python benchmarks/bench_compact.py --segmenter-weights RUN/model --feature-weights RUN2/model
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = 2_000_000
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_picking import Dataset, choose_prompts, deepfinder, score_row  # noqa: E402


def simulated_cases(n: int, per_tomogram: int):
    """(name, volume, [(prompt, truth mask)]) for held-out simulated tomograms."""
    from cryoseg.train.scenes import simulate_scene

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


def instance_iou(segmenter, cases, cache: Path) -> dict[str, float]:
    """Each case's mean single-prompt instance IoU (one cache folder per tomogram)."""
    from cryoseg.eval.prompted import single_prompt_ious

    return {name: float(np.mean(single_prompt_ious(segmenter, volume, pairs, cache_dir=cache / name)))
            if pairs else float("nan") for name, volume, pairs, _ in cases}


def iou_table(segmenters: dict, cases: list, cache: Path) -> list[str]:
    """Markdown lines: each case's mean instance IoU, classical against compact-sam, and the target."""
    ious = {name: instance_iou(model, cases, cache) for name, model in segmenters.items()}
    lines = ["| data | instance IoU, classical | instance IoU, compact-sam | difference |", "|---|---|---|---|"]
    for name, *_ in cases:
        a, b = ious["classical"][name], ious["compact-sam"][name]
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    mean = {m: float(np.nanmean(list(v.values()))) for m, v in ious.items()}
    gain = mean["compact-sam"] - mean["classical"]
    lines.append(f"| **mean** | {mean['classical']:.3f} | {mean['compact-sam']:.3f} | {gain:+.3f} |")
    lines.append(f"\nTarget: compact-sam's mean >= classical's + 0.10: {'met' if gain >= 0.10 else 'not met'}.")
    return lines


def simulated_dataset(name: str, sim) -> Dataset:
    """A held-out simulation as bench_picking's per-class truth (radius: the class's equivalent sphere)."""
    from cryoseg.geometry import equivalent_radius

    classes = np.asarray(sim.particles.classes)
    names = {int(c): sim.label_names[int(c)] for c in np.unique(classes)}
    radius = {c: equivalent_radius(np.count_nonzero(np.asarray(sim.labels.data) == c) / np.sum(classes == c))
              for c in names}
    return Dataset(name, np.asarray(sim.tomogram.data, np.float32), np.asarray(sim.particles.coords), classes,
                   names, radius)


def one_prompt_pick(dataset: Dataset, cls: int, segmenter, features, seed: int, cache: Path) -> dict:
    """`cryoseg.pick` from one true centre of `cls`; scored without the prompted particle. Embeddings and features
    are kept in `cache` / the tomogram's name, so the picks of one tomogram compute each only once."""
    import cryoseg
    from cryoseg.errors import InputError
    from cryoseg.io.particles import Particles

    prompt = choose_prompts(dataset, cls, 1, seed)
    start = time.perf_counter()
    try:
        result = cryoseg.pick(dataset.volume, dataset.coords[prompt], segmenter=segmenter, features=features,
                              cache_dir=cache / dataset.name)
    except InputError as exc:  # e.g. nothing segmented under the prompt: a miss, reported
        none = Particles(np.zeros((0, 3)), scores=np.zeros(0))
        return score_row(dataset, cls, "", none, time.perf_counter() - start, exclude=prompt,
                         note="failed: " + str(exc).split(":")[0])
    found = ~np.asarray(result.is_prompt, bool)
    picks = Particles(result.particles.coords[found], scores=result.score[found])
    return score_row(dataset, cls, "", picks, time.perf_counter() - start, exclude=prompt)


def picking_tables(datasets: list[Dataset], segmenters: dict, features: dict, seed: int, cache: Path) -> str:
    rows = {}  # (dataset, cls, segmenter, features) -> row
    for d in datasets:
        for cls in sorted(d.names):
            for s_name, seg in segmenters.items():
                for f_name, feat in features.items():
                    rows[d.name, cls, s_name, f_name] = one_prompt_pick(d, cls, seg, feat, seed, cache)
                    r = rows[d.name, cls, s_name, f_name]
                    print(f"  {d.name} {d.names[cls]} {s_name}+{f_name}: F1 {r['f1']:.3f} AP {r['ap']:.3f} "
                          f"({r['seconds']:.1f} s)", file=sys.stderr)
    combos = [(s, f) for s in segmenters for f in features]
    head = "| tomogram | class | " + " | ".join(f"{s} + {f} F1 / AP" for s, f in combos) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for d in datasets:
        for cls in sorted(d.names):
            cells = [f"{rows[d.name, cls, s, f]['f1']:.3f} / {rows[d.name, cls, s, f]['ap']:.3f}" for s, f in combos]
            lines.append(f"| {d.name} | {d.names[cls]} | " + " | ".join(cells) + " |")
    base, ours = ("classical", "filterbank"), ("compact-sam", "compact-features")
    head = ("| tomogram | " + " | ".join(f"{s} + {f}" for s, f in combos) +
            " | compact pair >= classical pair |")
    lines += ["", "Mean one-prompt F1 per tomogram (over its classes):", "", head,
              "|" + "---|" * (head.count("|") - 1)]
    for d in datasets:
        mean = {c: float(np.mean([rows[d.name, cls, *c]["f1"] for cls in d.names])) for c in combos}
        verdict = "yes" if mean[ours] >= mean[base] else "no"
        lines.append(f"| {d.name} | " + " | ".join(f"{mean[c]:.3f}" for c in combos) + f" | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter-weights", default=None, help="compact-sam weights (default: the shipped ones)")
    parser.add_argument("--feature-weights", default=None, help="compact-features weights (default: shipped)")
    parser.add_argument("--tomograms", type=int, default=3, help="held-out simulated tomograms")
    parser.add_argument("--prompts", type=int, default=10, help="prompted particles per tomogram (instance IoU)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the picking prompt choice")
    parser.add_argument("--no-picking", action="store_true", help="instance IoU only")
    parser.add_argument("--no-iou", action="store_true", help="the picking tables only")
    parser.add_argument("--deepfinder", type=int, default=5, help="DeepFinder toy tomograms in the picking tables")
    parser.add_argument("--deepfinder-start", type=int, default=1, help="the first of them (1-5)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from cryoseg.models.loaders import load_feature_extractor, load_segmenter

    torch.set_num_threads(2)
    segmenters = {"classical": load_segmenter("classical"),
                  "compact-sam": load_segmenter("compact-sam", weights=args.segmenter_weights, device="cpu")}
    sims = list(simulated_cases(args.tomograms, args.prompts))
    cases = sims + list(deepfinder_cases(args.prompts)) + [microtubule_case()]
    cache = Path(tempfile.mkdtemp(prefix="bench-compact-"))
    lines = []
    if not args.no_iou:
        lines += iou_table(segmenters, cases, cache)
        print("\n".join(lines), flush=True)  # the picking tables take much longer
    if not args.no_picking:
        features = {"filterbank": load_feature_extractor("filterbank"),
                    "compact-features": load_feature_extractor("compact-features", weights=args.feature_weights,
                                                               device="cpu")}
        datasets = [simulated_dataset(name, sim) for name, _, _, sim in sims]
        datasets += [deepfinder(t) for t in range(args.deepfinder_start, args.deepfinder_start + args.deepfinder)]
        lines += ["", picking_tables(datasets, segmenters, features, args.seed, cache)]
    shutil.rmtree(cache, ignore_errors=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
