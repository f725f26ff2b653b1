"""`cryoseg scsam ...`: the ScSAM command group (supervised segmentation with frozen SAM and MAE encoders).

Commands:
- `pretrain-mae`: self-supervised MAE pretraining on the user's own unlabelled volumes (`cryoseg.scsam.pretrain`).

Each command is a function decorated with `@scsam_app.command(NAME)` in this module; `register` adds the group to
the main app. Thin: parse, call the library, report. Only options the user set are forwarded; every default
lives in the library's config dataclasses and is quoted in the help from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InputError
from ..scsam.pretrain import CHECKPOINT_DIR, ENCODER_DIR, MAEPretrainConfig, mae_names
from .common import NAN_POLICY_HELP, OVERWRITE_HELP, check_output_dir, say
from .parse import parse_voxel_size

scsam_app = typer.Typer(
    name="scsam",
    help="ScSAM: segmentation with frozen SAM and MAE encoders; MAE pretraining on your own data.",
    no_args_is_help=True,
)

# The library's defaults, quoted in the help (the CLI forwards only what the user sets).
_MAE = MAEPretrainConfig()

VOLUME_HELP = "volumes (.mrc .rec .map .st .tif .tiff .zarr .ome.zarr)"
VOXEL_SIZE_HELP = "Override the headers: Å, one value or z,y,x."
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default: auto)."


def _set(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _read_volumes(paths: list[Path], voxel_size: str | None, nan_policy: str | None) -> list[Any]:
    from ..io.volumes import read_volume

    size = parse_voxel_size(voxel_size) if voxel_size is not None else None
    return [read_volume(p, voxel_size=size, **_set({"nan_policy": nan_policy})) for p in paths]


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
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the output folder's checkpoint (same "
                                "settings and volumes; --epochs may grow)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    voxel_size: str | None = typer.Option(None, "--voxel-size", help=VOXEL_SIZE_HELP),
    nan_policy: str | None = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP),
) -> None:
    """Pretrain an MAE on unlabelled slices of your volumes (self-supervised); its encoder feeds ScSAM and
    `pick --features`."""
    from ..scsam.pretrain import pretrain_mae as run

    config = MAEPretrainConfig(**_set({
        "base": base, "epochs": epochs, "batch_size": batch_size, "lr": lr, "warmup_epochs": warmup_epochs,
        "mask_ratio": mask_ratio, "slices": slices, "input_size": input_size, "seed": seed}))
    if not volumes:
        raise InputError("give at least one volume")
    # a resumed run writes into its own folder; anything else needs an empty one or --overwrite
    check_output_dir(output, overwrite or (resume and (output / CHECKPOINT_DIR).is_dir()), volumes)
    vols = _read_volumes(volumes, voxel_size, nan_policy)
    result = run(vols, config, output, resume=resume, **_set({"device": device}))
    losses = f"loss {result.history[0]:.4f} -> {result.history[-1]:.4f}" if result.history else "no epochs"
    resumed = f" (resumed at epoch {result.start_epoch})" if result.start_epoch else ""
    say(f"{len(result.history)} epoch(s){resumed}, {losses}; wrote {output}. Use the encoder with "
        f"--features {result.feature_extractor} --feature-weights {output / ENCODER_DIR}")


def register(app: typer.Typer) -> None:
    app.add_typer(scsam_app, name="scsam")
