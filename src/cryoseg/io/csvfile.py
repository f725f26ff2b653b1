"""CSV particle tables with a header row.

Columns are found by name (case and surrounding spaces ignored), in any order:

- z, y, x: coordinates in voxels, 0-based (voxel index i has its centre at i). Required. An x, y, z column order
  in the file is fine: names decide, never positions.
- class (also class_label, class_id, label): integer class ids, or names (mapped to ids 1.. in sorted order);
  class_name: the name of each row's class id.
- score, instance_id, and rot, tilt, psi (RELION Euler angles in degrees, ZYZ; all three or none).

Written files have the columns z, y, x, then class, class_name, score, instance_id, rot, tilt, psi where known.
Floats are written with full precision, so a round trip is exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InputError
from .conversions import make_particles
from .particles import Particles

COORDS = ("z", "y", "x")
CLASS_NAMES = ("class", "class_label", "class_id", "label")
ANGLES = ("rot", "tilt", "psi")


def _load(path: Path):
    import pandas as pd

    try:
        with warnings.catch_warnings():
            # a row longer than the header would silently become an index (or lose values): refuse it
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, skipinitialspace=True, index_col=False)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the CSV file has no header and no rows") from exc
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, ValueError) as exc:
        problem = " ".join(str(exc).split())  # pandas puts newlines in its messages
        raise CorruptFileError(f"{path}: not a readable CSV table ({type(exc).__name__}: {problem})") from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df


def _numeric(df, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    try:
        return pd.to_numeric(df[column], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: column '{column}' holds non-numeric values ({exc})") from exc


def _integers(values: np.ndarray, column: str, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise InputError(f"{path}: column '{column}' must hold whole numbers in every row")
    return values.astype(np.int64)


def _classes(df, path: Path) -> tuple[np.ndarray | None, dict[int, str]]:
    import pandas as pd

    column = next((c for c in CLASS_NAMES if c in df.columns), None)
    if column is None:
        return None, {}
    raw = df[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    if len(raw) and numeric.isna().all() and raw.notna().all():
        # Class names instead of ids: number them 1.. in sorted order.
        names = sorted(set(raw.astype(str).str.strip()))
        ids = {name: i + 1 for i, name in enumerate(names)}
        return raw.astype(str).str.strip().map(ids).to_numpy(np.int64), {i: n for n, i in ids.items()}
    classes = _integers(_numeric(df, column, path), column, path)
    names: dict[int, str] = {}
    if "class_name" in df.columns:
        for cid, name in zip(classes.tolist(), df["class_name"], strict=True):
            if pd.isna(name) or not str(name).strip():
                continue  # a class without a name
            name = str(name).strip()
            if names.setdefault(cid, name) != name:
                raise InputError(f"{path}: class {cid} has two names, '{names[cid]}' and '{name}'")
    return classes, names


def read(path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
         tomo_name: str | None) -> Particles:
    """Read a CSV table with z, y, x voxel columns; see the module docstring."""
    df = _load(path)
    missing = [c for c in COORDS if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: no coordinate columns {'/'.join(missing)}; a CSV needs a header with z, y, x (voxels), "
            f"found columns {list(df.columns)}"
        )
    coords = np.stack([_numeric(df, c, path) for c in COORDS], axis=1)
    classes, class_names = _classes(df, path)
    scores = _numeric(df, "score", path) if "score" in df.columns else None
    instance_ids = (_integers(_numeric(df, "instance_id", path), "instance_id", path)
                    if "instance_id" in df.columns else None)
    present = [a for a in ANGLES if a in df.columns]
    if present and len(present) < 3:
        raise InputError(f"{path}: orientation needs all of rot, tilt, psi; found only {present}")
    orientations = np.stack([_numeric(df, a, path) for a in ANGLES], axis=1) if present else None
    return make_particles(path, coords, classes=classes, scores=scores, instance_ids=instance_ids,
                          orientations=orientations, class_names=class_names)


def prepare(particles: Particles, path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
            tomo_name: str | None, fmt: str) -> Callable[[Path], None]:
    """Build the CSV table (z, y, x voxels first); return the function that saves it."""
    import pandas as pd

    columns: dict[str, object] = {axis: particles.coords[:, i] for i, axis in enumerate(COORDS)}
    if particles.classes is not None:
        columns["class"] = particles.classes
        if particles.class_names:
            columns["class_name"] = [particles.class_names.get(int(c), "") for c in particles.classes]
    if particles.scores is not None:
        columns["score"] = particles.scores
    if particles.instance_ids is not None:
        columns["instance_id"] = particles.instance_ids
    if particles.orientations is not None:
        for i, name in enumerate(ANGLES):
            columns[name] = particles.orientations[:, i]
    table = pd.DataFrame(columns)

    def save(tmp: Path) -> None:
        table.to_csv(tmp, index=False)

    return save
