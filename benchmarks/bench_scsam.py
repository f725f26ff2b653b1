"""ScSAM (frozen SAM + MAE encoders, trained fusion head) against its single-encoder ablations and a MONAI U-Net.

Tables:
  1. mIoU per class (and mean) on held-out slices, per dataset:
       ScSAM fused (use_sam and use_mae), SAM only (use_mae=False), MAE only (use_sam=False), each with two
       encoder sets: "tiny random" (tiny-sam + tiny-mae, seeded random weights) and "tiny SAM + pretrained MAE"
       (tiny-sam + a tiny-mae pretrained here by `pretrain_mae` on unlabelled slices that no test slice is among);
       with `--encoders compact-sam`, "compact-sam + pretrained MAE" (cryoseg's shipped compact SAM, trained on
       simulated tomograms, 256 px input: the one trained SAM available offline);
       and a 2D MONAI U-Net trained on the same slices, the same train/validation split, the same batches, epochs
       and optimizer (cryoseg's `fit`: AdamW, lr, clipping, best epoch by validation mIoU), CE + Dice loss.
     Datasets: ISBI 2012 (train slices 0-13, test 14-19; "membrane"), one simulated tomogram (z split: train on
     z 8-35, test on z 38-55; membrane + its largest particle class, the other particles as background) and the
     DeepFinder toy label maps (train on tomo1 + tomo2 z slices, test on tomo3 z slices; classes 1..9).
  2. Seconds per training epoch with the embedding cache (embeddings computed once, the normal path) and without
     (the frozen encoders run on every batch's slices in every epoch): both timed with the same head steps, one
     epoch over the training slices, median over a few epochs; prediction seconds per slice; peak RSS.
  3. The issue's targets, met or not.

Resolution of the U-Net (our choice, to match what the tiny encoders see): each slice is resized (bilinear,
antialiased) to 64 x 64, the tiny encoders' input size; the U-Net's logits are resized back bilinearly to the
slice's pixels, where the loss and the scores are taken, as ScSAM's logits are.

    python benchmarks/bench_scsam.py --quick                            # a few minutes
    python benchmarks/bench_scsam.py --out benchmarks/bench_scsam.md    # the table in benchmarks/README.md

No pretrained SAM or MAE weights exist on the development machine: every encoder here is tiny (2 layers, width
32, 64-pixel input), random, or an MAE pretrained for a few minutes. The numbers measure the pipeline, not SAM.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TINY_INPUT = 64  # input size of tiny-sam and tiny-mae
# encoder sets: --encoders key -> the label in the tables, and the (SAM, MAE) registry names; every set but the first
# uses the MAE pretrained here. compact-sam is cryoseg's own SAM trained on simulated tomograms (256 px, 32x32 tokens):
# the one SAM with trained weights available offline.
ENCODER_SETS = {"tiny-random": "tiny random", "tiny-pretrained-mae": "tiny SAM + pretrained MAE",
                "compact-sam": "compact-sam + pretrained MAE"}
ENCODER_MODELS = {"tiny-random": ("tiny-sam", "tiny-mae"), "tiny-pretrained-mae": ("tiny-sam", "tiny-mae"),
                  "compact-sam": ("compact-sam", "tiny-mae")}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Dataset:
    name: str
    train_images: list[np.ndarray]  # stacks (N, H, W)
    train_labels: list[np.ndarray]
    test_images: np.ndarray  # (N, H, W)
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    note: str
    unlabelled: list[np.ndarray] = field(default_factory=list)  # for MAE pretraining; never a test slice


def load_isbi(quick: bool) -> Dataset:
    import tifffile

    raw = tifffile.imread(DATA / "isbi2012" / "raw_00-19.tif").astype(np.float32)
    mem = tifffile.imread(DATA / "isbi2012" / "membranes_00-19.tif").astype(np.uint8)
    train = list(range(6)) if quick else list(range(14))
    test = list(range(14, 17)) if quick else list(range(14, 20))
    note = f"train slices {train[0]}-{train[-1]}, test {test[0]}-{test[-1]} (512x512)"
    return Dataset("ISBI 2012", [raw[train]], [mem[train]], raw[test], mem[test], ("membrane",), note,
                   unlabelled=[raw[train]])


def load_sim(quick: bool) -> Dataset:
    from cryoseg.synth import SimulationConfig, simulate

    shape = (64, 128, 128)
    sim = simulate(SimulationConfig(shape=shape, seed=0))
    vol = np.asarray(sim.tomogram.data, dtype=np.float32)
    lab = np.asarray(sim.labels.data)
    particle = [k for k in sim.label_names if k >= 2 and sim.label_names[k] != "filament"]
    largest = max(particle, key=lambda k: int((lab == k).sum()))
    keep = np.zeros_like(lab, dtype=np.uint8)
    keep[lab == 1] = 1
    keep[lab == largest] = 2
    names = ("membrane", sim.label_names[largest])
    train = np.arange(8, 36, 2 if quick else 1)
    test = np.arange(38, 56, 2 if quick else 1)
    # unlabelled slices for the MAE: another simulated tomogram (seed 1), so no test slice is seen
    other = simulate(SimulationConfig(shape=shape, seed=1))
    note = (f"simulate(shape={shape}, seed=0); train z {train[0]}-{train[-1]}"
            f"{' every 2nd' if quick else ''}, test z {test[0]}-{test[-1]}{' every 2nd' if quick else ''} "
            f"(128x128); classes membrane + {names[1]} (largest particle class), other labels as background")
    return Dataset("simulated", [vol[train]], [keep[train]], vol[test], keep[test], names, note,
                   unlabelled=[np.asarray(other.tomogram.data, dtype=np.float32)])


def load_deepfinder(quick: bool) -> Dataset:
    import mrcfile

    def read(name: str) -> np.ndarray:
        with mrcfile.open(DATA / "deepfinder_toy" / name, permissive=True) as f:
            return np.asarray(f.data)

    step = 4 if quick else 2
    zs = slice(step // 2, None, step)
    tr_img = [read(f"tomo{i}.mrc").astype(np.float32)[zs] for i in (1, 2)]
    tr_lab = [read(f"tomo{i}_labels.mrc").astype(np.uint8)[zs] for i in (1, 2)]
    te_img = read("tomo3.mrc").astype(np.float32)[zs]
    te_lab = read("tomo3_labels.mrc").astype(np.uint8)[zs]
    note = (f"train tomo1 + tomo2, test tomo3; every {'2nd' if step == 2 else f'{step}th'} z slice (100x100; "
            f"{sum(len(x) for x in tr_img)} train, {len(te_img)} test)")
    names = tuple(f"class {k}" for k in range(1, 10))
    return Dataset("DeepFinder toy", tr_img, tr_lab, te_img, te_lab, names, note,
                   unlabelled=[read(f"tomo{i}.mrc").astype(np.float32) for i in (4, 5)])


def per_class_iou(pred: np.ndarray, truth: np.ndarray, k: int) -> tuple[list[float], float]:
    from cryoseg.eval import segmentation_scores

    scores = segmentation_scores(pred, truth, classes=list(range(1, k + 1)))
    return [float(scores.per_class[c].iou) for c in range(1, k + 1)], float(scores.mean_iou)


# ---------------------------------------------------------------------------------------------------- U-Net


def _to_input(stack: np.ndarray, side: int) -> torch.Tensor:
    """(N, H, W) -> (N, 1, side, side): each slice scaled by its 1st/99th percentiles, resized bilinearly."""
    import torch
    import torch.nn.functional as F

    lo = np.percentile(stack, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(stack, 99, axis=(1, 2), keepdims=True)
    x = np.clip((stack - lo) / np.maximum(hi - lo, 1e-6), 0, 1).astype(np.float32)
    t = torch.from_numpy(x)[:, None]
    return F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def train_unet(ds: Dataset, train_cfg, val_fraction: float, side: int = TINY_INPUT) -> dict:
    import torch
    import torch.nn.functional as F
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    from cryoseg.train.augment import all_dihedral
    from cryoseg.train.data import batch_indices, split
    from cryoseg.train.loop import fit

    k = len(ds.class_names)
    images = np.concatenate(ds.train_images)
    labels = np.concatenate(ds.train_labels).astype(np.int64)
    shape = images.shape[1:]
    x_all = _to_input(images, side)
    y_all = torch.from_numpy(labels)
    train_idx, val_idx = split(len(images), val_fraction, train_cfg.seed)  # the same split as ScSAM's
    torch.manual_seed(train_cfg.seed)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=k + 1, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    square = shape[0] == shape[1]

    def batches(epoch: int):
        rng = np.random.default_rng([train_cfg.seed, epoch, 1])
        return [(train_idx[b], int(rng.integers(8))) for b in
                batch_indices(len(train_idx), train_cfg.batch_size, train_cfg.seed, epoch)]

    def forward(model, x):
        return F.interpolate(model(x), size=shape, mode="bilinear", align_corners=False)

    def step(model, batch):
        idx, which = batch
        x, y = x_all[idx], y_all[idx]
        if square:
            turn = all_dihedral()[which]
            x, y = turn.apply(x), turn.apply(y)
        loss = loss_fn(forward(model, x), y[:, None])
        return loss, {}

    def predict(model, x):
        out = []
        with torch.no_grad():
            for i in range(0, len(x), 8):
                out.append(forward(model, x[i:i + 8]).argmax(1).numpy())
        return np.concatenate(out)

    def validate(model):
        return per_class_iou(predict(model, x_all[val_idx]), labels[val_idx], k)[1]

    start = time.perf_counter()
    history = fit(net, batches, step, validate, train_cfg)
    seconds = time.perf_counter() - start
    net.eval()
    start = time.perf_counter()
    pred = predict(net, _to_input(ds.test_images, side))
    pred_s = (time.perf_counter() - start) / len(ds.test_images)
    ious, mean = per_class_iou(pred, ds.test_labels, k)
    params = sum(p.numel() for p in net.parameters())
    return {"model": "MONAI U-Net", "encoders": f"none ({side}x{side} input, {params / 1e3:.0f} k parameters)",
            "ious": ious, "miou": mean, "epochs": history.epochs, "best": history.best_epoch + 1, "train_s": seconds,
            "pred_s": pred_s}


# ---------------------------------------------------------------------------------------------------- ScSAM


def run_scsam(ds: Dataset, choice, enc_label: str, use_sam: bool, use_mae: bool, train_cfg, workdir: Path,
              cache_dir: Path) -> dict:
    from cryoseg.pipelines.scsam import ScSAMTrainConfig, predict, train

    settings = ScSAMTrainConfig(ds.class_names, encoders=choice, use_sam=use_sam, use_mae=use_mae, train=train_cfg)
    tag = {(True, True): "fused", (True, False): "sam", (False, True): "mae"}[(use_sam, use_mae)]
    outdir = workdir / f"{ds.name.replace(' ', '_')}-{enc_label.replace(' ', '_')}-{tag}"
    start = time.perf_counter()
    result = train(ds.train_images, ds.train_labels, outdir, settings, cache_dir=cache_dir)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = predict(result.model_dir, ds.test_images, cache_dir=None)  # test slices embedded afresh
    pred_s = (time.perf_counter() - start) / len(ds.test_images)
    ious, mean = per_class_iou(np.asarray(pred.labels.data), ds.test_labels, len(ds.class_names))
    model = {"fused": "ScSAM fused", "sam": "ScSAM SAM only", "mae": "ScSAM MAE only"}[tag]
    return {"model": model, "tag": tag, "encoders": enc_label, "ious": ious, "miou": mean,
            "epochs": result.history.epochs, "best": result.history.best_epoch + 1, "train_s": train_s,
            "pred_s": pred_s, "embed_s": result.seconds.get("embed", float("nan")),
            "epoch_s": statistics.median(result.history.seconds) if result.history.seconds else float("nan")}


def time_epochs(ds: Dataset, choice, train_cfg, repeats: int) -> dict:
    """Seconds of one training epoch (all training slices, the pipeline's batch size), fused model, with the
    embeddings computed once beforehand (cache) and with the encoders run on each batch (no cache); the same head
    steps (forward, loss at slice pixels, backward, AdamW) in both. Medians over `repeats` epochs."""
    import dataclasses as dc

    import torch

    from cryoseg.pipelines.scsam import ScSAMTrainConfig, _scsam_config
    from cryoseg.scsam.encoders import FrozenEncoders
    from cryoseg.scsam.loss import scsam_loss
    from cryoseg.scsam.model import build_head
    from cryoseg.train.data import batch_indices, slices_from_volumes

    settings = ScSAMTrainConfig(ds.class_names, encoders=choice, train=train_cfg)
    slices = slices_from_volumes(ds.train_images, ds.train_labels, axis="z")
    encoders = FrozenEncoders(choice, cache_dir=None)
    start = time.perf_counter()
    emb = encoders.embed(slices.images)
    embed_once = time.perf_counter() - start
    config = _scsam_config(settings, encoders, emb)
    torch.manual_seed(0)
    head = build_head(config, encoders.sam_model)
    head.train()
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    labels = torch.from_numpy(slices.labels.astype(np.int64))
    shape = emb.image_shape

    def head_step(sam, mae, idx):
        out = head(sam, mae)
        out = dc.replace(out, logits=encoders.to_slice(out.logits, shape))
        loss, _ = scsam_loss(out, labels[idx], config)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    def epoch(cached: bool, e: int) -> tuple[float, float]:
        encode = 0.0
        start = time.perf_counter()
        for idx in batch_indices(len(slices), train_cfg.batch_size, 0, e):
            if cached:
                sam, mae = emb.sam[idx], emb.mae[idx]
            else:
                t0 = time.perf_counter()
                fresh = encoders.embed(slices.images[idx])  # no cache_dir: the encoders run
                sam, mae = fresh.sam, fresh.mae
                encode += time.perf_counter() - t0
            head_step(sam, mae, idx)
        return time.perf_counter() - start, encode

    epoch(True, 0)  # warm-up
    epoch(False, 0)
    with_cache, without = [], []
    for e in range(1, repeats + 1):  # interleaved, so a busy spell of the shared machine hits both alike
        with_cache.append(epoch(True, e)[0])
        without.append(epoch(False, e))
    return {"slices": len(slices), "embed_once": embed_once, "cached": statistics.median(with_cache),
            "uncached": statistics.median([t for t, _ in without]),
            "encode": statistics.median([e for _, e in without])}


def real_size_cache(n_slices: int, threads: int, out: Path | None) -> int:
    """The cache target with the encoders a user has: real-size SAM ViT-B and MAE ViT-B architectures (random
    weights, saved to a temporary folder and loaded as weights folders; runtime does not depend on the values), one
    epoch of each kind over `n_slices` ISBI training slices (one batch), after one warm-up of each."""
    import tempfile

    import torch
    from transformers import ViTMAEConfig, ViTMAEModel

    from cryoseg.models.tiny import build_from_config, full_size_config
    from cryoseg.scsam.encoders import EncoderChoice
    from cryoseg.train.config import TrainConfig

    torch.set_num_threads(threads)
    ds = load_isbi(quick=True)
    ds = dataclasses.replace(ds, train_images=[ds.train_images[0][:n_slices]],
                             train_labels=[ds.train_labels[0][:n_slices]])
    with tempfile.TemporaryDirectory() as tmp:
        build_from_config("SamModel", full_size_config("sam-vit-b")).save_pretrained(f"{tmp}/sam")
        ViTMAEModel(ViTMAEConfig()).save_pretrained(f"{tmp}/mae")  # the default config is ViT-B/16 at 224 px
        choice = EncoderChoice("sam-vit-b", "mae-vit-base", sam_weights=f"{tmp}/sam", mae_weights=f"{tmp}/mae")
        t = time_epochs(ds, choice, TrainConfig(epochs=1, batch_size=n_slices), repeats=1)
    ratio = t["uncached"] / t["cached"]
    lines = ["| encoders | training slices | embed all once (s) | epoch with cache (s) | epoch without cache (s) | "
             "without / with | >= 5x |", "|---|---:|---:|---:|---:|---:|---|",
             f"| SAM ViT-B + MAE ViT-B (real size, random weights) | {t['slices']} | {t['embed_once']:.1f} | "
             f"{t['cached']:.3f} | {t['uncached']:.1f} | {ratio:.0f}x | {'yes' if ratio >= 5 else 'no'} |"]
    print("\n".join(lines))
    if out:
        out.write_text("\n".join(lines) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------------- report


def over_seeds(run, train_cfg, seeds: int) -> dict:
    """`run(train_cfg)` once per training seed 0..seeds-1 (the seed draws the validation split, the batches and the
    initial weights), as one row: the medians of the per-class IoUs, the mIoU and the seconds; "mious" and "bests"
    keep every seed's mIoU and best epoch."""
    rows = [run(dataclasses.replace(train_cfg, seed=s)) for s in range(seeds)]
    out = dict(rows[0])
    out["ious"] = [float(np.median(v)) for v in zip(*(r["ious"] for r in rows))]
    out["mious"] = [r["miou"] for r in rows]
    out["bests"] = [r["best"] for r in rows]
    del out["best"]  # seed 0's alone; "bests" holds every seed's
    for key in ("miou", "train_s", "pred_s"):
        out[key] = float(np.median([r[key] for r in rows]))
    return out


def fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def miou_table(ds: Dataset, rows: list[dict]) -> list[str]:
    seeded = len(rows[0]["mious"]) > 1
    head = ["model", "encoders", *ds.class_names, "mIoU", *(["mIoU per seed"] if seeded else []), "epochs (best)",
            "train s", "predict s/slice"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        per_seed = [" / ".join(fmt(v) for v in r["mious"])] if seeded else []
        lines.append("| " + " | ".join([r["model"], r["encoders"], *(fmt(v) for v in r["ious"]), f"**{fmt(r['miou'])}**",
                                        *per_seed, f"{r['epochs']} ({'/'.join(map(str, r['bests']))})",
                                        fmt(r["train_s"], 1), fmt(r["pred_s"], 4)]) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer slices, epochs and pretraining")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 120, quick 8)")
    parser.add_argument("--mae-epochs", type=int, default=None, help="MAE pretraining epochs (default 300, quick 10)")
    parser.add_argument("--only", choices=["isbi", "sim", "deepfinder"], action="append", default=None)
    parser.add_argument("--encoders", choices=list(ENCODER_SETS), action="append", default=None,
                        help="encoder sets (default: tiny-random and tiny-pretrained-mae)")
    parser.add_argument("--unet-input", type=int, default=TINY_INPUT,
                        help=f"side of the U-Net's resized input (default {TINY_INPUT}, the tiny encoders'; compact-sam "
                             "sees 256)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train every row with seeds 0..N-1 and report medians (default 1: seed 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="markdown file for the tables")
    parser.add_argument("--real-size-cache", type=int, default=None, metavar="N",
                        help="only time epochs with and without the embedding cache for real-size SAM ViT-B + MAE "
                             "ViT-B (random weights) on N ISBI slices")
    args = parser.parse_args(argv)
    if args.real_size_cache:
        return real_size_cache(args.real_size_cache, args.threads, args.out)

    import torch

    from cryoseg.scsam.encoders import EncoderChoice
    from cryoseg.scsam.pretrain import MAEPretrainConfig, pretrain_mae
    from cryoseg.train.config import TrainConfig

    logging.basicConfig(level=logging.WARNING)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (8 if args.quick else 120)
    mae_epochs = args.mae_epochs or (10 if args.quick else 300)
    # patience = epochs: every model runs the same number of optimizer steps; the best epoch is kept by validation
    train_cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, patience=epochs, seed=0)
    val_fraction = 0.2
    t_all = time.perf_counter()
    loaders = {"isbi": load_isbi, "sim": load_sim, "deepfinder": load_deepfinder}
    wanted = args.only or list(loaders)
    datasets = [loaders[name](args.quick) for name in wanted]
    out: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    work = Path(tempfile.mkdtemp(prefix="bench_scsam-"))
    # MAE pretrained on unlabelled slices: ISBI training slices, a second simulated tomogram (seed 1), DeepFinder
    # tomo4 + tomo5 (never a test slice)
    unlabelled = [v for ds in datasets for v in ds.unlabelled]
    mae_cfg = MAEPretrainConfig(base="tiny-mae", epochs=mae_epochs, batch_size=16, lr=1.5e-3, warmup_epochs=2,
                                slices=32 if args.quick else 64, seed=0)
    start = time.perf_counter()
    mae_run = pretrain_mae(unlabelled, mae_cfg, work / "mae")
    mae_s = time.perf_counter() - start
    rss_after_mae = peak_rss_mb()
    pretrained = str(work / "mae" / "encoder")
    encoder_sets = [(ENCODER_SETS[key], EncoderChoice(*ENCODER_MODELS[key], mae_weights=pretrained if key != "tiny-random"
                                                      else None))
                    for key in args.encoders or ["tiny-random", "tiny-pretrained-mae"]]

    emit(f"# ScSAM benchmark ({'quick' if args.quick else 'full'})")
    emit()
    emit(f"Command: `python benchmarks/bench_scsam.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
         f"{platform.machine()}, {os.cpu_count()} CPUs (shared), no GPU, torch {torch.__version__} with "
         f"{args.threads} threads; load average at start {os.getloadavg()[0]:.2f}.")
    emit()
    emit(f"Training (every row): {epochs} epochs, batch 8, AdamW lr 1e-3, weight decay 1e-4, gradient clip 1.0, "
         f"{'seed 0' if args.seeds == 1 else f'seeds 0-{args.seeds - 1} (the median of each row is shown)'}, "
         f"no early stopping (patience = epochs), 20 % of the training slices held out to keep the best "
         f"epoch by validation mIoU (the same split and batches for the U-Net), dihedral augmentation. Encoders: "
         f"\"tiny random\" = tiny-sam + tiny-mae (seeded random weights, 64 px input, width 32, 2 layers); "
         f"\"tiny SAM + pretrained MAE\" = tiny-sam + tiny-mae pretrained by `pretrain_mae`; \"compact-sam + "
         f"pretrained MAE\" = cryoseg's shipped compact-sam (trained on simulated tomograms; 256 px input, 32x32 "
         f"tokens of 64 channels) + that MAE. The MAE's pretraining "
         f"({mae_epochs} epochs, {sum(len(v) for v in unlabelled)} unlabelled slices offered, at most "
         f"{mae_cfg.slices} per volume: the ISBI training slices, a second simulated tomogram (seed 1), DeepFinder "
         f"tomo4 + tomo5; {mae_s:.0f} s, reconstruction loss {mae_run.history[0]:.3f} -> "
         f"{mae_run.history[-1]:.3f}). U-Net: MONAI `UNet(spatial_dims=2, channels=(16, 32, 64, 128), "
         f"strides=(2, 2, 2), num_res_units=2)`, slices resized to {args.unet_input}x{args.unet_input}, logits resized "
         f"back to the slice, `DiceCELoss(softmax=True)` at the slice's pixels.")
    emit()

    results: dict[str, list[dict]] = {}
    timings: dict[str, dict] = {}
    rss: dict[str, float] = {}
    for ds in datasets:
        rows = []
        for label, choice in encoder_sets:
            cache = work / f"cache-{label.replace(' ', '_')}"
            for use_sam, use_mae in ((True, True), (True, False), (False, True)):
                rows.append(over_seeds(lambda cfg: run_scsam(ds, choice, label, use_sam, use_mae, cfg, work, cache),
                                       train_cfg, args.seeds))
                print(f"  [{time.perf_counter() - t_all:.0f} s] {ds.name} {rows[-1]['model']} {label}: "
                      f"mIoU {rows[-1]['miou']:.3f} (seeds {rows[-1]['mious']})", file=sys.stderr, flush=True)
        rows.append(over_seeds(lambda cfg: train_unet(ds, cfg, val_fraction, args.unet_input), train_cfg, args.seeds))
        print(f"  [{time.perf_counter() - t_all:.0f} s] {ds.name} U-Net: mIoU {rows[-1]['miou']:.3f} "
              f"(seeds {rows[-1]['mious']})", file=sys.stderr, flush=True)
        results[ds.name] = rows
        timings[ds.name] = time_epochs(ds, encoder_sets[0][1], train_cfg, repeats=5)
        rss[ds.name] = peak_rss_mb()

    emit("## mIoU on held-out slices")
    for ds in datasets:
        emit()
        emit(f"### {ds.name}: {ds.note}")
        emit()
        for line in miou_table(ds, results[ds.name]):
            emit(line)
    emit()
    emit("\"train s\" includes embedding the training slices (the fused row of each encoder set embeds them; its "
         "ablations read the embeddings from the cache, so their train s is lower). \"predict s/slice\": "
         "`scsam.predict` on the test stack (loading the model and both encoders, embedding each test slice, the "
         "head), divided by the slices; for the U-Net the network alone.")
    emit()
    emit(f"## Seconds per training epoch, with and without the embedding cache (fused, {encoder_sets[0][0]})")
    emit()
    emit("| dataset | training slices | embed all once (s) | epoch with cache (s) | epoch without cache (s) | of which "
         "encoders (s) | without / with | pipeline epoch incl. validation (s) | predict s/slice | peak RSS so far (MB) |")
    emit("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ds in datasets:
        t = timings[ds.name]
        fused = results[ds.name][0]
        emit(f"| {ds.name} | {t['slices']} | {fmt(t['embed_once'], 3)} | {fmt(t['cached'], 3)} | "
             f"{fmt(t['uncached'], 3)} | {fmt(t['encode'], 3)} | {t['uncached'] / t['cached']:.2f}x | "
             f"{fmt(fused['epoch_s'], 3)} | {fmt(fused['pred_s'], 4)} | {rss[ds.name]:.0f} |")
    emit()
    emit(f"Medians of 5 epochs of each kind, interleaved, after one warm-up epoch of each, the same head steps "
         f"(forward, loss at slice pixels, backward, AdamW) in both columns; \"without cache\" runs `FrozenEncoders.embed` (no cache folder) on every batch's "
         f"slices. Peak RSS is the whole process's (`getrusage`), cumulative in dataset order; "
         f"{rss_after_mae:.0f} MB after MAE pretraining. Real-size SAM ViT-B is not timed here: "
         f"`bench_models.py` measured its image encoder at 44 s per 1024² slice on this machine.")
    emit()
    emit("## Targets")
    emit()
    emit("| target | dataset | encoders | numbers | met |")
    emit("|---|---|---|---|---|")
    for ds in datasets:
        rows = results[ds.name]
        for label, _ in encoder_sets:
            by = {r["tag"]: r["miou"] for r in rows if r.get("encoders") == label}
            ok = by["fused"] >= max(by["sam"], by["mae"])
            emit(f"| fused >= both single-encoder ablations | {ds.name} | {label} | fused {by['fused']:.3f}, "
                 f"SAM only {by['sam']:.3f}, MAE only {by['mae']:.3f} | {'yes' if ok else 'no'} |")
    if "ISBI 2012" in results:
        rows = results["ISBI 2012"]
        unet = rows[-1]["miou"]
        for label, _ in encoder_sets:
            fused = next(r["miou"] for r in rows if r.get("tag") == "fused" and r["encoders"] == label)
            ratio = fused / unet if unet > 0 else float("nan")
            emit(f"| ISBI fused >= 0.9 x U-Net mIoU | ISBI 2012 | {label} | fused {fused:.3f}, U-Net {unet:.3f}, "
                 f"ratio {ratio:.2f} | {'yes' if ratio >= 0.9 else 'no'} |")
    for ds in datasets:
        t = timings[ds.name]
        r = t["uncached"] / t["cached"]
        emit(f"| cache makes an epoch >= 5x faster | {ds.name} | {encoder_sets[0][0]} | {t['uncached']:.3f} s / "
             f"{t['cached']:.3f} s = {r:.2f}x | {'yes' if r >= 5 else 'no'} |")
    emit()
    emit(f"Total {time.perf_counter() - t_all:.0f} s wall; peak RSS {peak_rss_mb():.0f} MB.")
    if args.out:
        args.out.write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
