"""Whole datasets: one job (a saved pick query, prompts per tomogram, a trained model) run over many tomograms as
tasks on dask.distributed, with a manifest that makes a rerun skip what is done."""

from .cluster import ClusterConfig, slurm_job_script
from .jobs import PickJob, ScsamJob, SegmentJob, UnsupJob
from .manifest import Manifest
from .runner import BatchResult, run_batch
from .tomograms import Tomogram, copick_tomograms, find_tomograms

__all__ = ["BatchResult", "ClusterConfig", "Manifest", "PickJob", "ScsamJob", "SegmentJob", "Tomogram", "UnsupJob",
           "copick_tomograms", "find_tomograms", "run_batch", "slurm_job_script"]
