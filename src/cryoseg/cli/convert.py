"""`cryoseg convert IN OUT`: particle coordinates between RELION 4/5 STAR, CSV, copick JSON and portal ndjson."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ..errors import InputError
from .common import OVERWRITE_HELP, check_output_files, say
from .parse import parse_shape, parse_voxel_size

FORMAT_HELP = "star (RELION <= 4), star5 (RELION 5), csv, copick, ndjson"


class _DropOutsideWarning(logging.Filter):
    """The read already warned about particles outside the volume; the write would repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "outside the volume" not in record.getMessage()


@contextmanager
def _no_repeated_outside_warning() -> Iterator[None]:
    logger = logging.getLogger("cryoseg.io.coords")
    flt = _DropOutsideWarning()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def convert(
    src: Path = typer.Argument(..., metavar="IN", help="Coordinate file to read (.star .csv .json .ndjson)."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Coordinate file to write; its extension picks the format."),
    from_fmt: str | None = typer.Option(None, "--from", help=f"Input format: {FORMAT_HELP}. Default: extension."),
    to_fmt: str | None = typer.Option(None, "--to", help=f"Output format: {FORMAT_HELP}. Default: extension "
                                      "(.star writes RELION 4)."),
    voxel_size: str | None = typer.Option(None, "--voxel-size", help="Å per voxel, one value or z,y,x; needed "
                                          "for Å formats (RELION 5, copick)."),
    shape: str | None = typer.Option(None, "--shape", help="Tomogram shape Z,Y,X in voxels; needed for RELION 5."),
    tomogram: Path | None = typer.Option(None, "--tomogram", help="Tomogram the picks belong to: gives the voxel "
                                         "size and shape (--voxel-size and --shape take precedence)."),
    tomo_name: str | None = typer.Option(None, "--tomo-name", help="Tomogram name: selects its particles from a "
                                         "STAR file with rlnTomoName, and is written as rlnTomoName / run_name."),
    class_id: int | None = typer.Option(None, "--class", help="Convert only particles of this class id (copick and "
                                        "ndjson files hold one class)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Convert particle coordinates between formats, keeping units, centring and axis order straight.

    Coordinates outside the volume (when the shape is known) are reported and kept.
    """
    from ..io.coords import guess_format, read_particles, write_particles
    from ..io.report import report_beside, write_report

    vs = parse_voxel_size(voxel_size) if voxel_size is not None else None
    shp = parse_shape(shape) if shape is not None else None
    inputs = [src] if tomogram is None else [src, tomogram]
    report = report_beside(dst)
    check_output_files([dst, report], inputs, overwrite)  # every target before any work
    if tomogram is not None:  # it fills in what the options leave unset
        from ..io.volumes import tomogram_geometry

        tomo_vs, tomo_shape = tomogram_geometry(tomogram, voxel_size=vs)
        vs = tomo_vs if vs is None else vs
        shp = tomo_shape if shp is None else shp

    particles = read_particles(src, from_fmt, voxel_size=vs, shape=shp, tomo_name=tomo_name)
    n_read = len(particles)
    if class_id is not None:
        try:
            particles = particles.select_class(class_id)
        except InputError as exc:
            raise InputError(f"{src}: {exc}") from None
    with _no_repeated_outside_warning():
        write_particles(particles, dst, to_fmt, voxel_size=vs, shape=shp, inputs=inputs, tomo_name=tomo_name)
    n_outside = int(particles.outside(shp).sum()) if shp is not None else None

    in_fmt = from_fmt or guess_format(src)
    out_fmt = to_fmt or guess_format(dst)
    write_report(report, command="convert", input=src, output=dst, input_format=in_fmt, output_format=out_fmt,
                 particles_read=n_read, particles_written=len(particles), class_id=class_id, tomo_name=tomo_name,
                 voxel_size=vs, shape=shp, tomogram=tomogram, outside_volume=n_outside)
    say(f"converted {len(particles)} particles: {src} ({in_fmt}) -> {dst} ({out_fmt})")
    if n_outside:
        say(f"{n_outside} of {len(particles)} particles lie outside the volume {shp} (z, y, x); kept")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
