"""What prompted 3D segmentation returns: an instance label volume and one record per prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.particles import Particles
from ..io.volume import Volume
from .config import SelfPromptConfig

# Why an instance has no voxels in the label volume (status "ok" means it has).
STATUSES = ("ok", "empty", "duplicate", "rejected_size", "skipped")


@dataclass
class InstanceInfo:
    """One prompt and the instance grown from it.

    Attributes:
        label: its id in the label volume (0 when status is not "ok").
        prompt: (3,) z, y, x voxels of the prompt point.
        status: "ok"; "empty" (no mask in any plane); "duplicate" (the prompt lies in an earlier instance,
            whose label is `duplicate_of`); "rejected_size" (removed by a pipeline's size filter);
            "skipped" (a pipeline proposal inside an instance already found; not segmented).
        voxels: number of voxels.
        centroid: (3,) z, y, x voxels (NaN when empty).
        bbox: (z0, y0, x0, z1, y1, x1), end exclusive, or None when empty.
        score: mean predicted IoU of the 2D masks it was built from (NaN when there were none).
        n_planes: number of 2D masks in its union.
        slices: slices accepted per propagation direction, keys "+z", "-z", "+y", "-y", "+x", "-x".
        duplicate_of: label of the instance holding the prompt, for status "duplicate".
    """

    label: int
    prompt: np.ndarray
    status: str
    voxels: int = 0
    centroid: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    bbox: tuple[int, int, int, int, int, int] | None = None
    score: float = float("nan")
    n_planes: int = 0
    slices: dict[str, int] = field(default_factory=dict)
    duplicate_of: int = 0

    def as_row(self) -> dict[str, Any]:
        """A flat dict (for CSV tables and JSON reports)."""
        row: dict[str, Any] = {"label": self.label, "status": self.status,
                               "prompt_z": self.prompt[0], "prompt_y": self.prompt[1], "prompt_x": self.prompt[2],
                               "voxels": self.voxels, "centroid_z": self.centroid[0],
                               "centroid_y": self.centroid[1], "centroid_x": self.centroid[2],
                               "score": self.score, "n_planes": self.n_planes}
        for key in ("+z", "-z", "+y", "-y", "+x", "-x"):
            row[f"slices{key}"] = self.slices.get(key, 0)
        return row


@dataclass
class SegmentationResult:
    """Prompted 3D instance segmentation of one volume.

    Attributes:
        labels: int32 label volume (Z, Y, X), 0 background, with the input's voxel size and origin.
        instances: one `InstanceInfo` per prompt, in prompt order.
        n_embed: slices embedded by the model (cache hits not counted).
        n_predict: batched decode calls.
        seconds: wall-clock seconds per stage.
        config: the settings used.
        segmenter: name of the 2D segmenter backend.
        volume: the segmented tomogram (kept for previews; not copied).
    """

    labels: Volume
    instances: list[InstanceInfo]
    n_embed: int
    n_predict: int
    seconds: dict[str, float]
    config: SelfPromptConfig
    segmenter: str
    volume: Volume | None = field(default=None, repr=False, compare=False)

    @property
    def kept(self) -> list[InstanceInfo]:
        """The instances present in `labels`."""
        return [i for i in self.instances if i.status == "ok"]

    def mask(self) -> Volume:
        """Semantic mask: uint8 (Z, Y, X), 1 where any instance is."""
        return Volume((self.labels.data > 0).astype(np.uint8), self.labels.voxel_size, self.labels.origin)

    def particles(self) -> Particles:
        """Instance centroids (z, y, x voxels) with predicted-IoU scores and instance ids."""
        kept = self.kept
        return Particles(np.array([i.centroid for i in kept]).reshape(-1, 3),
                         classes=np.ones(len(kept), dtype=np.int64),
                         scores=np.array([i.score for i in kept], dtype=np.float64),
                         instance_ids=np.array([i.label for i in kept], dtype=np.int64),
                         class_names={1: "instance"})

    def save(self, outdir: str | Path, volume_format: str = "mrc", inputs: tuple[str | Path, ...] = (),
             parameters: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write labels, mask, centroids (STAR 4 and 5, CSV, copick JSON), an instance table, a preview and a report.

        Args:
            outdir: output folder (created).
            volume_format: "mrc" or "zarr" (OME-Zarr) for the volumes.
            inputs: files that must not be overwritten.
            parameters: extra entries for the report (e.g. the command line).
        """
        from .output import write_outputs

        report = {"parameters": {"config": self.config, **(parameters or {})},
                  "models": {"segmenter": self.segmenter},
                  "counts": {"prompts": len(self.instances), "instances": len(self.kept),
                             "empty": sum(i.status == "empty" for i in self.instances),
                             "duplicate": sum(i.status == "duplicate" for i in self.instances),
                             "embed_calls": self.n_embed, "predict_calls": self.n_predict},
                  "seconds": self.seconds}
        prompts = np.array([i.prompt for i in self.instances]).reshape(-1, 3)
        return write_outputs(outdir, labels=self.labels, particles=self.particles(), instances=self.instances,
                             report=report, tomogram=self.volume, point=prompts[0] if len(prompts) else None,
                             volume_format=volume_format, inputs=inputs)
