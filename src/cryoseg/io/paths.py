"""Checks on a user's input path before anything reads it: it exists and is something we can read whole.

A named pipe, socket or device opened for reading blocks or streams forever; refusing it up front turns a hang into
one line.
"""

from __future__ import annotations

import stat
from pathlib import Path

from ..errors import InputError


def require_input_path(path: str | Path, what: str = "file", directory: bool = False) -> Path:
    """Return `path` if it names an existing regular file (a folder when `directory`), else raise.

    Args:
        path: the user's path.
        what: how to call it in messages ("coordinate file", "tomogram", ...).
        directory: the input is a folder store (OME-Zarr) rather than a file.

    Raises:
        FileNotFoundError: nothing at `path`.
        InputError: a folder where a file is expected (or the reverse), or a pipe, socket or device.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {'folder' if directory else 'file'} ({what})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read this {what} ({exc.strerror or exc})") from None
    if directory:
        if not stat.S_ISDIR(mode):
            raise InputError(f"{path}: expected a folder ({what}), found a file")
        return path
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        kind = "named pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise InputError(f"{path}: is a {kind}, not a regular file ({what})")
    return path
