"""Atomic writes: write to a temporary file beside the target, then rename. Inputs are never overwritten."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OverwriteInputError

_registered_inputs: set[Path] = set()


def register_input(path: str | Path) -> None:
    """Remember a file that was read, so no later write in this process can replace it."""
    _registered_inputs.add(Path(path).resolve())


def check_not_input(target: str | Path, inputs: Iterable[str | Path] = ()) -> None:
    """Raise `OverwriteInputError` if `target` is one of `inputs` or any file read in this process."""
    resolved = Path(target).resolve()
    protected = _registered_inputs | {Path(p).resolve() for p in inputs}
    if resolved in protected:
        raise OverwriteInputError(f"refusing to overwrite input file {target}; choose another output path")


@contextmanager
def atomic_path(target: str | Path, inputs: Iterable[str | Path] = (), is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed.

    Use `is_dir=True` for directory stores such as OME-Zarr.
    """
    target = Path(target)
    check_not_input(target, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_target = tmp / target.name
    try:
        yield tmp_target
        if is_dir and target.is_dir():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            os.replace(tmp_target, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp_target, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
