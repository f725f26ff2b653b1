"""Run one job over many tomograms on dask.distributed, one task per tomogram.

The driving process submits every tomogram that is not done, records each outcome in the manifest as it arrives,
resubmits a failed tomogram up to `retries` times (a failure never stops the others), and at the end writes
summary.csv and a preview grid. A worker that dies mid-task (killed, out of memory) has its task rerun on another
worker by dask itself. Interrupted (Ctrl-C), the manifest marks the unfinished tomograms pending: rerunning the same
command skips what is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from ..progress import track
from .cluster import ClusterConfig, connect
from .manifest import Manifest
from .summary import write_summary
from .tomograms import Tomogram

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """How a batch ended.

    Attributes:
        manifest: every tomogram's final record.
        ran: tomograms run in this call (the others were done before).
        seconds: wall-clock seconds of this call.
        files: summary.csv and the preview grid.
    """

    manifest: Manifest
    ran: int
    seconds: float
    files: dict[str, Path]

    @property
    def failed(self) -> list[str]:
        return self.manifest.names("failed")


def job_description(job: Any) -> dict[str, Any]:
    """What identifies a job in the manifest: its kind and settings."""
    return {"kind": job.kind, **(asdict(job) if is_dataclass(job) else {})}


def _run_task(job: Any, tomogram: Tomogram, outdir: str) -> dict[str, Any]:
    """One tomogram, on a worker: run the job and time it."""
    start = time.perf_counter()
    summary = job.run(tomogram, Path(outdir))
    return {**summary, "seconds": time.perf_counter() - start}


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if type(exc).__name__ == "KilledWorker":
        text += " (a worker dies when it runs out of memory: give each worker more with --memory-per-worker)"
    return text


def run_batch(job: Any, tomograms: list[Tomogram], outdir: str | Path, cluster: ClusterConfig | None = None,
              retries: int = 2, on_event: Callable[[str, str, Any], None] | None = None) -> BatchResult:
    """Run `job` on every tomogram not yet done in `outdir`; results go to `outdir/<name>/`.

    Args:
        job: a job of `cryoseg.batch.jobs` (checked here, before any work).
        tomograms: the tomograms.
        outdir: the batch folder (manifest.json, summary.csv, preview_grid.png, one folder per tomogram).
        cluster: where to run (default: a local cluster sized to this machine).
        retries: attempts after the first for a tomogram that failed.
        on_event: called as on_event(name, state, client) after each outcome (progress hooks, tests).

    Returns:
        `BatchResult`; tomograms that failed every attempt are listed in `.failed` with their errors in the
        manifest.
    """
    job.check()
    target = getattr(job, "copick", None)
    if target is not None:
        from ..io.copick_project import check_target

        for config in {t.copick.config for t in tomograms if t.copick is not None}:
            check_target(config, target)
    outdir = Path(outdir)
    manifest = Manifest.open(outdir, job_description(job), tomograms)
    by_name = {t.name: t for t in tomograms}
    todo = [t.name for t in tomograms if manifest.entries[t.name].state != "done"]
    skipped = len(tomograms) - len(todo)
    if skipped:
        logger.info("%d tomogram(s) already done in %s; skipped", skipped, outdir)
    start = time.perf_counter()
    if todo:
        with connect(cluster or ClusterConfig()) as client:
            _drive(client, job, by_name, todo, outdir, manifest, retries, on_event)
    seconds = time.perf_counter() - start
    files = write_summary(manifest, outdir)
    counts = manifest.counts()
    logger.info("batch: %d done, %d failed, %d ran in %.0f s", counts["done"], counts["failed"], len(todo), seconds)
    return BatchResult(manifest, len(todo), seconds, files)


def _drive(client: Any, job: Any, by_name: dict[str, Tomogram], todo: list[str], outdir: Path, manifest: Manifest,
           retries: int, on_event: Callable[[str, str, Any], None] | None) -> None:
    """Submit, collect, retry; on interruption mark what was in flight pending again."""
    from dask.distributed import as_completed

    def submit(name: str) -> Any:
        attempt = manifest.entries[name].attempts + 1
        manifest.update(name, state="running", attempts=attempt)
        return client.submit(_run_task, job, by_name[name], str(outdir / name), key=f"{name}-attempt-{attempt}",
                             pure=False)

    futures = {}
    pending = as_completed()
    for name in todo:
        future = submit(name)
        futures[future.key] = name
        pending.add(future)
    try:
        for future in track(pending, "tomograms", total=len(todo)):
            name = futures.pop(future.key)
            try:
                summary = future.result()
            except Exception as exc:  # any failure of one tomogram is recorded, never raised
                error = _one_line(exc)
                if manifest.entries[name].attempts <= retries:
                    logger.warning("%s failed (attempt %d): %s; retrying", name, manifest.entries[name].attempts,
                                   error)
                    manifest.update(name, error=error)
                    retry = submit(name)
                    futures[retry.key] = name
                    pending.add(retry)
                    continue
                logger.error("%s failed after %d attempt(s): %s", name, manifest.entries[name].attempts, error)
                manifest.update(name, state="failed", error=error)
                state = "failed"
            else:
                manifest.update(name, state="done", error=None, seconds=round(summary.pop("seconds"), 2),
                                output=name, summary=summary)
                state = "done"
            counts = manifest.counts()
            logger.info("%s %s [%d done, %d failed of %d]", name, state, counts["done"], counts["failed"],
                        len(manifest.entries))
            if on_event is not None:
                on_event(name, state, client)
    except BaseException:
        for name in futures.values():
            manifest.update(name, state="pending")
        raise
