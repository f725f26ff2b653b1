"""Which tomograms a batch runs on: paths and globs, list files (one path per line), or a copick project."""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, UnsupportedFormatError
from ..io.copick_project import CopickSource, project_sources
from ..io.volumes import volume_format
from ..pipelines.output import tomogram_name

LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class Tomogram:
    """One tomogram of a batch.

    Attributes:
        name: unique within the batch; names its output folder (OUT/<name>) and its manifest entry.
        path: the volume file (MRC, TIFF, OME-Zarr), or the copick config of a copick tomogram.
        copick: where it lives in a copick project (None: a plain file).
    """

    name: str
    path: Path
    copick: CopickSource | None = None

    @property
    def source(self) -> str:
        """What the manifest records as its origin."""
        return self.copick.describe() + f" of {self.path}" if self.copick is not None else str(self.path)


def copick_tomograms(config: str | Path, voxel_spacing: float, tomo_type: str,
                     runs: list[str] | None = None) -> list[Tomogram]:
    """The tomograms of a copick project (see `cryoseg.io.copick_project.project_sources`), named by their runs."""
    config = Path(config).resolve()
    return [Tomogram(s.run, config, s) for s in project_sources(config, voxel_spacing, tomo_type, runs)]


def find_tomograms(specs: list[str]) -> list[Tomogram]:
    """The tomograms named by `specs`: files, glob patterns, or list files (.txt .lst .list, one path or pattern per
    line, relative to the list; # starts a comment). Refuses an empty result, a missing file, and two tomograms with
    one name (their output folders would collide)."""
    paths: list[Path] = []
    for spec in specs:
        paths.extend(_expand(spec, Path.cwd()))
    if not paths:
        raise InputError("no tomogram given: name files, glob patterns (quoted) or a list file")
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    names = [tomogram_name(p) for p in unique]
    shared = {n for n, k in Counter(names).items() if k > 1}
    # "TS_01/tomogram.mrc", "TS_02/tomogram.mrc": the folder tells them apart
    names = [f"{p.parent.name}_{n}" if n in shared else n for p, n in zip(unique, names)]
    tomograms = [Tomogram(n, p) for n, p in zip(names, unique)]
    check_unique(tomograms)
    return tomograms


def check_unique(tomograms: list[Tomogram]) -> None:
    clashes = [name for name, n in Counter(t.name for t in tomograms).items() if n > 1]
    if clashes:
        raise InputError(f"{len(clashes)} name(s) are shared by several tomograms ({', '.join(clashes[:3])}): each "
                         "tomogram's results go to OUT/<name>; rename or batch them separately")


def _expand(spec: str, base: Path) -> list[Path]:
    path = Path(spec) if Path(spec).is_absolute() else base / spec
    if path.suffix.lower() in LIST_SUFFIXES and path.is_file():
        out = []
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.extend(_expand(line, path.parent))
        return out
    if glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(str(path)) if _is_volume(Path(p)))
        if not found:
            raise InputError(f"no tomogram matches {spec!r}")
        return found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such tomogram")
    volume_format(path)  # an unknown extension is refused here, in one line, before any work
    return [path]


def _is_volume(path: Path) -> bool:
    try:
        volume_format(path)
    except UnsupportedFormatError:
        return False
    return True
