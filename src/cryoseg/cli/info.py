"""`cryoseg info FILE`: shape, dtype, voxel size, origin and statistics of a volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .common import NAN_POLICY_HELP
from .parse import parse_voxel_size


def info(
    file: Path = typer.Argument(..., help="Volume: .mrc .rec .map .st .tif .tiff .zarr .ome.zarr"),
    voxel_size: str | None = typer.Option(None, "--voxel-size", help="Override the header: Å, one value or z,y,x."),
    nan_policy: str | None = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP),
    permissive: bool | None = typer.Option(None, "--permissive", help="Read MRC files with a malformed header."),
) -> None:
    """Print shape, dtype, voxel size (Å, z y x), origin and value statistics of a volume."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..io.volumes import read_volume, volume_info

    kwargs: dict[str, Any] = {}
    if voxel_size is not None:
        kwargs["voxel_size"] = parse_voxel_size(voxel_size)
    if nan_policy is not None:
        kwargs["nan_policy"] = nan_policy
    if permissive is not None:
        kwargs["permissive"] = permissive
    summary = volume_info(read_volume(file, **kwargs))

    console = Console()
    console.print(Text(str(file), style="bold"))  # a line of its own: a table title would wrap long paths
    table = Table(show_header=False)
    table.add_column("property", style="bold")
    table.add_column("value")
    table.add_row("shape (z, y, x)", " × ".join(str(n) for n in summary["shape"]))
    table.add_row("dtype", summary["dtype"])
    table.add_row("voxel size (Å, z y x)", _triple(summary["voxel_size"]))
    table.add_row("origin (Å, z y x)", _triple(summary["origin"]))
    for key in ("min", "max", "mean", "std"):
        table.add_row(key, f"{summary[key]:.6g}")
    if summary["nonfinite"]:
        table.add_row("NaN/Inf values", str(summary["nonfinite"]))
    console.print(table)


def _triple(values: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.4g}" for v in values)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
