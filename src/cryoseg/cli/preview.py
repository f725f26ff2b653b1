"""`cryoseg preview TOMO -o OUT.png`: the three orthogonal slices through a point, with labels and picks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InputError, UnsupportedFormatError
from ..viz import PreviewConfig
from .common import NAN_POLICY_HELP, OVERWRITE_HELP, check_output_files, say
from .parse import parse_point, parse_voxel_size

PREVIEW = PreviewConfig()  # the library's defaults, quoted in the help


def preview(
    tomo: Path = typer.Argument(..., help="Volume: .mrc .rec .map .st .tif .tiff .zarr .ome.zarr"),
    output: Path = typer.Option(..., "--output", "-o", help="PNG to write; its report goes beside it "
                                                            "(OUT.report.json)."),
    point: str | None = typer.Option(None, "--point", help="z,y,x in voxels where the planes cross "
                                                           "(default the centre)."),
    labels: Path | None = typer.Option(None, "--labels", help="Label or instance volume to overlay "
                                                              "(same shape)."),
    picks: Path | None = typer.Option(None, "--picks", help="Coordinates to mark (.star .csv .json .ndjson)."),
    voxel_size: str | None = typer.Option(None, "--voxel-size", help="Override the header: Å, one value or z,y,x."),
    nan_policy: str | None = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP),
    pick_radius: float | None = typer.Option(None, "--pick-radius", help=f"Circle radius in voxels (default "
                                                                         f"{PREVIEW.pick_radius:g})."),
    title: str | None = typer.Option(None, "--title", help="Text above the panels (default the file name)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Write a PNG of the z, y and x planes through a point, with a label overlay and picks marked."""
    from ..io.coords import read_particles
    from ..io.report import report_beside, write_report
    from ..io.volumes import read_volume
    from ..viz import save_preview

    if output.suffix.lower() != ".png":
        raise UnsupportedFormatError(f"{output}: previews are written as PNG; use a .png file name")
    inputs = [p for p in (tomo, labels, picks) if p is not None]
    check_output_files([output, report_beside(output)], inputs, overwrite)
    where = parse_point(point) if point is not None else None

    kwargs: dict[str, Any] = {} if voxel_size is None else {"voxel_size": parse_voxel_size(voxel_size)}
    if nan_policy is not None:
        kwargs["nan_policy"] = nan_policy
    volume = read_volume(tomo, **kwargs)
    label_volume = None
    if labels is not None:
        label_volume = read_volume(labels)
        if label_volume.shape != volume.shape:
            raise InputError(f"{labels} has shape {label_volume.shape} but {tomo} has shape {volume.shape} (z, y, x)")
    particles = None
    if picks is not None:
        known_vs = volume.voxel_size if all(v > 0 for v in volume.voxel_size) else None
        particles = read_particles(picks, voxel_size=known_vs, shape=volume.shape)

    options: dict[str, Any] = {} if pick_radius is None else {"pick_radius": pick_radius}
    path = save_preview(volume, output, point=where, labels=label_volume, picks=particles,
                        title=title if title is not None else tomo.name, **options)
    write_report(report_beside(output), command="preview", volume=tomo, labels=labels, picks=picks,
                 point=where, voxel_size=volume.voxel_size, output=path, **options)
    say(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)
