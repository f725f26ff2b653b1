"""Helpers shared by several commands."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from ..errors import InputError, OverwriteInputError
from ..io.atomic import check_not_input
from ..io.volumes import DEFAULT_NAN_POLICY, NAN_POLICIES


def say(message: str) -> None:
    """Print a progress or summary line on stdout, unless --quiet (which leaves only errors) is set.

    A command's actual result (the `info` and `evaluate` tables) is printed regardless.
    """
    if logging.getLogger("cryoseg").getEffectiveLevel() <= logging.INFO:
        typer.echo(message)


OVERWRITE_HELP = "Replace existing output files."
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default: auto)."
NAN_POLICY_HELP = (f"NaN/Inf values in the volume: {' or '.join(map(repr, NAN_POLICIES))} "
                   f"(default {DEFAULT_NAN_POLICY!r}).")


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output whose folder cannot be created or written to: try it."""
    folder = path.parent.absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise InputError(f"cannot write {path}: {existing} is not a folder")
    try:
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as exc:
        raise InputError(f"cannot write {path}: {existing} is not writable ({exc.strerror or exc})") from None


def check_output_dir(outdir: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Before any work: refuse an output folder that is a file, that cannot be written, that holds one of `inputs`
    (a run replaces what the folder holds), or that holds files unless `overwrite`."""
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output {outdir} is a file, not a folder")
    check_writable(outdir)
    folder = outdir.resolve()
    for path in inputs:
        if folder in Path(path).resolve().parents:
            raise OverwriteInputError(f"input {path} lies inside the output folder {outdir}; write the results "
                                      "to another folder")
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise InputError(f"output folder {outdir} is not empty; pass --overwrite to write into it anyway")


def check_output_files(outputs: Iterable[Path], inputs: Iterable[Path], overwrite: bool) -> None:
    """Before any work: refuse an output file that is an input (also through a hard link), that is a folder, or
    that exists unless `overwrite`."""
    inputs = list(inputs)
    for output in outputs:
        check_writable(output)
        check_not_input(output, inputs)
        if output.is_dir():
            raise InputError(f"output {output} is a folder; give a file name")
        if output.exists() and not overwrite:
            raise InputError(f"output {output} exists; pass --overwrite to replace it")


def only_set(values: dict[str, Any]) -> dict[str, Any]:
    """The options the user set (not None): the CLI forwards only these, so every default stays in the library."""
    return {k: v for k, v in values.items() if v is not None}


def read_volumes(paths: list[Path], voxel_size: str | None, nan_policy: str | None) -> list[Any]:
    """Read volumes with the command line's --voxel-size (one value or z,y,x Å) and --nan-policy, where set."""
    from ..io.volumes import read_volume
    from .parse import parse_voxel_size

    size = parse_voxel_size(voxel_size) if voxel_size is not None else None
    return [read_volume(p, voxel_size=size, **only_set({"nan_policy": nan_policy})) for p in paths]
