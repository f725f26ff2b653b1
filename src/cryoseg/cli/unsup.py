"""`cryoseg unsup ...`: the unsupervised method (no annotation at all).

Commands:
- `pseudo-labels`: membrane and particle pseudo-labels on a few slabs (`cryoseg.pipelines.unsup.pseudo_labels`).
- `train`: a student U-Net trained on a pseudo-label folder (`cryoseg.pipelines.unsup.train_student`).
- `segment`: a whole tomogram segmented by the student (`cryoseg.pipelines.unsup.segment`).
- `run`: all three.

Thin: parse, check inputs and outputs, call the library, report. Only options the user set are forwarded; the
defaults live in the library's config dataclasses and are quoted in the help from there.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from ..pipelines.unsup import PseudoLabelConfig, StudentTrainConfig
from ..unsup.labels import LabelConfig
from .common import DEVICE_HELP, NAN_POLICY_HELP, OVERWRITE_HELP, check_output_dir, only_set, read_volumes, say
from .parse import parse_numbers

unsup_app = typer.Typer(
    name="unsup",
    help="Unsupervised segmentation: attention features -> pseudo-labels -> a trained student network.",
    no_args_is_help=True,
)

_PSEUDO = PseudoLabelConfig()
_STUDENT = StudentTrainConfig()
_LABELS = LabelConfig()

TOMOGRAMS = typer.Argument(..., help="Tomograms (.mrc .rec .map .st .tif .tiff .zarr .ome.zarr).")
SLABS = typer.Option(None, "--slab", help="A slab to pseudo-label, TOMOGRAM:START:STOP (z, stop excluded; TOMOGRAM "
                     "is a file name, its name without extension, or its index); repeat for several. Default: "
                     f"{_PSEUDO.n_slabs} slabs of {_PSEUDO.slab_thickness} slices chosen by structure content.")
N_SLABS = typer.Option(None, "--n-slabs", help=f"Slabs to choose automatically (default {_PSEUDO.n_slabs}).")
THICKNESS = typer.Option(None, "--slab-thickness", help="Slices per automatically chosen slab "
                         f"(default {_PSEUDO.slab_thickness}).")
FEATURES = typer.Option(None, "--features", help="Attention source: filterbank (weight-free), "
                        f"stable-diffusion-v1-4 or tiny-sd (default {_PSEUDO.features}).")
WEIGHTS = typer.Option(None, "--weights", help="Diffusion weights: a diffusers pipeline folder or hub id "
                       "(default: the hub cache).")
CANVAS = typer.Option(None, "--canvas", help="Side in pixels each slice is resized to before tiling "
                      f"(default {_PSEUDO.maps.canvas.canvas}).")
TILE = typer.Option(None, "--tile", help=f"Tile side in pixels; the canvas is a multiple of it "
                    f"(default {_PSEUDO.maps.canvas.tile}).")
DIAMETER = typer.Option(None, "--particle-diameter", help="Smallest,largest particle diameter in nm (default "
                        f"{_LABELS.particle_diameter_nm[0]:g},{_LABELS.particle_diameter_nm[1]:g}).")
EPOCHS = typer.Option(None, "--epochs", help=f"Most training epochs (default {_STUDENT.train.epochs}).")
PATIENCE = typer.Option(None, "--patience", help="Stop after this many epochs without a better validation Dice "
                        f"(default {_STUDENT.train.patience}).")
LR = typer.Option(None, "--lr", help=f"AdamW learning rate (default {_STUDENT.train.lr:g}).")
CROPS = typer.Option(None, "--crops-per-epoch", help=f"Random crops per epoch (default {_STUDENT.crops_per_epoch}).")
PATCH = typer.Option(None, "--patch", help=f"Training crop and sliding window side in pixels "
                     f"(default {_STUDENT.student.patch}).")
SEED = typer.Option(None, "--seed", help=f"Random seed (default {_STUDENT.train.seed}).")
DEVICE = typer.Option(None, "--device", help=DEVICE_HELP)
OVERWRITE = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)
VOXEL_SIZE = typer.Option(None, "--voxel-size", help="Override the headers: Å, one value or z,y,x.")
NAN_POLICY = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP)



def _label_config(diameter: str | None) -> LabelConfig:
    if diameter is None:
        return _LABELS
    values = parse_numbers(diameter, "--particle-diameter", (2,), positive=True, meaning="smallest,largest in nm")
    return replace(_LABELS, particle_diameter_nm=(values[0], values[1]))


def _pseudo_config(features: str | None, weights: str | None, n_slabs: int | None, thickness: int | None,
                   diameter: str | None, canvas: int | None, tile: int | None) -> PseudoLabelConfig:
    sizes = replace(_PSEUDO.maps.canvas, **only_set({"canvas": canvas, "tile": tile}))
    return replace(_PSEUDO, labels=_label_config(diameter), maps=replace(_PSEUDO.maps, canvas=sizes), **only_set({
        "features": features, "weights": weights, "n_slabs": n_slabs, "slab_thickness": thickness}))


def _slabs(texts: list[str] | None, paths: list[Path]) -> list[Any] | None:
    from ..pipelines.output import tomogram_name
    from ..unsup.slabs import parse_slab

    if not texts:
        return None
    names = [(p.name, tomogram_name(p), str(p)) for p in paths]
    return [parse_slab(text, names) for text in texts]


def _train_config(epochs: int | None, patience: int | None, lr: float | None, crops: int | None,
                  patch: int | None, seed: int | None) -> StudentTrainConfig:
    train = replace(_STUDENT.train, **only_set({"epochs": epochs, "patience": patience, "lr": lr, "seed": seed}))
    student = replace(_STUDENT.student, **only_set({"patch": patch}))
    return replace(_STUDENT, train=train, student=student, **only_set({"crops_per_epoch": crops}))


@unsup_app.command("pseudo-labels")
def pseudo_labels_command(
    tomograms: list[Path] = TOMOGRAMS,
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (slabs/, report.json)."),
    slab: list[str] | None = SLABS,
    n_slabs: int | None = N_SLABS,
    slab_thickness: int | None = THICKNESS,
    features: str | None = FEATURES,
    weights: str | None = WEIGHTS,
    canvas: int | None = CANVAS,
    tile: int | None = TILE,
    particle_diameter: str | None = DIAMETER,
    device: str | None = DEVICE,
    overwrite: bool = OVERWRITE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Pseudo-label membranes and particles on a few slabs, from attention features and spectral maps."""
    from ..pipelines.unsup import pseudo_labels

    config = _pseudo_config(features, weights, n_slabs, slab_thickness, particle_diameter, canvas, tile)
    slabs = _slabs(slab, tomograms)
    check_output_dir(output, overwrite, tomograms)
    volumes = read_volumes(tomograms, voxel_size, nan_policy)
    result = pseudo_labels(volumes, slabs, config, **only_set({"device": device}))
    result.save(output, tomograms)
    counts = "; ".join(f"{result.slab_name(s)}: {s.counts()['particles']} particles, "
                       f"{s.counts()['membrane_voxels']} membrane voxels" for s in result.slabs)
    say(f"{counts}; wrote {output}")


@unsup_app.command("train")
def train_command(
    pseudo: Path = typer.Argument(..., help="Folder written by `cryoseg unsup pseudo-labels`."),
    output: Path = typer.Option(..., "--output", "-o", help="Model folder to write."),
    epochs: int | None = EPOCHS,
    patience: int | None = PATIENCE,
    lr: float | None = LR,
    crops_per_epoch: int | None = CROPS,
    patch: int | None = PATCH,
    seed: int | None = SEED,
    device: str | None = DEVICE,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted training of this output."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Train the student U-Net on pseudo-labels (cross-entropy plus Dice)."""
    from ..pipelines.unsup import PseudoLabels, require_student_packages, train_student

    require_student_packages()
    config = _train_config(epochs, patience, lr, crops_per_epoch, patch, seed)
    check_output_dir(output, overwrite or resume, [pseudo])
    result = train_student(PseudoLabels.load(pseudo), output, config, resume=resume, **only_set({"device": device}))
    h = result.history
    say(f"{h.epochs} epoch(s), best {h.best_epoch + 1}: Dice {result.val_dice:.3f} against held-out pseudo-labels; "
        f"wrote {output}")


@unsup_app.command("segment")
def segment_command(
    model: Path = typer.Argument(..., help="Model folder written by `cryoseg unsup train`."),
    tomogram: Path = typer.Argument(..., help="The tomogram to segment."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (labels.mrc, particles.*, preview.png, "
                                                            "report.json)."),
    particle_diameter: str | None = DIAMETER,
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write one probability map per class."),
    device: str | None = DEVICE,
    overwrite: bool = OVERWRITE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Segment a whole tomogram into membrane and particles with a trained student."""
    from ..pipelines.unsup import require_student_packages, segment

    require_student_packages()
    labels = _label_config(particle_diameter)
    check_output_dir(output, overwrite, [model, tomogram])
    (volume,) = read_volumes([tomogram], voxel_size, nan_policy)
    result = segment(model, volume, labels, probabilities=probabilities, **only_set({"device": device}))
    result.save(output, [model])
    counts = result.counts()
    say(f"{counts['particles']} particles, {counts['membrane_voxels']} membrane voxels; wrote {output}")


@unsup_app.command("run")
def run_command(
    tomograms: list[Path] = TOMOGRAMS,
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (pseudo-labels/, model/, "
                                                            "segment/<tomogram>/)."),
    slab: list[str] | None = SLABS,
    n_slabs: int | None = N_SLABS,
    slab_thickness: int | None = THICKNESS,
    features: str | None = FEATURES,
    weights: str | None = WEIGHTS,
    canvas: int | None = CANVAS,
    tile: int | None = TILE,
    particle_diameter: str | None = DIAMETER,
    epochs: int | None = EPOCHS,
    patience: int | None = PATIENCE,
    lr: float | None = LR,
    crops_per_epoch: int | None = CROPS,
    patch: int | None = PATCH,
    seed: int | None = SEED,
    device: str | None = DEVICE,
    overwrite: bool = OVERWRITE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Pseudo-labels, student training and segmentation of every tomogram, in one go."""
    from ..pipelines.unsup import require_student_packages, run

    require_student_packages()
    pseudo_config = _pseudo_config(features, weights, n_slabs, slab_thickness, particle_diameter, canvas, tile)
    train_config = _train_config(epochs, patience, lr, crops_per_epoch, patch, seed)
    slabs = _slabs(slab, tomograms)
    check_output_dir(output, overwrite, tomograms)
    volumes = read_volumes(tomograms, voxel_size, nan_policy)
    result = run(volumes, output, slabs, pseudo_config, train_config, **only_set({"device": device}))
    say(f"pseudo-labels on {len(result.pseudo.slabs)} slab(s), student Dice {result.training.val_dice:.3f}; "
        f"segmented {len(result.segmentations)} tomogram(s); wrote {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(unsup_app, name="unsup")
