"""`cryoseg models`: every registered model, its kind and family, and whether its weights are on this machine."""

from __future__ import annotations

import typer

from ..errors import InputError


def models(
    kind: str | None = typer.Option(None, "--kind", help="Only 'segmenter' or 'features' models."),
    present: bool | None = typer.Option(None, "--present/--missing", help="Only models whose weights are (not) here."),
) -> None:
    """List every model: kind, family, whether its weights are present, and where (or where we looked)."""
    from rich.console import Console
    from rich.table import Table

    from ..models.registry import list_models

    if kind is not None and kind not in ("segmenter", "features"):
        raise InputError(f"--kind must be 'segmenter' or 'features', got {kind!r}")
    statuses = [s for s in list_models()
                if (kind is None or s.spec.kind == kind) and (present is None or s.present == present)]
    table = Table(title="cryoseg models")
    table.add_column("model", style="bold", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("present", no_wrap=True)
    table.add_column("licence")
    table.add_column("where", overflow="fold")
    for status in statuses:
        spec = status.spec
        table.add_row(spec.name, spec.kind, spec.family, "[green]yes[/]" if status.present else "[red]no[/]",
                      spec.licence, status.where)
    Console().print(table)
    n_here = sum(s.present for s in statuses)
    Console().print(f"{n_here} of {len(statuses)} models usable here; hub models are looked up in the local cache "
                    "only (pass --weights to commands, or download with `hf download <hub id>`).")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
