"""Atomic writes: write to a temporary file beside the target, then rename. Inputs are never overwritten: every
writer takes the files its result was computed from (`inputs`) and refuses to replace one.

A run that writes a folder of results (`staged_folder`) builds it in a hidden sibling folder and moves the files
in at the end, its record last: a folder whose record is missing is incomplete, whatever else it holds.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OverwriteInputError


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path, or one inode (a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def check_not_input(target: str | Path, inputs: Iterable[str | Path] = ()) -> None:
    """Raise `OverwriteInputError` if `target` is one of `inputs`, the files this write's result was computed from
    (also through a hard link or another path to the same file).

    The inputs are named by each run: a long-lived process (a notebook, napari, a dask worker) may later write a
    file it once read, as long as that file is not an input of the write at hand.
    """
    if any(same_file(target, p) for p in inputs):
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


_STAGING = ".partial-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _staging_owner(path: Path) -> int | None:
    """The process id in a staging folder's name `.NAME.partial-PID-XXXX`, or None."""
    try:
        return int(path.name.rsplit(_STAGING, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_debris(outdir: str | Path) -> None:
    """Remove what an interrupted run into `outdir` left: its staging folder beside `outdir` (when the process that
    made it is gone) and temporary files of atomic writes inside `outdir`."""
    outdir = Path(outdir)
    if outdir.parent.is_dir():
        for stage in outdir.parent.glob(f".{glob.escape(outdir.name)}{_STAGING}*"):
            owner = _staging_owner(stage)
            if stage.is_dir() and owner is not None and not _alive(owner):
                shutil.rmtree(stage, ignore_errors=True)
    if outdir.is_dir():
        for tmp in outdir.glob(".*.tmp"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def staged_folder(outdir: str | Path, record: str, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield an empty staging folder for a run's outputs; on success they move into `outdir`, `record` last.

    The old `record` in `outdir` is removed before the first file moves, so at every moment `outdir` is either a
    complete result or lacks its record (incomplete). Files of `outdir` that the run does not write are left alone.
    An error removes the staging folder; a killed run leaves it, and the next run into `outdir` removes it.

    Args:
        outdir: the run's output folder (created if missing).
        record: file name of the run's record (e.g. "report.json"), written into the staging folder by the run.
        inputs: files the run read; no output may replace one.
    """
    outdir = Path(outdir)
    inputs = list(inputs)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(outdir)
    stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}{_STAGING}{os.getpid()}-", dir=outdir.parent))
    stage.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result folder gets the usual permissions
    try:
        yield stage
        names = sorted((p.name for p in stage.iterdir()), key=lambda n: n == record)  # the record last
        if record not in names:
            raise RuntimeError(f"the run wrote no {record} into {stage}")
        for name in names:  # all refusals before the first move
            check_not_input(outdir / name, inputs)
        if not outdir.exists() or (outdir.is_dir() and not any(outdir.iterdir())):
            os.replace(stage, outdir)  # one rename: complete at once
            return
        (outdir / record).unlink(missing_ok=True)
        for name in names:
            target = outdir / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(stage / name, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
