"""Where a batch runs: a dask.distributed `LocalCluster` sized to this machine (the default), an existing scheduler
by address, or SLURM through dask-jobqueue (optional extra `cryoseg[cluster]`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

logger = logging.getLogger(__name__)

# SLURMCluster keyword -> how a "KEY=VALUE" setting is read; list-valued ones collect every repeat.
SLURM_OPTIONS: dict[str, type] = {
    "queue": str, "account": str, "walltime": str, "memory": str, "cores": int, "processes": int,
    "job_name": str, "job_cpu": int, "job_mem": str, "python": str, "local_directory": str, "log_directory": str,
    "interface": str, "job_extra_directives": list, "job_script_prologue": list,
}


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of the cluster a batch runs on.

    Attributes:
        workers: worker processes of the local cluster (None: as many as this machine's cores and memory allow).
        threads_per_worker: threads per worker; one tomogram runs per thread (models use their own threads).
        memory_per_worker: GB a worker may use (sizes the local cluster; dask restarts a worker beyond it).
        scheduler: address of a running dask scheduler ("tcp://host:8786") to use instead of a local cluster.
        slurm: SLURMCluster settings (queue, account, walltime, memory, cores, job_extra_directives, ...) to run
            workers as SLURM jobs; None: no SLURM.
        jobs: SLURM jobs to start.
    """

    workers: int | None = None
    threads_per_worker: int = 1
    memory_per_worker: float = 4.0
    scheduler: str | None = None
    slurm: dict[str, Any] | None = field(default=None, hash=False)
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if self.threads_per_worker < 1 or self.jobs < 1 or self.memory_per_worker <= 0:
            raise InputError("threads per worker and jobs must be at least 1, memory per worker positive")
        if self.scheduler and self.slurm is not None:
            raise InputError("give a scheduler address or SLURM settings, not both")

    def local_workers(self) -> int:
        """Workers of the local cluster: as given, else limited by cores and by memory."""
        if self.workers is not None:
            return self.workers
        import psutil

        cores = os.cpu_count() or 1
        memory_gb = psutil.virtual_memory().total / 1e9
        return max(1, min(cores // self.threads_per_worker, int(memory_gb // self.memory_per_worker)))


def parse_slurm_options(settings: list[str]) -> dict[str, Any]:
    """SLURMCluster keywords from "KEY=VALUE" strings (see `SLURM_OPTIONS`); list-valued keys collect repeats."""
    out: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in SLURM_OPTIONS:
            raise InputError(f"SLURM setting {setting!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(SLURM_OPTIONS))}")
        kind = SLURM_OPTIONS[key]
        if kind is list:
            out.setdefault(key, []).append(value)
        else:
            try:
                out[key] = kind(value)
            except ValueError:
                raise InputError(f"SLURM setting {key} needs {kind.__name__}, got {value!r}") from None
    return out


def _slurm_cluster(options: dict[str, Any]) -> Any:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InputError("SLURM needs dask-jobqueue: pip install 'cryoseg[cluster]'") from None
    settings = {"cores": 1, "memory": "8GB", "processes": 1, **options}
    return SLURMCluster(**settings)


def slurm_job_script(options: dict[str, Any]) -> str:
    """The job script SLURM workers would be started with (no scheduler or SLURM needed to see it)."""
    cluster = _slurm_cluster(options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


@contextmanager
def connect(config: ClusterConfig) -> Iterator[Any]:
    """A dask.distributed `Client` on the configured cluster, closed (with its cluster) on exit."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError("batch runs need dask.distributed: pip install 'cryoseg[dask]'") from None
    if config.scheduler:
        logger.info("connecting to the dask scheduler at %s", config.scheduler)
        with Client(config.scheduler, timeout="30s") as client:
            yield client
        return
    if config.slurm is not None:
        cluster = _slurm_cluster(config.slurm)
        cluster.scale(jobs=config.jobs)
        logger.info("started %d SLURM job(s); dashboard %s", config.jobs, cluster.dashboard_link)
    else:
        n = config.local_workers()
        logger.info("local dask cluster: %d worker process(es), %d thread(s) each", n, config.threads_per_worker)
        cluster = LocalCluster(n_workers=n, threads_per_worker=config.threads_per_worker, processes=True,
                               memory_limit=f"{config.memory_per_worker}GB", dashboard_address=None)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
