"""Helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def check_output_dir(outdir: Path, overwrite: bool) -> None:
    """Refuse an output folder that is a file, or that holds files unless `overwrite`."""
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output {outdir} is a file, not a folder")
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise InputError(f"output folder {outdir} is not empty; pass --overwrite to write into it anyway")
