"""`cryoseg demo`: the built-in main job (simulate, pick from one prompt, score against ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    output: Path = typer.Option(Path("cryoseg-demo"), "--output", "-o", help="Output folder."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the simulated tomogram."),
) -> None:
    """Simulate a tomogram, pick one kind of particle from a single prompt, and score it against the truth."""
    from rich.console import Console

    from ..pipelines.demo import run_demo
    from .common import check_output_dir

    check_output_dir(output, overwrite=False)
    result = run_demo(output, seed=seed)
    console = Console()
    z, y, x = (int(v) for v in result.prompt)
    console.print(f"prompted one [bold]{result.class_name}[/] at (z, y, x) = ({z}, {y}, {x})")
    console.print(result.picking.to_table(title=f"Picking {result.class_name} vs ground truth"))
    console.print(result.segmentation.to_table(title="Semantic mask vs ground truth"))
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    console.print(f"time: {seconds}")
    console.print(f"results in {output}/ (pick/preview.png, truth_preview.png, pick/particles.star, report.json)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
