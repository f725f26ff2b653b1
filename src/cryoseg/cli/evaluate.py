"""`cryoseg evaluate PRED TRUTH`: score picks or label volumes against ground truth; print a table, write JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InputError, UnsupportedFormatError
from ..eval import DEFAULT_IOU_THRESHOLD, PickingConfig
from .common import OVERWRITE_HELP, check_output_files
from .parse import parse_voxel_size

PICKING = PickingConfig()  # the library's defaults, quoted in the help
PICK_OPTIONS = ("--tolerance", "--unit", "--tomogram", "--class")
VOLUME_OPTIONS = ("--instances", "--iou-threshold")


def _kind(path: Path) -> str:
    """"picks" or "volume", from the file name."""
    from ..io.coords import guess_format
    from ..io.volumes import volume_format

    try:
        guess_format(path)
        return "picks"
    except UnsupportedFormatError:
        pass
    try:
        volume_format(path)
        return "volume"
    except UnsupportedFormatError:
        raise UnsupportedFormatError(
            f"{path}: neither a coordinate file (.star .csv .json .ndjson) nor a volume "
            "(.mrc .rec .map .st .tif .tiff .zarr .ome.zarr)"
        ) from None


def _evaluate_picks(pred: Path, truth: Path, voxel_size: Any, tomogram: Path | None,
                    options: dict[str, Any], truth_class: str | None) -> tuple[Any, dict[str, Any]]:
    from ..eval import against_truth_class, match_picks
    from ..io.coords import read_particles
    from ..io.volumes import tomogram_geometry

    shape = None
    if tomogram is not None:
        voxel_size, shape = tomogram_geometry(tomogram, voxel_size=voxel_size)
    read_kwargs: dict[str, Any] = {"voxel_size": voxel_size, "shape": shape}
    pred_particles = read_particles(pred, **read_kwargs)
    truth_particles = read_particles(truth, **read_kwargs)
    if truth_class is not None:
        try:
            pred_particles, truth_particles = against_truth_class(pred_particles, truth_particles, truth_class)
        except InputError as exc:  # only the truth's classes can be at fault: name its file
            raise InputError(f"{truth}: {exc}") from None
    scores = match_picks(pred_particles, truth_particles, voxel_size=voxel_size, **options)
    parameters = {"tolerance": scores.tolerance, "tolerance_unit": scores.tolerance_unit,
                  "voxel_size": voxel_size, "tomogram": tomogram, "truth_class": truth_class}
    return scores, parameters


def _evaluate_volumes(pred: Path, truth: Path, voxel_size: Any, instances: bool,
                      iou_threshold: float | None) -> tuple[Any, dict[str, Any]]:
    from ..eval import instance_scores, segmentation_scores
    from ..io.volumes import read_volume

    kwargs: dict[str, Any] = {} if voxel_size is None else {"voxel_size": voxel_size}
    pred_volume = read_volume(pred, **kwargs)
    truth_volume = read_volume(truth, **kwargs)
    if pred_volume.shape != truth_volume.shape:
        raise InputError(
            f"{pred} has shape {pred_volume.shape} but {truth} has shape {truth_volume.shape} (z, y, x); "
            "a prediction must cover the same voxels as its ground truth"
        )
    if instances:
        options = {} if iou_threshold is None else {"iou_threshold": iou_threshold}
        scores = instance_scores(pred_volume, truth_volume, **options)
        return scores, {"iou_threshold": scores.iou_threshold}
    scores = segmentation_scores(pred_volume, truth_volume)
    return scores, {"background": scores.background}


def evaluate(
    pred: Path = typer.Argument(..., help="Prediction: picks (.star .csv .json .ndjson) or a label volume "
                                          "(.mrc .tif .zarr ...)."),
    truth: Path = typer.Argument(..., help="Ground truth of the same kind."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report here as JSON."),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help=f"Picks: largest centre distance of a match, in --unit (default "
                                  f"{PICKING.tolerance:g}; use about half your particle's radius)."),
    unit: str | None = typer.Option(None, "--unit", help=f"Picks: unit of --tolerance, 'voxel' or 'angstrom' "
                                                         f"(default {PICKING.tolerance_unit!r})."),
    voxel_size: str | None = typer.Option(None, "--voxel-size", help="Å per voxel, one value or z,y,x; needed "
                                                                     "for Å coordinate formats or --unit angstrom."),
    tomogram: Path | None = typer.Option(None, "--tomogram", help="Picks: the tomogram they belong to (gives "
                                                                   "the voxel size and shape Å formats need)."),
    instances: bool = typer.Option(False, "--instances", help="Volumes: they hold instance ids (0 = background); "
                                                              "report instance scores instead of class IoU."),
    truth_class: str | None = typer.Option(None, "--class", help="Picks: score against the ground-truth "
                                                                  "particles of this class only (id or name), "
                                                                  "ignoring the predictions' classes."),
    iou_threshold: float | None = typer.Option(None, "--iou-threshold", help=f"With --instances: IoU for a true "
                                                                             f"positive (default "
                                                                             f"{DEFAULT_IOU_THRESHOLD:g})."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Score predicted picks or segmentations against ground truth.

    Coordinate files give picking precision/recall/F1 (and AP when picks have scores), overall and per class.

    Label volumes give IoU and Dice per class and mIoU (background 0 excluded); with --instances, instance precision/recall/F1 at an IoU threshold and matched-instance IoU.
    """  # noqa: E501 (one line per paragraph: the help text keeps line breaks)
    from rich.console import Console

    from ..io.report import write_report

    if output is not None:
        check_output_files([output], [pred, truth] + ([tomogram] if tomogram else []), overwrite)
    kinds = {_kind(pred), _kind(truth)}
    if len(kinds) > 1:
        raise InputError(f"cannot compare {pred} with {truth}: one is a coordinate file, the other a volume")
    kind = kinds.pop()
    vs = parse_voxel_size(voxel_size) if voxel_size is not None else None

    if kind == "picks":
        if instances or iou_threshold is not None:
            raise InputError(f"{', '.join(VOLUME_OPTIONS)} apply to label volumes, not to coordinate files")
        options: dict[str, Any] = {}
        if tolerance is not None:
            options["tolerance"] = tolerance
        if unit is not None:
            options["tolerance_unit"] = unit
        scores, parameters = _evaluate_picks(pred, truth, vs, tomogram, options, truth_class)
        section = "picking"
    else:
        if tolerance is not None or unit is not None or tomogram is not None or truth_class is not None:
            raise InputError(f"{', '.join(PICK_OPTIONS)} apply to coordinate files, not to volumes")
        scores, parameters = _evaluate_volumes(pred, truth, vs, instances, iou_threshold)
        section = "instances" if instances else "segmentation"

    Console().print(scores.to_table(title=f"{section}: {pred.name} vs {truth.name}"))
    if output is not None:
        write_report(output, command="evaluate", kind=section, prediction=pred, ground_truth=truth,
                     parameters=parameters, scores=scores.to_dict())


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
