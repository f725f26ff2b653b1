"""What a run of `segment` or `pick` returns: the same names for the same things in both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.particles import Particles
from ..io.volume import Volume
from ..segment3d.records import InstanceInfo
from .output import DEFAULT_VOLUME_FORMAT


@dataclass
class RunResult:
    """The instances found in one tomogram.

    Attributes:
        instances: int32 label volume (Z, Y, X), 0 background, with the tomogram's voxel size and origin.
        records: the outcome of every prompt (and, for `pick`, every proposal): `InstanceInfo` with status "ok",
            "empty", "duplicate", "rejected_size" or "skipped"; labels as in `instances`.
        particles: one pick per instance at its centroid (z, y, x voxels), `instance_ids` = label ids.
        iou_scores: (N,) mean predicted IoU of each particle's 2D masks.
        counts: how many prompts, instances, ... and `n_embed` (slices embedded by the segmenter, cache hits not
            counted) and `n_predict` (batched decode calls).
        seconds: wall-clock seconds per stage.
        config: the settings used.
        models: backend names, {"segmenter": ..., "features": ...} (features for `pick` only), and
            "segmenter_slices" when the segmenter was shown negated slices for its density polarity.
        volume: the tomogram (kept for previews; not copied).
        inputs: the files the run read (tomogram, prompt files); `save` never replaces one.
    """

    instances: Volume
    records: list[InstanceInfo]
    particles: Particles
    iou_scores: np.ndarray
    counts: dict[str, int]
    seconds: dict[str, float]
    config: Any
    models: dict[str, str]
    volume: Volume | None = field(default=None, repr=False, compare=False, kw_only=True)
    inputs: tuple[Path, ...] = field(default=(), kw_only=True)

    @property
    def mask(self) -> Volume:
        """Semantic mask: uint8 (Z, Y, X), 1 where any instance is."""
        return Volume((self.instances.data > 0).astype(np.uint8), self.instances.voxel_size, self.instances.origin)

    @property
    def kept(self) -> list[InstanceInfo]:
        """The records of the instances present in `instances`."""
        return [r for r in self.records if r.status == "ok"]

    @property
    def n_embed(self) -> int:
        return self.counts["n_embed"]

    @property
    def n_predict(self) -> int:
        return self.counts["n_predict"]

    def report(self, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """The content of report.json: parameters (the config and `parameters`), models, counts, seconds."""
        return {"parameters": {"config": self.config, **(parameters or {})}, "models": self.models,
                "counts": self.counts, "seconds": self.seconds}

    def particle_columns(self) -> dict[str, np.ndarray] | None:
        """Per-particle columns for particles_scores.csv (None: no such table)."""
        return None

    def extra_files(self) -> dict[str, tuple[str, Callable[[Path, tuple[Path, ...]], Any]]]:
        """More files for the run folder: {key: (file name, write(path, inputs))} (none by default)."""
        return {}

    def preview_point(self) -> np.ndarray | None:
        """(3,) z, y, x where the preview's planes cross: the first prompt that gave an instance, else the first."""
        first = next((r.prompt for r in self.records if r.status == "ok"), None)
        return first if first is not None else (self.records[0].prompt if self.records else None)

    def save(self, outdir: str | Path, volume_format: str = DEFAULT_VOLUME_FORMAT, inputs: tuple[str | Path, ...] = (),
             parameters: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write instances and mask (MRC or OME-Zarr), picks (RELION 4 and 5 STAR, CSV, copick JSON), tables, a
        preview PNG and report.json into `outdir` (report.json last: a folder without it is incomplete).

        Args:
            outdir: output folder (created).
            volume_format: "mrc" or "zarr" (OME-Zarr) for the volumes.
            inputs: more files that must not be overwritten (besides `self.inputs`).
            parameters: extra entries for the report (e.g. the command line).

        Returns:
            {name: path} of every file written.
        """
        from .output import write_outputs  # noqa: PLC0415 (kept beside its one use)

        return write_outputs(outdir, labels=self.instances, particles=self.particles, instances=self.records,
                             report=self.report(parameters), tomogram=self.volume, point=self.preview_point(),
                             volume_format=volume_format, inputs=(*self.inputs, *inputs),
                             extra_columns=self.particle_columns(), extra_files=self.extra_files())
