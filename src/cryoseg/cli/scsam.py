"""`cryoseg scsam ...`: the ScSAM command group (supervised segmentation with frozen SAM and MAE encoders).

Commands:
- `pretrain-mae`: self-supervised MAE pretraining on the user's own unlabelled volumes (`cryoseg.scsam.pretrain`).
- `train`: train ScSAM's light modules on labelled volumes or stacks (`cryoseg.pipelines.scsam.train`).
- `predict`: segment every slice of a volume with a trained model (`cryoseg.pipelines.scsam.predict`).

Each command is a function decorated with `@scsam_app.command(NAME)` in this module; `register` adds the group to
the main app. Thin: parse, call the library, report. Only options the user set are forwarded; every default
lives in the library's config dataclasses and is quoted in the help from there.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..pipelines.scsam import ScSAMTrainConfig
from ..scsam.encoders import EncoderChoice
from ..scsam.pretrain import CHECKPOINT_DIR, ENCODER_DIR, MAEPretrainConfig, mae_names
from ..train.config import TrainConfig
from .common import DEVICE_HELP, NAN_POLICY_HELP, OVERWRITE_HELP, check_output_dir, only_set, read_volumes, say

scsam_app = typer.Typer(
    name="scsam",
    help="ScSAM: segmentation with frozen SAM and MAE encoders; MAE pretraining on your own data.",
    no_args_is_help=True,
)

# The library's defaults, quoted in the help (the CLI forwards only what the user sets).
_MAE = MAEPretrainConfig()
_ENC = EncoderChoice()
_TRAIN = TrainConfig()
_SCSAM = ScSAMTrainConfig(("class",))

VOLUME_HELP = "volumes (.mrc .rec .map .st .tif .tiff .zarr .ome.zarr)"
VOXEL_SIZE_HELP = "Override the headers: Å, one value or z,y,x."

# Options every scsam command shares (Typer reads them as defaults; one definition each).
DEVICE = typer.Option(None, "--device", help=DEVICE_HELP)
CACHE_DIR = typer.Option(None, "--cache-dir", help="Embedding cache folder (reused across runs).")
OVERWRITE = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)
VOXEL_SIZE = typer.Option(None, "--voxel-size", help=VOXEL_SIZE_HELP)
NAN_POLICY = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP)




@scsam_app.command("pretrain-mae")
def pretrain_mae(
    volumes: list[Path] = typer.Argument(..., help=f"Unlabelled {VOLUME_HELP}."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (encoder/, model/, preview.png, "
                                                            "report.json)."),
    base: str | None = typer.Option(None, "--base", help="Architecture to train from scratch "
                                    f"({', '.join(mae_names())}) or an MAE folder to continue from "
                                    f"(default {_MAE.base})."),
    epochs: int | None = typer.Option(None, "--epochs", help=f"Passes over the slices (default {_MAE.epochs})."),
    batch_size: int | None = typer.Option(None, "--batch-size", help=f"Crops per step (default {_MAE.batch_size})."),
    lr: float | None = typer.Option(None, "--lr", help=f"AdamW learning rate (default {_MAE.lr:g})."),
    warmup_epochs: int | None = typer.Option(None, "--warmup-epochs", help="Epochs of linear learning-rate "
                                             f"warmup (default {_MAE.warmup_epochs})."),
    mask_ratio: float | None = typer.Option(None, "--mask-ratio", help="Fraction of patches hidden "
                                            f"(default {_MAE.mask_ratio:g})."),
    slices: int | None = typer.Option(None, "--slices", help="z slices per volume, evenly spaced "
                                      f"(default {_MAE.slices})."),
    input_size: int | None = typer.Option(None, "--input-size", help="Model input side in pixels, a multiple "
                                          "of the patch size (default: the base's)."),
    seed: int | None = typer.Option(None, "--seed", help=f"Random seed (default {_MAE.seed})."),
    device: str | None = DEVICE,
    resume: bool = typer.Option(False, "--resume", help="Continue from the output folder's checkpoint (same "
                                "settings and volumes; --epochs may grow)."),
    overwrite: bool = OVERWRITE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Pretrain an MAE on unlabelled slices of your volumes (self-supervised); its encoder feeds ScSAM and
    `pick --features`."""
    from ..scsam.pretrain import pretrain_mae as run

    config = MAEPretrainConfig(**only_set({
        "base": base, "epochs": epochs, "batch_size": batch_size, "lr": lr, "warmup_epochs": warmup_epochs,
        "mask_ratio": mask_ratio, "slices": slices, "input_size": input_size, "seed": seed}))
    if not volumes:
        raise InputError("give at least one volume")
    # a resumed run writes into its own folder; anything else needs an empty one or --overwrite
    check_output_dir(output, overwrite or (resume and (output / CHECKPOINT_DIR).is_dir()), volumes)
    vols = read_volumes(volumes, voxel_size, nan_policy)
    result = run(vols, config, output, resume=resume, **only_set({"device": device}))
    losses = f"loss {result.history[0]:.4f} -> {result.history[-1]:.4f}" if result.history else "no epochs"
    resumed = f" (resumed at epoch {result.start_epoch})" if result.start_epoch else ""
    say(f"{len(result.history)} epoch(s){resumed}, {losses}; wrote {output}. Use the encoder with "
        f"--features {result.feature_extractor} --feature-weights {output / ENCODER_DIR}")


def _slice_range(text: str) -> slice:
    """ "START:STOP" (z slices, stop excluded) from the command line."""
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise InputError(f"--slices must be START:STOP (z slices, stop excluded), got {text!r}") from None


@scsam_app.command("train")
def train(
    images: list[Path] = typer.Argument(..., help=f"Image {VOLUME_HELP} or 2D stacks."),
    labels: list[Path] = typer.Option(..., "--labels", "-l", help="Label volume of each image, in the same "
                                      "order (0 background, k = the k-th class)."),
    classes: str = typer.Option(..., "--classes", help="Class names of labels 1, 2, ..., comma-separated."),
    output: Path = typer.Option(..., "--output", "-o", help="Model folder to write."),
    sam: str | None = typer.Option(None, "--sam", help=f"SAM model (default {_ENC.sam})."),
    mae: str | None = typer.Option(None, "--mae", help=f"MAE model (default {_ENC.mae})."),
    sam_weights: str | None = typer.Option(None, "--sam-weights", help="SAM weights: folder, hub id or .pth."),
    mae_weights: str | None = typer.Option(None, "--mae-weights", help="MAE weights, e.g. the encoder/ folder of "
                                           "`cryoseg scsam pretrain-mae`."),
    use_sam: bool = typer.Option(_SCSAM.use_sam, "--sam-features/--no-sam-features",
                                 help="Feed the SAM embedding (off: the MAE-only ablation)."),
    use_mae: bool = typer.Option(_SCSAM.use_mae, "--mae-features/--no-mae-features",
                                 help="Feed the MAE embedding (off: the SAM-only ablation)."),
    slices: str | None = typer.Option(None, "--slices", help="Train on z slices START:STOP only (default: all)."),
    epochs: int | None = typer.Option(None, "--epochs", help=f"Most epochs (default {_TRAIN.epochs})."),
    batch_size: int | None = typer.Option(None, "--batch-size", help=f"Slices per step (default {_TRAIN.batch_size})."),
    lr: float | None = typer.Option(None, "--lr", help=f"AdamW learning rate (default {_TRAIN.lr:g})."),
    patience: int | None = typer.Option(None, "--patience", help="Stop after this many epochs without a better "
                                        f"validation mIoU (default {_TRAIN.patience})."),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Share of slices held out for "
                                              f"validation (default {_SCSAM.val_fraction:g})."),
    augment: bool = typer.Option(_SCSAM.augment, "--augment/--no-augment", help="Dihedral augmentation of square "
                                 "slices."),
    seed: int | None = typer.Option(None, "--seed", help=f"Random seed (default {_TRAIN.seed})."),
    device: str | None = DEVICE,
    cache_dir: Path | None = CACHE_DIR,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training of this output."),
    overwrite: bool = OVERWRITE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Train ScSAM on labelled slices: frozen SAM and MAE encoders, trained fusion, class prompts and decoder."""
    from ..io.volumes import read_volume
    from ..pipelines.scsam import train as run

    if len(labels) != len(images):
        raise InputError(f"give one --labels volume per image: {len(images)} image(s), {len(labels)} label file(s)")
    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    settings = ScSAMTrainConfig(
        names, EncoderChoice(**only_set({"sam": sam, "mae": mae, "sam_weights": sam_weights,
                                         "mae_weights": mae_weights})),
        use_sam=use_sam, use_mae=use_mae, augment=augment,
        train=TrainConfig(**only_set({"epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
                                  "seed": seed})),
        **only_set({"val_fraction": val_fraction}))
    z = _slice_range(slices) if slices is not None else slice(None)
    check_output_dir(output, overwrite or resume, [*images, *labels])
    vols = [v.data[z] for v in read_volumes(images, voxel_size, nan_policy)]
    labs = [read_volume(p).data[z] for p in labels]
    result = run(vols, labs, output, settings, resume=resume, **only_set({"device": device, "cache_dir": cache_dir}))
    h = result.history
    say(f"{h.epochs} epoch(s), best {h.best_epoch + 1}: validation mIoU {result.val_miou:.3f}; "
        f"embedding {result.seconds['embed']:.1f} s, training {result.seconds['train']:.1f} s; wrote {output}")


@scsam_app.command("predict")
def predict(
    model: Path = typer.Argument(..., help="Model folder written by `cryoseg scsam train`."),
    volume: Path = typer.Argument(..., help=f"The volume to segment: one of the {VOLUME_HELP}."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (labels.mrc, preview.png, report.json)."),
    views: str = typer.Option("z", "--views", help="Views segmented slice by slice and fused, e.g. z or z,y,x."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write one probability map per class."),
    device: str | None = DEVICE,
    cache_dir: Path | None = CACHE_DIR,
    overwrite: bool = OVERWRITE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Segment every slice of a volume into the model's classes (no prompt needed)."""
    from ..pipelines.scsam import predict as run

    check_output_dir(output, overwrite, [model, volume])
    (vol,) = read_volumes([volume], voxel_size, nan_policy)
    result = run(model, vol, views=tuple(v.strip() for v in views.split(",") if v.strip()),
                 probabilities=probabilities, **only_set({"device": device, "cache_dir": cache_dir}))
    files = result.save(output, inputs=[volume])
    counts = ", ".join(f"{name} {int((result.labels.data == k).sum())}" for k, name in enumerate(result.class_names, 1))
    say(f"voxels per class: {counts}; wrote {len(files)} files to {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(scsam_app, name="scsam")
