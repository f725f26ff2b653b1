"""`cryoseg models`: every registered model, its kind and family, and whether its weights are on this machine."""

from __future__ import annotations

import typer

from ..errors import InputError


def models(
    kind: str | None = typer.Option(None, "--kind", help="Only 'segmenter', 'features' or 'diffusion' models."),
    present: bool | None = typer.Option(None, "--present/--missing", help="Only models whose weights are (not) here."),
) -> None:
    """List every model: kind, family, whether its weights are here (and where), licence."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ..models.registry import DIFFUSION_EXTRA_HINT, MODELS_EXTRA_HINT, list_models
    from ..models.spec import DIFFUSION, KINDS
    from ..models.weights import checkpoint_dir, hub_cache_dir

    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind must be {', '.join(repr(k) for k in KINDS[:-1])} or {KINDS[-1]!r}, got {kind!r}")
    statuses = [s for s in list_models()
                if (kind is None or s.spec.kind == kind) and (present is None or s.present == present)]
    # Short cells only: the table has to read well in an 80-column terminal; full paths are listed below it.
    table = Table(title="cryoseg models", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("model", "kind", "family", "weights", "licence"):
        table.add_column(column, no_wrap=column != "licence")
    colours = {"missing": "red", "no backend": "yellow"}
    for status in statuses:
        spec = status.spec
        colour = colours.get(status.source, "green")
        table.add_row(spec.name, spec.kind, spec.family, f"[{colour}]{status.source}[/]", spec.licence)
    console = Console()
    console.print(table)
    for status in statuses:
        if status.present and status.source != "built-in":
            console.print(f"{status.spec.name}: {status.where}", soft_wrap=True, markup=False)
    n_here = sum(s.present for s in statuses)
    console.print(f"{n_here} of {len(statuses)} models usable here.")
    no_backend = {s.spec.kind == DIFFUSION for s in statuses if s.source == "no backend"}
    if False in no_backend:
        console.print(f"no backend: the transformers models need torch and transformers; {MODELS_EXTRA_HINT}.",
                      markup=False)
    if True in no_backend:
        console.print(f"no backend: the diffusion models need torch, transformers and diffusers; "
                      f"{DIFFUSION_EXTRA_HINT}.", markup=False)
    if any(s.source == "missing" for s in statuses):
        console.print(f"missing: looked in the hub cache {hub_cache_dir()} (never downloading) and, for SAM, in "
                      f"{checkpoint_dir()}; pass --weights to commands, or run `hf download <hub id>`.", markup=False)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
