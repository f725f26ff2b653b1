"""What a batch does to each tomogram. A job is a small picklable description, sent to every worker; its `run`
reads one tomogram, writes its results into one folder (report.json last) and returns a one-line summary.

Models are loaded once per worker process (`loaded_once`) and reused for every tomogram that worker runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.copick_project import CopickTarget
from ..models.loaded import loaded_once, model_folder_key
from .tomograms import Tomogram


@dataclass(frozen=True)
class VolumeOptions:
    """How each tomogram is read and its volumes written."""

    voxel_size: tuple[float, float, float] | None = None
    nan_policy: str = "raise"
    volume_format: str = "mrc"

    def read(self, tomogram: Tomogram) -> Any:
        from ..api import load_tomogram

        if tomogram.copick is not None:
            from ..io.copick_project import read_tomogram

            return load_tomogram(read_tomogram(tomogram.copick), self.voxel_size)
        return load_tomogram(tomogram.path, self.voxel_size, self.nan_policy)


def _to_copick(target: CopickTarget | None, tomogram: Tomogram, result: Any) -> None:
    """Store a run's picks and its instance and binary segmentations in the tomogram's copick run (when both the
    tomogram comes from a copick project and the job names a target)."""
    if target is None or tomogram.copick is None:
        return
    from ..io.copick_project import write_picks, write_segmentation

    write_picks(tomogram.copick, target, result.particles, result.instances.voxel_size)
    write_segmentation(tomogram.copick, target, result.instances, instances=True)
    write_segmentation(tomogram.copick, target, result.mask, instances=False)


@dataclass(frozen=True)
class PickJob:
    """Apply a saved pick query (`query.npz`) to each tomogram.

    Attributes:
        query: path of the query.
        changes: settings changed from the query's ({"matching": {"tau_sim": 0.4}, "verify": {"cut": 0.3}, ...};
            settings the query fixes are refused before the batch starts).
        segmenter, features: model names (None: the query's); weights, feature_weights: their weights.
        device: "cpu", "cuda", ... (None: automatic).
        cache_dir: embedding and feature cache (per tomogram stores; shared folder is fine).
        copick: where picks and segmentations go in a copick project (for tomograms read from one).
    """

    query: str
    changes: dict[str, Any] = field(default_factory=dict)
    segmenter: str | None = None
    features: str | None = None
    weights: str | None = None
    feature_weights: str | None = None
    device: str | None = None
    cache_dir: str | None = None
    volume: VolumeOptions = VolumeOptions()
    copick: CopickTarget | None = None
    kind = "pick"

    def check(self) -> None:
        """Refuse, before the batch starts, a query that cannot be read or settings it fixes."""
        self._query_and_config()

    def _query_and_config(self) -> tuple[Any, Any]:
        from ..pipelines.pick_query import PickQuery, with_settings

        query = PickQuery.load(self.query)
        config = with_settings(query.config, **self.changes)
        query.check_config(config)
        return query, config

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.query),)

    def run(self, tomogram: Tomogram, outdir: Path) -> dict[str, Any]:
        from ..api import pick
        from ..models.loaders import load_feature_extractor, load_segmenter

        query, config = self._query_and_config()
        segmenter = self.segmenter or query.models["segmenter"]["name"]
        features = self.features or query.models["features"]["name"]
        (seg, feat), loaded = loaded_once(
            ("pick", segmenter, features, self.weights, self.feature_weights, self.device),
            lambda: (load_segmenter(segmenter, weights=self.weights, device=self.device),
                     load_feature_extractor(features, weights=self.feature_weights, device=self.device)))
        volume = self.volume.read(tomogram)
        result = pick(volume, query=query, segmenter=seg, features=feat, config=config, cache_dir=self.cache_dir)
        result.save(outdir, volume_format=self.volume.volume_format, inputs=self.inputs(),
                    parameters={"tomogram": tomogram.source, "query": self.query})
        _to_copick(self.copick, tomogram, result)
        return {"instances": len(result.particles), "cut": float(result.verification.cut.value),
                "models_loaded": loaded, "pid": os.getpid()}


@dataclass(frozen=True)
class SegmentJob:
    """Segment the prompted instances of each tomogram; prompts from a file per tomogram.

    Attributes:
        prompts: path template with "{name}" for the tomogram's name, e.g. "prompts/{name}.star".
        negatives: the same for negative points (optional; a missing file means none).
        segmenter, weights, device, cache_dir: as for `cryoseg segment`.
        copick: where the instances go in a copick project (for tomograms read from one).
    """

    prompts: str
    negatives: str | None = None
    segmenter: str | None = None
    weights: str | None = None
    device: str | None = None
    cache_dir: str | None = None
    volume: VolumeOptions = VolumeOptions()
    copick: CopickTarget | None = None
    kind = "segment"

    def check(self) -> None:
        if "{name}" not in self.prompts:
            raise InputError(f"--prompts {self.prompts!r} must contain {{name}}, replaced by each tomogram's name")

    def inputs(self) -> tuple[Path, ...]:
        return ()

    def prompt_files(self, tomogram: Tomogram) -> tuple[Path, Path | None]:
        prompts = Path(self.prompts.format(name=tomogram.name))
        if not prompts.is_file():
            raise FileNotFoundError(f"{prompts}: no prompt file for tomogram {tomogram.name}")
        negatives = Path(self.negatives.format(name=tomogram.name)) if self.negatives else None
        return prompts, negatives if negatives is not None and negatives.is_file() else None

    def run(self, tomogram: Tomogram, outdir: Path) -> dict[str, Any]:
        from ..api import segment
        from ..models.loaders import load_segmenter
        from ..models.registry import DEFAULT_SEGMENTER

        prompts, negatives = self.prompt_files(tomogram)
        name = self.segmenter or DEFAULT_SEGMENTER
        seg, loaded = loaded_once(("segment", name, self.weights, self.device),
                                  lambda: load_segmenter(name, weights=self.weights, device=self.device))
        volume = self.volume.read(tomogram)
        result = segment(volume, prompts, negatives, segmenter=seg, cache_dir=self.cache_dir, strict=True)
        result.save(outdir, volume_format=self.volume.volume_format,
                    inputs=tuple(p for p in (prompts, negatives) if p is not None),
                    parameters={"tomogram": tomogram.source, "prompts": str(prompts)})
        _to_copick(self.copick, tomogram, result)
        return {"instances": len(result.kept), "models_loaded": loaded, "pid": os.getpid()}


@dataclass(frozen=True)
class ScsamJob:
    """Segment each tomogram into the classes of a trained ScSAM model (`cryoseg scsam train`)."""

    model: str
    views: tuple[str, ...] = ("z",)
    device: str | None = None
    cache_dir: str | None = None
    volume: VolumeOptions = VolumeOptions()
    kind = "scsam"

    def check(self) -> None:
        from ..pipelines.scsam import MODEL_KIND
        from ..train.folder import load_model_folder

        load_model_folder(self.model, MODEL_KIND)

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.model),)

    def run(self, tomogram: Tomogram, outdir: Path) -> dict[str, Any]:
        from ..pipelines.scsam import load_model, predict

        model, loaded = loaded_once(("scsam", *model_folder_key(self.model), self.device, self.cache_dir),
                                    lambda: load_model(self.model, device=self.device, cache_dir=self.cache_dir))
        volume = self.volume.read(tomogram)
        result = predict(self.model, volume, views=self.views, device=self.device, cache_dir=self.cache_dir,
                         loaded=model)
        result.save(outdir, inputs=[tomogram.path, *self.inputs()])
        return {"classes": len(result.class_names), "models_loaded": loaded, "pid": os.getpid()}


@dataclass(frozen=True)
class UnsupJob:
    """Segment each tomogram into membrane and particles with a trained student (`cryoseg unsup train`)."""

    model: str
    device: str | None = None
    volume: VolumeOptions = VolumeOptions()
    kind = "unsup"

    def check(self) -> None:
        from ..pipelines.unsup import MODEL_KIND, require_student_packages
        from ..train.folder import load_model_folder

        require_student_packages()
        load_model_folder(self.model, MODEL_KIND)

    def inputs(self) -> tuple[Path, ...]:
        return (Path(self.model),)

    def run(self, tomogram: Tomogram, outdir: Path) -> dict[str, Any]:
        from ..pipelines.unsup import load_student, segment

        model, loaded = loaded_once(("unsup", *model_folder_key(self.model), self.device),
                                    lambda: load_student(self.model, self.device))
        volume = self.volume.read(tomogram)
        result = segment(self.model, volume, device=self.device, loaded=model)
        result.save(outdir, [tomogram.path, *self.inputs()])
        return {"particles": result.counts()["particles"], "models_loaded": loaded, "pid": os.getpid()}
