"""Helpers shared by several commands."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from ..errors import InputError


def say(message: str) -> None:
    """Print a progress or summary line on stdout, unless --quiet (which leaves only errors) is set.

    A command's actual result (the `info` and `evaluate` tables) is printed regardless.
    """
    if logging.getLogger("cryoseg").getEffectiveLevel() <= logging.INFO:
        typer.echo(message)


def check_output_dir(outdir: Path, overwrite: bool) -> None:
    """Refuse an output folder that is a file, or that holds files unless `overwrite`."""
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output {outdir} is a file, not a folder")
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise InputError(f"output folder {outdir} is not empty; pass --overwrite to write into it anyway")
