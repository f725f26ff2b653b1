"""`cryoseg simulate`: a tomogram with exact ground truth (labels, instances, particle table, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..synth.config import REFERENCE_COUNTS, REFERENCE_SHAPE
from .common import check_output_dir, say
from .parse import parse_numbers

SMALLER = f"smaller than {'×'.join(map(str, REFERENCE_SHAPE))} voxels"  # where the default counts shrink


def parse_tilt_range(text: str) -> tuple[float, float]:
    """ "60" means -60..60 degrees; "-50,60" gives the first and last tilt."""
    values = parse_numbers(text, "--tilt-range", (1, 2), meaning="in degrees")
    return (-abs(values[0]), abs(values[0])) if len(values) == 1 else (values[0], values[1])


def split_templates(values: list[str]) -> tuple[str, ...]:
    """Template arguments: each may be repeated or hold several comma-separated names/paths."""
    out: list[str] = []
    for value in values:
        out.extend([value] if Path(value).exists() else [v for v in value.split(",") if v.strip()])
    return tuple(v.strip() for v in out)


def simulate_command(
    output: Path = typer.Option(..., "--output", "-o",
                                help="Output folder (created; must be empty unless --overwrite)."),
    shape: str | None = typer.Option(None, "--shape", help="Tomogram size in voxels: Z,Y,X."),
    voxel_size: float | None = typer.Option(None, "--voxel-size", help="Å per voxel."),
    particles: int | None = typer.Option(None, "--particles", help="Total particles, split evenly over the classes "
                                         f"(default {REFERENCE_COUNTS['particles']}; fewer in a volume {SMALLER})."),
    density: float | None = typer.Option(None, "--density",
                                         help="Particles per µm³ per class (instead of --particles)."),
    templates: list[str] | None = typer.Option(
        None, "--templates", "-t",
        help="Particle classes: built-in shapes (ribosome, shell, dumbbell, rod, globule), MRC maps or folders of "
             "maps; repeat the option or separate with commas."),
    template_voxel_size: float | None = typer.Option(None, "--template-voxel-size",
                                                     help="Å per voxel of the template maps (overrides headers)."),
    snr: float | None = typer.Option(None, "--snr", help="Signal-to-noise ratio of each tilt image."),
    tilt_range: str | None = typer.Option(None, "--tilt-range", help="Degrees: '60' for ±60, or 'FIRST,LAST'."),
    tilt_step: float | None = typer.Option(None, "--tilt-step", help="Tilt increment in degrees."),
    defocus: float | None = typer.Option(None, "--defocus", help="Defocus in µm (positive = underfocus)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed; the same seed gives the same tomogram."),
    vesicles: int | None = typer.Option(None, "--vesicles", help=f"Number of vesicles (default "
                                        f"{REFERENCE_COUNTS['vesicles']}; fewer or none in a volume {SMALLER})."),
    filaments: int | None = typer.Option(None, "--filaments", help=f"Number of filaments (default "
                                         f"{REFERENCE_COUNTS['filaments']}; none in a volume {SMALLER} where it "
                                         "would crowd the particles)."),
    no_ctf: bool = typer.Option(False, "--no-ctf", help="No contrast transfer function."),
    no_noise: bool = typer.Option(False, "--no-noise", help="No noise."),
    threads: int | None = typer.Option(None, "--threads", help="Worker threads (default: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace simulation files in a non-empty folder."),
) -> None:
    """Simulate a cryo-ET tomogram with exact ground truth: tomogram.mrc, labels.mrc, instances.mrc,
    particles.csv, particles.star and report.json."""
    from ..synth import SimulationConfig, simulate

    kwargs: dict[str, Any] = {}
    if shape is not None:
        # The library checks the values (positive integers); tests/synth pin this count message.
        kwargs["shape"] = parse_numbers(shape, "--shape", (3,), expected="needs 3 comma-separated numbers")
    if tilt_range is not None:
        kwargs["tilt_range"] = parse_tilt_range(tilt_range)
    if templates:
        kwargs["templates"] = split_templates(templates)
    for name, value in (("voxel_size", voxel_size), ("particles", particles), ("density", density),
                        ("template_voxel_size", template_voxel_size), ("snr", snr), ("tilt_step", tilt_step),
                        ("defocus", defocus), ("seed", seed), ("vesicles", vesicles), ("filaments", filaments),
                        ("threads", threads)):
        if value is not None:
            kwargs[name] = value
    if no_ctf:
        kwargs["ctf"] = False
    if no_noise:
        kwargs["noise"] = False

    config = SimulationConfig(**kwargs)  # bad values fail here, before anything is written
    check_output_dir(output, overwrite, [Path(t) for t in config.templates if Path(t).exists()])
    result = simulate(config)
    paths = result.save(output)
    counts = ", ".join(f"{t['count']} {t['name']}" for t in result.info["templates"])
    say(f"simulated {'×'.join(map(str, config.shape))} voxels at {config.voxel_size:g} Å: {counts}, "
        f"{len(result.info['vesicles'])} vesicles, {len(result.info['filaments'])} filaments")
    for path in paths.values():
        say(f"  {path}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
