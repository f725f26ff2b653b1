"""`cryoseg train ...`: cryoseg's own compact models, trained on the simulator.

Commands:
- `segmenter`: compact-sam, a promptable segmenter (`cryoseg.pipelines.compact.train_segmenter`).
- `features`: compact-features, a dense feature extractor (`cryoseg.pipelines.compact_features.train_features`).
`--ship` puts the result into the package as the weights the model loads by default.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..pipelines.compact import CompactTrainConfig
from ..pipelines.compact_features import FeatureTrainConfig
from ..train.scenes import SceneTrainConfig
from .common import OVERWRITE_HELP, check_output_dir, only_set, say

train_app = typer.Typer(name="train", help="Train cryoseg's own compact models on simulated tomograms.",
                        no_args_is_help=True)

_SEGMENTER = CompactTrainConfig()
_FEATURES = FeatureTrainConfig()
SHIP_HELP = "Copy the trained model into the installed package as the model's default weights (for cryoseg's developers)."

# options both commands take (those that quote a default take the command's defaults)
OUTPUT = typer.Option(..., "--output", "-o", help="Folder to write (model/, curves.png, checkpoint.pt).")
TEMPLATES = typer.Option(None, "--templates", help="Folder of MRC density maps to draw particle kinds from, besides "
                                                   "the built-in shapes.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: a GPU when there is one, else the "
                                             "CPU).")
RESUME = typer.Option(False, "--resume", help="Continue an interrupted training of this output.")
SHIP = typer.Option(False, "--ship", help=SHIP_HELP)
OVERWRITE = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)


def _epochs(d: SceneTrainConfig) -> Any:
    return typer.Option(None, "--epochs", help=f"Epochs (default {d.epochs}); each simulates {d.scenes} new "
                                               "tomograms.")


def _batch_size(d: SceneTrainConfig) -> Any:
    return typer.Option(None, "--batch-size", help=f"Slices per batch (default {d.batch_size}).")


def _lr(d: SceneTrainConfig) -> Any:
    return typer.Option(None, "--lr", help=f"Learning rate (default {d.lr:g}).")


def _seed(d: SceneTrainConfig) -> Any:
    return typer.Option(None, "--seed", help=f"Seed of the scenes and weights (default {d.seed}).")


def _shared(epochs: int | None, batch_size: int | None, lr: float | None, seed: int | None,
            templates: Path | None, device: str | None) -> dict[str, Any]:
    """The shared settings the user gave (`SceneTrainConfig` fields)."""
    return only_set({"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                     "templates": str(templates) if templates else None, "device": device})


def _ship(output: Path, name: str) -> None:
    """Copy OUTPUT/model into the package's packaged/<name>/ with its SHA256SUMS."""
    from ..models.compact import PACKAGED, write_checksums

    target = PACKAGED / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(output / "model", target)
    write_checksums(target)
    say(f"shipped as {target}")


def _train(run: Callable[[], dict[str, Any]], output: Path, replace: bool, key: str, metric: str,
           ship_as: str | None) -> None:
    """Check the output folder, run the training, say how it went, and ship the model as `ship_as` if given."""
    check_output_dir(output, replace)
    record = run()
    say(f"{len(record['history']['train_loss'])} epoch(s); best validation {metric} {record[key]:.3f}; "
        f"wrote {output / 'model'}")
    if ship_as:
        _ship(output, ship_as)


@train_app.command("segmenter")
def segmenter_command(
    output: Path = OUTPUT,
    epochs: int | None = _epochs(_SEGMENTER),
    batch_size: int | None = _batch_size(_SEGMENTER),
    lr: float | None = _lr(_SEGMENTER),
    seed: int | None = _seed(_SEGMENTER),
    templates: Path | None = TEMPLATES,
    device: str | None = DEVICE,
    resume: bool = RESUME,
    ship: bool = SHIP,
    overwrite: bool = OVERWRITE,
) -> None:
    """Train compact-sam, a small SAM, to segment what a point prompts in simulated tomograms."""
    from ..pipelines.compact import train_segmenter

    config = CompactTrainConfig(**_shared(epochs, batch_size, lr, seed, templates, device))
    _train(lambda: train_segmenter(output, config, resume=resume), output, overwrite or resume,
           "validation_iou", "IoU", "compact-sam" if ship else None)


@train_app.command("features")
def features_command(
    output: Path = OUTPUT,
    epochs: int | None = _epochs(_FEATURES),
    batch_size: int | None = _batch_size(_FEATURES),
    lr: float | None = _lr(_FEATURES),
    seed: int | None = _seed(_FEATURES),
    templates: Path | None = TEMPLATES,
    real: list[Path] = typer.Option([], "--real", help="Real unlabelled images (MRC/TIFF stacks or volumes) for the "
                                                       "self-supervised term; repeat for several."),
    device: str | None = DEVICE,
    resume: bool = RESUME,
    ship: bool = SHIP,
    overwrite: bool = OVERWRITE,
) -> None:
    """Train compact-features, a small U-Net whose cell vectors tell particle kinds apart, on simulated tomograms."""
    from ..pipelines.compact_features import train_features

    for path in real:
        if not path.is_file() and not path.is_dir():
            raise FileNotFoundError(f"{path}: no such file (--real)")
    config = FeatureTrainConfig(**_shared(epochs, batch_size, lr, seed, templates, device),
                                **only_set({"real": tuple(str(p) for p in real) or None}))
    _train(lambda: train_features(output, config, resume=resume), output, overwrite or resume,
           "validation_map", "mAP", "compact-features" if ship else None)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
