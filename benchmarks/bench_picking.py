"""Particle picking with the default weight-free backends, against template matching and LoG.

Rows per tomogram and particle class:
  * pick, 1 prompt      `cryoseg.api.pick` (classical segmenter + filter-bank features) from one true centre;
  * pick, 10 % prompts  the same from 10 % of the class's true centres (a row only where that is 2 or more);
  * one-shot TM         template matching with the box cut from the tomogram around the same single clicked
                        particle as the 1-prompt pick (what a pytom / EMAN2 user does with one click: the same
                        information as the pick, training-free). The box's half-size is ceil(1.5 r) + 1 for the
                        class's equivalent-sphere radius r (padded with its mean at the faces); its mean is
                        subtracted and it is negated (particles are dark), then correlated under a sphere of
                        1.2 r. No low-pass and no masking of the box: the centre of positive mass of the raw
                        box (the template's rotation centre) lies within 0.75 voxel of the click on the 128^3 and
                        DeepFinder tomograms, so the picks land on the particles' centres;
  * template matching   FFT normalised cross-correlation over rotations with the true template (a strong
                        reference: it knows the answer's shape);
  * LoG                 Laplacian-of-Gaussian blobs at the class's radius (class-agnostic).
Scores: precision, recall, F1 and AP of the picks against the class's true centres (`cryoseg.eval`); a
pick matches a true centre within the class's equivalent-sphere radius. The prompted (clicked) particles
are removed from both the truth and the picks of the pick and one-shot TM rows (they were given, not found).
A table of the issue's targets follows: per class, 1-prompt F1 >= 0.85 (simulated classes of >= 10
particles), 1-prompt F1 >= one-shot TM's, 10 % F1 >= 1-prompt F1; the DeepFinder toy mean 1-prompt F1
(>= 0.45, next to one-shot TM's) and the 1-prompt pick's AP on the simulated ribosome 4v4r (>= 0.9).

Also: time and peak memory per stage of one 200x512x512 pick (the 4v4r class, 1 prompt, in a child process,
so the peak is the pick's own), and the foundation-model path (real-size SAM ViT-B and DINOv2 ViT-B/14
architectures with random weights) on a small tomogram: seconds per embedded slice and how often each slice
was embedded.

    python benchmarks/bench_picking.py --quick --no-fm   # one 128^3 tomogram, one DeepFinder toy (~5-10 min)
    python benchmarks/bench_picking.py --no-fm --out benchmarks/bench_picking.md   # all but the FM path (~70 min)
    python benchmarks/bench_picking.py --only deepfinder   # the five DeepFinder toy tomograms alone
    python benchmarks/bench_picking.py --only large        # the 200x512x512 tomogram alone, no one-shot TM

Angular steps: 30° on the 128^3 tomograms (45° with --quick), 45° on the DeepFinder toys. On 200x512x512 all
four classes run, without true-template matching (at 30°, 553 rotations, over an hour per class here), and
one-shot TM at 45° (169 rotations, about 11 min) on the ribosome class only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryoseg.baselines import LoGConfig, TemplateMatchingConfig, log_blobs, template_match
from cryoseg.errors import InputError
from cryoseg.eval import match_picks, precision_recall_curve
from cryoseg.geometry import equivalent_radius
from cryoseg.io.particles import Particles
from cryoseg.io.volumes import read_volume
from cryoseg.models.base import FeatureExtractor, PromptableSegmenter, SliceEmbedding
from cryoseg.progress import set_progress_enabled

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matching import LARGE_SET, SMALL_SET, TEMPLATES, load_or_simulate, load_truth  # noqa: E402
from profiling import profiled  # noqa: E402

DEEPFINDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepfinder_toy"
log = logging.getLogger("bench_picking")
STAGES = ("segment_prompts", "features", "matching", "verify", "segment_proposals")


@dataclass
class Dataset:
    """One tomogram with per-class truth."""

    name: str
    volume: np.ndarray
    coords: np.ndarray
    classes: np.ndarray
    names: dict[int, str]
    radius: dict[int, float]
    templates: dict[int, np.ndarray] = field(default_factory=dict)
    folder: Path | None = None


def simulated(workdir: Path, shape: tuple[int, int, int], seed: int, n: int, names: tuple[str, ...]) -> Dataset:
    folder = load_or_simulate(workdir, shape, seed, n, names)
    coords, classes, cnames, radius = load_truth(folder)
    volume = np.asarray(read_volume(folder / "tomogram.mrc").data, dtype=np.float32)
    templates = {c: np.asarray(read_volume(TEMPLATES / f"{cnames[c]}.mrc").data, np.float32) for c in cnames}
    return Dataset(f"sim {'x'.join(map(str, shape))} s{seed}", volume, coords, classes, cnames, radius,
                   templates, folder)


def deepfinder(index: int) -> Dataset:
    """A DeepFinder toy tomogram; each class's template is the label mask around one true particle
    (the exact shape in one orientation: the true template up to rotation)."""
    import pandas as pd

    volume = np.asarray(read_volume(DEEPFINDER / f"tomo{index}.mrc").data, dtype=np.float32)
    labels = np.asarray(read_volume(DEEPFINDER / f"tomo{index}_labels.mrc").data)
    table = pd.read_csv(DEEPFINDER / f"tomo{index}_particles.csv")
    classes = table["class_label"].to_numpy(np.int64)
    # The CSV's columns are voxel indices z, y, x (its header), the same order as the MRC arrays.
    coords = table[["z", "y", "x"]].to_numpy(np.float64)
    # Guard against an axis mix-up: every centre must have a voxel of its own class in its 3x3x3 neighbourhood
    # (about half sit on a background voxel next to their mask).
    near = [cls in labels[tuple(slice(max(p - 1, 0), p + 2) for p in centre)]
            for centre, cls in zip(coords.round().astype(int), classes)]
    if not all(near):
        raise ValueError(f"tomo{index}_particles.csv: {len(near) - sum(near)} of {len(near)} centres are not next "
                         "to their class in the label map; are the columns really z, y, x?")
    log.info("DeepFinder toy %d: %d centres, all next to their class label (%.0f%% on it)", index, len(coords),
             100 * np.mean(labels[tuple(coords.round().astype(int).T)] == classes))
    names, radius, templates = {}, {}, {}
    from scipy import ndimage

    for c in np.unique(classes):
        c = int(c)
        names[c] = f"class {c}"
        radius[c] = equivalent_radius(np.sum(labels == c) / np.sum(classes == c))
        centre = coords[classes == c][0].round().astype(int)
        half = int(np.ceil(2 * radius[c])) + 2
        box = tuple(slice(max(0, p - half), p + half + 1) for p in centre)
        shape = (labels[box] == c).astype(np.float32)
        lab, _ = ndimage.label(shape > 0)
        # The rounded centre often sits on a background voxel next to its mask: keep the component holding
        # the class voxel nearest to it (not the background's component).
        inside = np.argwhere(lab > 0)
        nearest = inside[np.argmin(np.sum((inside - (centre - [b.start for b in box])) ** 2, axis=1))]
        core = lab == lab[tuple(nearest)]
        templates[c] = ndimage.gaussian_filter(core.astype(np.float32), 0.7)
    return Dataset(f"DeepFinder toy {index}", volume, coords, classes, names, radius, templates)


def score_row(dataset: Dataset, cls: int, method: str, picks: Particles, seconds: float,
              exclude: np.ndarray | None = None, note: str = "") -> dict:
    truth_idx = np.flatnonzero(dataset.classes == cls)
    if exclude is not None:
        truth_idx = np.setdiff1d(truth_idx, exclude)
    truth = Particles(dataset.coords[truth_idx])
    pred = Particles(picks.coords, scores=picks.scores)
    s = match_picks(pred, truth, tolerance=dataset.radius[cls])
    best = 0.0
    if len(pred) and len(truth):  # the best F1 over all score thresholds (what a tuned threshold would give)
        curve = precision_recall_curve(pred, truth, tolerance=dataset.radius[cls])
        p, r = curve.precision, curve.recall
        best = float(np.max(np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)))
    return {"data": dataset.name, "class": dataset.names[cls], "cls": cls, "method": method, "n_true": len(truth),
            "n_pred": len(picks), "precision": s.precision, "recall": s.recall, "f1": s.f1, "best_f1": best,
            "ap": s.average_precision if s.average_precision is not None else float("nan"),
            "seconds": seconds, "note": note}


def choose_prompts(dataset: Dataset, cls: int, n: int, seed: int) -> np.ndarray:
    """Indices of `n` true particles of class `cls` away from the faces (seeded)."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(dataset.classes == cls)
    r = dataset.radius[cls]
    inner = idx[np.all((dataset.coords[idx] >= r) & (dataset.coords[idx] <= np.array(dataset.volume.shape) - 1 - r),
                       axis=1)]
    pool = inner if len(inner) >= n else idx
    return rng.choice(pool, size=min(n, len(pool)), replace=False)


def click_box(volume: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """The box a user cuts from the tomogram around one clicked particle, a bit larger than the particle.

    Args:
        volume: (Z, Y, X) tomogram.
        centre: (3,) the click, z, y, x voxels (rounded to the nearest voxel).
        radius: the particle's radius in voxels; the box's half-size h is ceil(1.5 * radius) + 1.

    Returns:
        (2h + 1, 2h + 1, 2h + 1) float32 box, axes z, y, x, centred on the click; where it crosses a face of
        the volume, padded with the mean of the part inside.
    """
    h = int(np.ceil(1.5 * radius)) + 1
    lo = np.round(centre).astype(int) - h
    hi = lo + 2 * h + 1
    part = np.asarray(volume[tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, volume.shape))],
                      np.float32)
    pad = [(max(-a, 0), max(b - n, 0)) for a, b, n in zip(lo, hi, volume.shape)]
    return np.pad(part, pad, constant_values=float(part.mean()))


def run_one_shot_tm(dataset: Dataset, cls: int, prompt_idx: np.ndarray, step: float) -> dict:
    """Template matching with the box around the one clicked particle as the template (what a pytom / EMAN2
    user does with one click); the clicked particle is left out of truth and picks."""
    r = dataset.radius[cls]
    click = dataset.coords[prompt_idx[0]]
    t0 = time.perf_counter()
    box = click_box(dataset.volume, click, r)
    template = -(box - box.mean())  # particles are dark: negated, protein is positive (the template's convention)
    picks = template_match(dataset.volume, template,
                           TemplateMatchingConfig(angular_step=step, polarity="dark", mask_radius=1.2 * r))
    seconds = time.perf_counter() - t0
    found = np.linalg.norm(picks.coords - click, axis=1) > r  # the click finds itself: not a find
    picks = Particles(picks.coords[found], scores=picks.scores[found])
    return score_row(dataset, cls, f"one-shot TM ({step:g}°)", picks, seconds, exclude=prompt_idx)


def run_pick(dataset: Dataset, cls: int, prompt_idx: np.ndarray, method: str) -> dict:
    from cryoseg import api

    t0 = time.perf_counter()
    try:
        result = api.pick(dataset.volume, dataset.coords[prompt_idx])
    except InputError as exc:  # e.g. the classical segmenter finds nothing under a prompt: report, go on
        log.warning("%s %s %s failed: %s", dataset.name, dataset.names[cls], method, exc)
        none = Particles(np.zeros((0, 3)), scores=np.zeros(0))
        return score_row(dataset, cls, method, none, time.perf_counter() - t0, exclude=prompt_idx,
                         note="failed: " + str(exc).split(":")[0])
    seconds = time.perf_counter() - t0
    found = ~np.asarray(result.is_prompt, bool)
    picks = Particles(result.particles.coords[found], scores=result.score[found])
    return score_row(dataset, cls, method, picks, seconds, exclude=prompt_idx)


def run_dataset(dataset: Dataset, args: argparse.Namespace, tm_step: float | None, one_shot_step: float,
                profile: tuple[int, Path] | None = None,
                one_shot_classes: tuple[int, ...] | None = None) -> tuple[list[dict], dict | None]:
    """Every row of every class of `dataset`. True-template TM only with a `tm_step`; one-shot TM for
    `one_shot_classes` (None: all); `profile` (class, workdir): that class's 1-prompt pick runs in a child process
    with time and memory per stage (returned)."""
    rows, info = [], None
    for cls in sorted(dataset.names):
        start = len(rows)
        n_class = int(np.sum(dataset.classes == cls))
        one = choose_prompts(dataset, cls, 1, args.seed)
        if profile is not None and profile[0] == cls:
            row, info = run_profiled(dataset, cls, one, profile[1])
            rows.append(row)
        else:
            rows.append(run_pick(dataset, cls, one, "pick, 1 prompt"))
        n10 = max(1, int(round(0.1 * n_class)))
        if n10 > 1:
            rows.append(run_pick(dataset, cls, choose_prompts(dataset, cls, n10, args.seed), f"pick, 10 % ({n10})"))
        if one_shot_classes is None or cls in one_shot_classes:
            rows.append(run_one_shot_tm(dataset, cls, one, one_shot_step))
        if tm_step is not None and cls in dataset.templates:
            t0 = time.perf_counter()
            picks = template_match(dataset.volume, dataset.templates[cls], TemplateMatchingConfig(angular_step=tm_step))
            rows.append(score_row(dataset, cls, f"template matching ({tm_step:g}°)", picks, time.perf_counter() - t0))
        t0 = time.perf_counter()
        picks = log_blobs(dataset.volume, dataset.radius[cls], LoGConfig())
        rows.append(score_row(dataset, cls, "LoG", picks, time.perf_counter() - t0))
        for r in rows[start:]:
            log.info("%s %s %s: F1 %.3f AP %.3f (%.1f s)", r["data"], r["class"], r["method"], r["f1"], r["ap"],
                     r["seconds"])
    return rows, info


def picking_table(rows: list[dict]) -> str:
    head = "| tomogram | class (radius) | method | true | picks | P | R | F1 | best F1 | AP | seconds |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['data']} | {r['class']} ({r.get('radius', 0):.1f}) | {r['method']} | {r['n_true']} | "
                     f"{r['n_pred']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['best_f1']:.3f} | "
                     f"{r['ap']:.3f} | "
                     f"{r['seconds']:.1f}" + (f" ({r['note']})" if r["note"] else "") + " |")
    return "\n".join(lines)


def summary_table(rows: list[dict], datasets: list[Dataset]) -> str:
    """The issue's targets: one line per (tomogram, class), then one line per target."""
    def methods(d: Dataset, cls: int) -> dict[str, dict]:  # "pick, 1 prompt", "pick, 10 %", "one-shot TM", ...
        return {r["method"].split(" (")[0]: r for r in rows if r["data"] == d.name and r["cls"] == cls}

    fmt = lambda r, k="f1": "–" if r is None else f"{r[k]:.3f}"  # noqa: E731
    at_least = lambda a, b: "–" if a is None or b is None else ("yes" if a["f1"] >= b["f1"] else "no")  # noqa: E731
    head = ("| tomogram | class | true | 1-prompt F1 | 10 % F1 | one-shot TM F1 | true TM F1 | LoG F1 | 1-prompt AP | "
            "1-prompt F1 >= 0.85 | 1-prompt >= one-shot TM | 10 % >= 1 prompt |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    df, ribosome = [], []
    for d in datasets:
        for cls in sorted(d.names):
            m = methods(d, cls)
            one, ten, shot = m.get("pick, 1 prompt"), m.get("pick, 10 %"), m.get("one-shot TM")
            n = int(np.sum(d.classes == cls))
            target = "–" if one is None or not d.name.startswith("sim") or n < 10 else (
                "yes" if one["f1"] >= 0.85 else "no")
            lines.append(f"| {d.name} | {d.names[cls]} | {n} | {fmt(one)} | {fmt(ten)} | {fmt(shot)} | "
                         f"{fmt(m.get('template matching'))} | {fmt(m.get('LoG'))} | {fmt(one, 'ap')} | {target} | "
                         f"{at_least(one, shot)} | {at_least(ten, one)} |")
            if d.name.startswith("DeepFinder") and one is not None and shot is not None:
                df.append((one["f1"], shot["f1"]))
            if d.name.startswith("sim") and d.names[cls] == "4v4r" and one is not None:
                ribosome.append(f"{d.name} {one['ap']:.3f}" + (" (met)" if one["ap"] >= 0.9 else " (not met)"))
    lines.append("")
    if df:
        one, shot = np.mean(df, axis=0)
        lines.append(f"- DeepFinder toy, mean 1-prompt F1 over {len(df)} (tomogram, class) rows: {one:.3f} (target "
                     f">= 0.45: {'met' if one >= 0.45 else 'not met'}); one-shot TM's mean over the same rows: "
                     f"{shot:.3f}.")
    if ribosome:
        lines.append(f"- AP of the 1-prompt pick on the ribosome 4v4r (target >= 0.9): {'; '.join(ribosome)}.")
    return "\n".join(lines)


# ---- time and memory per stage of one large pick, in a child process -----------------------------------

def profile_pick(folder: Path, prompts: np.ndarray, out: Path) -> None:
    """Child process: one pick with memory sampled every 50 ms and stage boundaries from the pipeline's log."""
    from cryoseg import api

    volume = read_volume(folder / "tomogram.mrc")
    result, info = profiled(lambda: api.pick(volume, prompts))
    found = ~np.asarray(result.is_prompt, bool)
    out.write_text(json.dumps({
        **info, "rss_before_mb": info["before"]["rss"], "pipeline_seconds": result.seconds, "counts": result.counts,
        "coords": result.particles.coords[found].tolist(), "scores": result.score[found].tolist(),
    }, indent=1))


def run_profiled(dataset: Dataset, cls: int, prompt_idx: np.ndarray, workdir: Path) -> tuple[dict, dict]:
    out = workdir / f"profile_{dataset.name.replace(' ', '_')}_{cls}.json"
    cmd = [sys.executable, __file__, "--profile-pick", str(dataset.folder), "--profile-out", str(out),
           "--prompts", json.dumps(dataset.coords[prompt_idx].tolist())]
    subprocess.run(cmd, check=True)
    info = json.loads(out.read_text())
    picks = Particles(np.asarray(info["coords"]).reshape(-1, 3), scores=np.asarray(info["scores"]))
    return score_row(dataset, cls, "pick, 1 prompt", picks, info["total_seconds"], exclude=prompt_idx), info


def profile_table(info: dict, name: str) -> str:
    lines = [f"One pick of `{name}` (1 prompt, default backends), in its own process: "
             f"{info['total_seconds']:.1f} s in all, peak resident memory {info['peak_rss_mb'] / 1e3:.2f} GB "
             f"({info['rss_before_mb'] / 1e3:.2f} GB before the pick, the tomogram memory-mapped).", "",
             "| stage | seconds | peak RSS (GB) |", "|---|---|---|"]
    for s in info["stages"]:
        peak = "–" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb'] / 1e3:.2f}"
        lines.append(f"| {s['stage']} | {s['seconds']:.1f} | {peak} |")
    c = info["counts"]
    lines += ["", f"Counts: {c['proposals']} proposals, {c['candidates']} candidates verified ({c['verified']} passed), "
              f"{c['instances']} instances, {c['similarity_evaluations']:,} "
              f"similarity evaluations, {c['n_embed']} slices embedded by the segmenter, "
              f"{c['n_predict']} decode calls."]
    return "\n".join(lines)


# ---- the foundation-model path with random weights ----------------------------------------------------

def fm_path(dataset: Dataset, cls: int, seed: int, shape: tuple[int, int, int], top_k: int) -> str:
    """Real-size SAM ViT-B and DINOv2 ViT-B/14 with random weights on a crop: cost per slice, embeds per slice.

    Random SAM weights give meaningless masks (often the whole slice), which would end every propagation
    at once; so the segmenter here runs SAM's encoder and decoder for their cost and returns the classical
    segmenter's masks, letting the pipeline take its normal course through the slices.
    """
    from cryoseg.matching import MatchingConfig
    from cryoseg.models.classical import ClassicalSegmenter
    from cryoseg.models.hf_features import HFFeatureExtractor
    from cryoseg.models.hf_segmenters import HFPromptableSegmenter
    from cryoseg.models.tiny import build_from_config, full_size_config
    from cryoseg.pipelines.pick import PickConfig, pick_instances

    prompt = dataset.coords[choose_prompts(dataset, cls, 1, seed)][0]
    lo = np.clip(np.round(prompt - np.array(shape) / 2).astype(int), 0, np.array(dataset.volume.shape) - shape)
    crop = np.ascontiguousarray(dataset.volume[tuple(slice(a, a + s) for a, s in zip(lo, shape))])
    sam = build_from_config("SamModel", full_size_config("sam-vit-b"))
    dino = build_from_config("Dinov2Model", full_size_config("dinov2-vitb14"))
    segmenter = _SamCost(HFPromptableSegmenter(sam, "sam", "sam-vit-b-random", "random"), ClassicalSegmenter())
    extractor = _CountImages(HFFeatureExtractor(dino, "dinov2", "dinov2-vitb14-random", "random", 518))
    config = PickConfig(matching=MatchingConfig(top_k=top_k, tau_sim=-1.0))  # random features: keep K proposals
    t0 = time.perf_counter()
    result = pick_instances(crop, segmenter, extractor, (prompt - lo)[None], config=config)
    total = time.perf_counter() - t0
    lines = [f"Crop {'x'.join(map(str, shape))} of `{dataset.name}` around a `{dataset.names[cls]}` particle; "
             f"1 prompt, top-K {top_k} proposals; {total:.0f} s in all "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items() if k in STAGES)}).",
             "", "| model (random weights, real size) | slices embedded | distinct slices | most embeds of one slice | "
             "seconds per slice |", "|---|---|---|---|---|",
             f"| SAM ViT-B encoder, 1024 px input | {segmenter.calls} | {len(segmenter.seen)} | "
             f"{max(segmenter.seen.values(), default=0)} | {segmenter.seconds / max(1, segmenter.calls):.2f} |",
             f"| DINOv2 ViT-B/14 features, 518 px input | {extractor.images} | {len(extractor.seen)} | "
             f"{max(extractor.seen.values(), default=0)} | {extractor.seconds / max(1, extractor.images):.2f} |",
             "", f"SAM mask decoder: {segmenter.decodes} batched calls, "
             f"{segmenter.decode_seconds / max(1, segmenter.decodes):.3f} s each."]
    return "\n".join(lines)


def _image_key(image) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class _SamCost(PromptableSegmenter):
    """Runs SAM (random weights) for its cost on every embed and decode, and returns the masks of a working
    segmenter. Counts embeds per distinct image."""

    def __init__(self, sam: PromptableSegmenter, masks_from: PromptableSegmenter) -> None:
        self.sam, self.inner = sam, masks_from
        self.name = f"{sam.name} (cost) + {masks_from.name} (masks)"
        self.calls, self.seconds, self.seen, self.decodes, self.decode_seconds = 0, 0.0, {}, 0, 0.0

    def embed(self, image):
        key = _image_key(image)
        self.seen[key] = self.seen.get(key, 0) + 1
        self.calls += 1
        t0 = time.perf_counter()
        sam_embedding = self.sam.embed(image)
        self.seconds += time.perf_counter() - t0
        inner = self.inner.embed(image)
        return SliceEmbedding((sam_embedding, inner), inner.image_shape)

    def predict(self, embedding, points, point_labels, boxes=None, mask_logits=None, multimask=False):
        sam_embedding, inner = embedding.data
        t0 = time.perf_counter()
        self.sam.predict(sam_embedding, points, point_labels, boxes, None, multimask)
        self.decode_seconds += time.perf_counter() - t0
        self.decodes += 1
        return self.inner.predict(inner, points, point_labels, boxes, mask_logits, multimask)

    def signature(self):
        return {"name": self.name}


class _CountImages(FeatureExtractor):
    """Wraps a feature extractor: counts images per distinct image, and their seconds."""

    def __init__(self, inner: FeatureExtractor) -> None:
        self.inner, self.name, self.images, self.seconds, self.seen = inner, inner.name, 0, 0.0, {}
        self.patch_size = getattr(inner, "patch_size", None)

    def geometry(self, image_shape):
        return self.inner.geometry(image_shape)

    def signature(self):
        return self.inner.signature()

    def extract(self, images):
        for im in np.asarray(images):
            key = _image_key(im)
            self.seen[key] = self.seen.get(key, 0) + 1
        self.images += len(images)
        t0 = time.perf_counter()
        out = self.inner.extract(images)
        self.seconds += time.perf_counter() - t0
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one 128^3 tomogram, one DeepFinder toy tomogram")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="simulation seeds of the 128^3 tomograms")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt choice")
    parser.add_argument("--tm-step", type=float, default=None, help="template-matching angular step (degrees)")
    parser.add_argument("--no-large", action="store_true", help="skip the 200x512x512 tomogram")
    parser.add_argument("--no-fm", action="store_true", help="skip the foundation-model path")
    parser.add_argument("--only", choices=("deepfinder", "large"), default=None,
                        help="run only these rows: 'deepfinder' runs the DeepFinder toy tomograms alone (no simulated "
                             "tomograms, no 200x512x512 profile, no foundation-model path); 'large' runs the "
                             "200x512x512 tomogram alone, without one-shot TM (its rows do not depend on the pick code)")
    parser.add_argument("--large-classes", type=str, default=None,
                        help="comma-separated class names of the 200x512x512 tomogram to run (default: all four)")
    parser.add_argument("--fm", action="store_true", help="run the foundation-model path in --quick mode too")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryoseg-bench"))
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the tables")
    parser.add_argument("--profile-pick", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prompts", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    set_progress_enabled(False)
    if args.profile_pick:
        profile_pick(args.profile_pick, np.asarray(json.loads(args.prompts)), args.profile_out)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    args.workdir.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    tm_step = args.tm_step or (45.0 if args.quick else 30.0)
    started = time.time()

    only_df, only_large = args.only == "deepfinder", args.only == "large"
    datasets = [] if only_df or only_large else [simulated(args.workdir, (128, 128, 128), s, 45, SMALL_SET)
                                                 for s in seeds]
    datasets += [] if only_large else [deepfinder(i) for i in ([1] if args.quick else [1, 2, 3, 4, 5])]
    rows = []
    for d in datasets:
        # The DeepFinder tomograms are small and have 9 classes: a coarser angular step keeps TM affordable.
        step = tm_step if d.name.startswith("sim") else max(tm_step, 45.0)
        rows += run_dataset(d, args, step, step)[0]
    profile = None
    if not args.quick and not args.no_large and not only_df:
        # No true-template TM here, and one-shot TM at 45° on the ribosome only (about 11 min; 30° would take about
        # 35 min per class).
        big = simulated(args.workdir, (200, 512, 512), 1, 400, LARGE_SET)
        if args.large_classes:
            wanted = args.large_classes.split(",")
            big.names = {c: name for c, name in big.names.items() if name in wanted}
        datasets.append(big)
        ribosome = next(c for c, name in big.names.items() if name == "4v4r")
        big_rows, profile = run_dataset(big, args, None, max(tm_step, 45.0), profile=(ribosome, args.workdir),
                                        one_shot_classes=() if only_large else (ribosome,))
        rows += big_rows
    for r in rows:
        d = next(d for d in datasets if d.name == r["data"])
        r["radius"] = d.radius[r["cls"]]
    fm = None
    if not args.no_fm and not only_df and not only_large and (args.fm or not args.quick):
        small = datasets[0]  # a small particle class keeps the slices to embed (25 s each for SAM here) few
        fm = fm_path(small, min(small.radius, key=small.radius.get), args.seed, (24, 48, 48), 2)

    text = ["## Picking, per class", "", picking_table(rows), "", "## Targets, per class", "",
            summary_table(rows, datasets)]
    if profile:
        text += ["", "## Time and peak memory per stage, 200x512x512", "",
                 profile_table(profile, "sim 200x512x512 s1, class 4v4r")]
    if fm:
        text += ["", "## Foundation-model path (random weights: cost only, quality meaningless)", "", fm]
    body = "\n".join(text)
    print(body)
    if args.out:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        words = ["benchmarks/bench_picking.py", *(argv or sys.argv[1:])]
        command = "python " + " ".join(shlex.quote(a) for a in words)
        args.out.write_text(
            "# Picking benchmark\n\n"
            f"Command: `{command}`\n\n"
            f"Machine: {platform.machine()}, {cpus} usable cores (shared with other jobs), Python "
            f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}; "
            f"{(time.time() - started) / 60:.0f} min.\n\n"
            "Simulated tomograms: `cryoseg.synth.simulate` at 10 Å/voxel with the PolNet templates in "
            "`shared/data/templates` (128^3: 4v4r, 3j9i, 1bxn, 45 particles; 200x512x512: 4v4r, 3j9i, 1bxn, "
            "5mrc, 400 particles), CTF, noise at SNR 0.5, density dark. Tolerance: the class's equivalent-sphere "
            "radius (in brackets). Pick and one-shot TM rows exclude the prompted (clicked) particles from truth "
            "and picks. AP ranks picks by verification score (pick), correlation z-score (TM) or LoG z-score; F1 is "
            "at each method's default threshold, best F1 at the best threshold on the precision-recall curve (an "
            "oracle).\n\n"
            + body + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
