"""`cryoseg batch pick|segment|scsam|unsup`: one job over many tomograms on dask.distributed.

Thin: parse, check everything that can be checked before the cluster starts, run `cryoseg.batch.run_batch`, print
the summary table. Tomograms come as files, quoted glob patterns or list files; results go to OUT/<name>/, with
OUT/manifest.json (every tomogram's state), OUT/summary.csv and OUT/preview_grid.png.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from ..errors import InputError
from .common import DEVICE_HELP, NAN_POLICY_HELP, check_writable, only_set, say
from .parse import parse_voxel_size

batch_app = typer.Typer(help="Run one job over many tomograms (local cores, a dask scheduler, or SLURM).",
                        no_args_is_help=True)

TOMOS = typer.Argument(None, help="Tomograms: files, quoted glob patterns ('data/*.mrc') or list files (.txt, one "
                                  "path per line); or none with --copick.")
COPICK = typer.Option(None, "--copick", help="A copick project's config: run on its tomograms (pick and segment also "
                                             "store their picks and segmentations in it). Needs cryoseg[copick].")
RUNS = typer.Option(None, "--run", help="copick run to include (repeat; default: every run).")
VOXEL_SPACING = typer.Option(None, "--voxel-spacing", help="copick voxel spacing in Å (pick: default the query's).")
TOMO_TYPE = typer.Option("wbp", "--tomo-type", help="copick tomogram type.")
OBJECT = typer.Option(None, "--object", help="copick pickable object the results are stored as (pick: default the "
                                             "query's class name; segment: nothing is stored without it).")
USER_ID = typer.Option("cryoseg", "--user-id", help="copick user id of the stored results.")
SESSION_ID = typer.Option("0", "--session-id", help="copick session id of the stored results.")
OUTPUT = typer.Option(..., "--output", "-o", help="Batch folder: OUT/<tomogram>/ each, manifest.json, summary.csv, "
                                                   "preview_grid.png. Rerun into it to continue.")
WORKERS = typer.Option(None, "--workers", help="Worker processes on this machine (default: as many as its cores and "
                                               "memory allow).")
MEMORY = typer.Option(4.0, "--memory-per-worker", help="GB per worker: sizes the local cluster; a worker beyond it "
                                                       "is restarted and its tomogram retried.")
SCHEDULER = typer.Option(None, "--scheduler", help="Address of a running dask scheduler (tcp://host:8786).")
SLURM = typer.Option(None, "--slurm", help="Run workers as SLURM jobs, with SLURMCluster settings KEY=VALUE "
                                           "(queue=gpu, account=lab, walltime=02:00:00, memory=32GB, cores=4, "
                                           "job_extra_directives=--gres=gpu:1; repeat). Needs cryoseg[cluster].")
JOBS = typer.Option(1, "--jobs", help="SLURM jobs to start.")
JOB_SCRIPT = typer.Option(False, "--print-job-script", help="Print the SLURM job script and exit.")
RETRIES = typer.Option(2, "--retries", help="Attempts after the first for a tomogram that fails.")
DEVICE = typer.Option(None, "--device", help=DEVICE_HELP)
VOXEL_SIZE = typer.Option(None, "--voxel-size", help="Override every header: Å, one value or z,y,x.")
NAN_POLICY = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP)
VOLUME_FORMAT = typer.Option(None, "--format", help="Volumes as 'mrc' or 'zarr' (OME-Zarr); default 'mrc'.")
CACHE_DIR = typer.Option(None, "--cache-dir", help="Embedding and feature cache folder (shared by the workers).")


def _volume_options(voxel_size: str | None, nan_policy: str | None, volume_format: str | None) -> Any:
    from ..batch.jobs import VolumeOptions
    from ..pipelines.output import check_volume_format

    if volume_format is not None:
        check_volume_format(volume_format)
    return VolumeOptions(**only_set({"voxel_size": parse_voxel_size(voxel_size) if voxel_size else None,
                                     "nan_policy": nan_policy, "volume_format": volume_format}))


def _cluster(workers: int | None, memory: float, scheduler: str | None, slurm: list[str] | None, jobs: int) -> Any:
    from ..batch.cluster import ClusterConfig, parse_slurm_options

    return ClusterConfig(workers=workers, memory_per_worker=memory, scheduler=scheduler,
                         slurm=parse_slurm_options(slurm) if slurm is not None else None, jobs=jobs)


def _check_output(output: Path, tomograms: list[Any], job: Any) -> None:
    from ..batch.manifest import MANIFEST

    if output.exists() and not output.is_dir():
        raise InputError(f"output {output} is a file, not a folder")
    check_writable(output / MANIFEST)
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise InputError(f"output folder {output} is not empty and holds no batch (manifest.json); choose another")
    folder = output.resolve()
    for path in [t.path for t in tomograms if t.copick is None] + list(job.inputs()):
        if folder in Path(path).resolve().parents:
            raise InputError(f"input {path} lies inside the output folder {output}; write the batch elsewhere")


def _tomograms(tomos: list[str] | None, copick: Path | None, runs: list[str] | None, voxel_spacing: float | None,
               tomo_type: str) -> list[Any]:
    from ..batch import copick_tomograms, find_tomograms

    if copick is None:
        return find_tomograms(tomos or [])
    if tomos:
        raise InputError("give tomogram files or --copick, not both")
    if voxel_spacing is None:
        raise InputError("--copick needs --voxel-spacing (the copick voxel spacing of the tomograms, in Å)")
    return copick_tomograms(copick, voxel_spacing, tomo_type, runs)


def _target(copick: Path | None, name: str | None, user_id: str, session_id: str) -> Any:
    from ..io.copick_project import CopickTarget

    return CopickTarget(name, user_id, session_id) if copick is not None and name else None


def _run(job: Any, tomograms: Any, output: Path, cluster: Any, retries: int, print_job_script: bool) -> None:
    """Check, run and report a batch; exit 1 when a tomogram failed, 130 when interrupted. `tomograms` is called
    for the tomograms (after the job script, which needs none)."""
    from ..batch import run_batch, slurm_job_script

    if print_job_script:
        if cluster.slurm is None:
            raise InputError("--print-job-script shows the SLURM job script: give the --slurm settings too")
        typer.echo(slurm_job_script(cluster.slurm))
        return
    if retries < 0:
        raise InputError(f"--retries must be 0 or more, got {retries}")
    tomograms = tomograms()
    _check_output(output, tomograms, job)
    job.check()
    try:
        result = run_batch(job, tomograms, output, cluster, retries=retries)
    except KeyboardInterrupt:
        print(f"cryoseg: interrupted; finished tomograms are kept, rerun the same command to continue "
              f"({output / 'manifest.json'})", file=sys.stderr)
        raise typer.Exit(130) from None
    _print_table(result)
    counts = result.manifest.counts()
    say(f"{counts['done']} of {len(result.manifest.entries)} tomogram(s) done ({result.ran} run now, "
        f"{result.seconds:.0f} s), {counts['failed']} failed; wrote {', '.join(str(p) for p in result.files.values())}")
    if counts["failed"]:
        raise typer.Exit(1)


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..batch.summary import summary_rows

    rows = summary_rows(result.manifest)
    if not rows:
        return
    table = Table(title="batch")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    Console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


@batch_app.command("pick")
def pick(
    tomos: list[str] | None = TOMOS,
    query: Path = typer.Option(..., "--query", help="query.npz of an earlier `cryoseg pick` (one click, whole "
                                                    "dataset)."),
    output: Path = OUTPUT,
    segmenter: str | None = typer.Option(None, "--segmenter", help="Segmenter (default: the query's)."),
    features: str | None = typer.Option(None, "--features", help="Feature extractor (default: the query's)."),
    weights: str | None = typer.Option(None, "--weights", help="Segmenter weights."),
    feature_weights: str | None = typer.Option(None, "--feature-weights", help="Feature extractor weights."),
    tau_sim: float | None = typer.Option(None, "--tau-sim", help="Matching similarity threshold (default: the "
                                                                 "query's)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Most proposals per tomogram (default: the query's)."),
    size_ratio: str | None = typer.Option(None, "--size-ratio", help="low,high volume ratio kept (default: the "
                                                                     "query's)."),
    cut: float | None = typer.Option(None, "--cut", help="Verification score a pick needs (default: chosen per "
                                                         "tomogram from its scores)."),
    device: str | None = DEVICE,
    cache_dir: Path | None = CACHE_DIR,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
    volume_format: str | None = VOLUME_FORMAT,
    copick: Path | None = COPICK,
    runs: list[str] | None = RUNS,
    voxel_spacing: float | None = VOXEL_SPACING,
    tomo_type: str = TOMO_TYPE,
    object_name: str | None = OBJECT,
    user_id: str = USER_ID,
    session_id: str = SESSION_ID,
    workers: int | None = WORKERS,
    memory_per_worker: float = MEMORY,
    scheduler: str | None = SCHEDULER,
    slurm: list[str] | None = SLURM,
    jobs: int = JOBS,
    print_job_script: bool = JOB_SCRIPT,
    retries: int = RETRIES,
) -> None:
    """Apply a saved pick query to every tomogram: the same kind, found in each."""
    from ..batch import PickJob
    from ..pipelines.pick_query import PickQuery
    from .segment import pick_changes

    changes = pick_changes(tau_sim=tau_sim, top_k=top_k, size_ratio=size_ratio, cut=cut)
    saved = PickQuery.load(query) if not print_job_script else None
    if copick is not None and saved is not None:
        voxel_spacing = voxel_spacing or saved.voxel_size[0]
        object_name = object_name or saved.config.class_name
    job = PickJob(str(query.resolve()), changes, segmenter, features, weights, feature_weights, device,
                  str(cache_dir) if cache_dir else None, _volume_options(voxel_size, nan_policy, volume_format),
                  _target(copick, object_name, user_id, session_id))
    _run(job, lambda: _tomograms(tomos, copick, runs, voxel_spacing, tomo_type), output,
         _cluster(workers, memory_per_worker, scheduler, slurm, jobs), retries, print_job_script)


@batch_app.command("segment")
def segment(
    tomos: list[str] | None = TOMOS,
    prompts: str = typer.Option(..., "--prompts", help="Prompt file of each tomogram, with {name} for its name: "
                                                       "'prompts/{name}.star'."),
    negatives: str | None = typer.Option(None, "--negatives", help="Negative points likewise (a missing file: "
                                                                   "none)."),
    output: Path = OUTPUT,
    segmenter: str | None = typer.Option(None, "--segmenter", help="2D segmenter model name."),
    weights: str | None = typer.Option(None, "--weights", help="Segmenter weights."),
    device: str | None = DEVICE,
    cache_dir: Path | None = CACHE_DIR,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
    volume_format: str | None = VOLUME_FORMAT,
    copick: Path | None = COPICK,
    runs: list[str] | None = RUNS,
    voxel_spacing: float | None = VOXEL_SPACING,
    tomo_type: str = TOMO_TYPE,
    object_name: str | None = OBJECT,
    user_id: str = USER_ID,
    session_id: str = SESSION_ID,
    workers: int | None = WORKERS,
    memory_per_worker: float = MEMORY,
    scheduler: str | None = SCHEDULER,
    slurm: list[str] | None = SLURM,
    jobs: int = JOBS,
    print_job_script: bool = JOB_SCRIPT,
    retries: int = RETRIES,
) -> None:
    """Segment the prompted instances of every tomogram, prompts from a file per tomogram."""
    from ..batch import SegmentJob

    job = SegmentJob(prompts, negatives, segmenter, weights, device, str(cache_dir) if cache_dir else None,
                     _volume_options(voxel_size, nan_policy, volume_format),
                     _target(copick, object_name, user_id, session_id))
    _run(job, lambda: _tomograms(tomos, copick, runs, voxel_spacing, tomo_type), output,
         _cluster(workers, memory_per_worker, scheduler, slurm, jobs), retries, print_job_script)


@batch_app.command("scsam")
def scsam(
    model: Path = typer.Argument(..., help="Model folder written by `cryoseg scsam train`."),
    tomos: list[str] | None = TOMOS,
    output: Path = OUTPUT,
    views: str = typer.Option("z", "--views", help="Views segmented and fused, e.g. z or z,y,x."),
    device: str | None = DEVICE,
    cache_dir: Path | None = CACHE_DIR,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
    copick: Path | None = COPICK,
    runs: list[str] | None = RUNS,
    voxel_spacing: float | None = VOXEL_SPACING,
    tomo_type: str = TOMO_TYPE,
    workers: int | None = WORKERS,
    memory_per_worker: float = MEMORY,
    scheduler: str | None = SCHEDULER,
    slurm: list[str] | None = SLURM,
    jobs: int = JOBS,
    print_job_script: bool = JOB_SCRIPT,
    retries: int = RETRIES,
) -> None:
    """Segment every tomogram into the classes of a trained ScSAM model."""
    from ..batch import ScsamJob

    job = ScsamJob(str(model.resolve()), tuple(v.strip() for v in views.split(",") if v.strip()), device,
                   str(cache_dir) if cache_dir else None, _volume_options(voxel_size, nan_policy, None))
    _run(job, lambda: _tomograms(tomos, copick, runs, voxel_spacing, tomo_type), output,
         _cluster(workers, memory_per_worker, scheduler, slurm, jobs), retries, print_job_script)


@batch_app.command("unsup")
def unsup(
    model: Path = typer.Argument(..., help="Model folder written by `cryoseg unsup train`."),
    tomos: list[str] | None = TOMOS,
    output: Path = OUTPUT,
    device: str | None = DEVICE,
    voxel_size: str | None = VOXEL_SIZE,
    nan_policy: str | None = NAN_POLICY,
    copick: Path | None = COPICK,
    runs: list[str] | None = RUNS,
    voxel_spacing: float | None = VOXEL_SPACING,
    tomo_type: str = TOMO_TYPE,
    workers: int | None = WORKERS,
    memory_per_worker: float = MEMORY,
    scheduler: str | None = SCHEDULER,
    slurm: list[str] | None = SLURM,
    jobs: int = JOBS,
    print_job_script: bool = JOB_SCRIPT,
    retries: int = RETRIES,
) -> None:
    """Segment every tomogram into membrane and particles with a trained unsupervised student."""
    from ..batch import UnsupJob

    job = UnsupJob(str(model.resolve()), device, _volume_options(voxel_size, nan_policy, None))
    _run(job, lambda: _tomograms(tomos, copick, runs, voxel_spacing, tomo_type), output,
         _cluster(workers, memory_per_worker, scheduler, slurm, jobs), retries, print_job_script)


def register(app: typer.Typer) -> None:
    app.add_typer(batch_app, name="batch")
