"""The report written with every result: parameters, versions and timings as JSON.

One name everywhere: a run folder holds `report.json` (written last: a folder without it is incomplete); a single
output file OUT gets `OUT.report.json` beside it (`report_beside`).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def as_json(value: Any) -> Any:
    """`value` as it comes back from JSON: dataclasses and tuples become dicts and lists, numpy scalars plain
    numbers, anything else unknown its str(); keys sorted (so equal values give equal text)."""
    return json.loads(json.dumps(_jsonable(value), sort_keys=True,
                                 default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def dataclass_from_json(cls: type, data: dict[str, Any]) -> Any:
    """The inverse of `as_json` for a settings dataclass whose fields all have defaults: nested settings are
    rebuilt from their dicts and lists become tuples where the default is a tuple (or None). Unknown keys (from
    another cryoseg version) are ignored; missing ones keep their defaults."""
    default = cls()
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, current = data[f.name], getattr(default, f.name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = dataclass_from_json(type(current), value)
        elif isinstance(value, list) and (current is None or isinstance(current, tuple)):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        values[f.name] = value
    return cls(**values)


def versions() -> dict[str, str]:
    """Versions of cryoseg, Python and the main libraries that are importable (without importing heavy ones)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("cryoseg", "numpy", "scipy", "scikit-image", "mrcfile", "torch", "transformers", "diffusers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


REPORT = "report.json"


def report_beside(output: str | Path) -> Path:
    """The report of a single output file: OUT -> OUT.report.json (beside it)."""
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def write_report(path: str | Path, **content: Any) -> Path:
    """Write `content` plus versions and a timestamp as indented JSON, atomically."""
    record = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(), **_jsonable(content)}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


class StageTimer:
    """Collects wall-clock seconds per named stage: `with timer("embed"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
