"""The end of a batch: summary.csv (one row per tomogram) and preview_grid.png (every done tomogram's preview)."""

from __future__ import annotations

from pathlib import Path

from ..io.atomic import atomic_path
from .manifest import Manifest

SUMMARY = "summary.csv"
PREVIEW_GRID = "preview_grid.png"
PREVIEW = "preview.png"


def summary_rows(manifest: Manifest) -> list[dict[str, object]]:
    """One row per tomogram: name, state, attempts, seconds, the job's own numbers (instances, ...), error."""
    rows = []
    for name, e in manifest.entries.items():
        numbers = {k: v for k, v in e.summary.items() if k not in ("models_loaded", "pid")}
        rows.append({"tomogram": name, "state": e.state, "attempts": e.attempts, "seconds": e.seconds, **numbers,
                     "error": e.error or ""})
    return rows


def write_summary(manifest: Manifest, outdir: Path) -> dict[str, Path]:
    """Write summary.csv and, when any tomogram is done, preview_grid.png into `outdir`; returns their paths."""
    import pandas as pd

    from ..viz.grid import save_image_grid

    files = {}
    with atomic_path(outdir / SUMMARY) as tmp:
        pd.DataFrame(summary_rows(manifest)).to_csv(tmp, index=False)
    files["summary"] = outdir / SUMMARY
    done = [(name, e) for name, e in manifest.entries.items() if e.state == "done"]
    previews = [(_caption(name, e.summary), outdir / name / PREVIEW) for name, e in done
                if (outdir / name / PREVIEW).is_file()]
    if previews:
        files["preview_grid"] = save_image_grid(previews, outdir / PREVIEW_GRID)
    return files


def _caption(name: str, summary: dict[str, object]) -> str:
    count = next((f"{summary[k]} {k}" for k in ("instances", "particles") if k in summary), "")
    return f"{name}: {count}" if count else name
