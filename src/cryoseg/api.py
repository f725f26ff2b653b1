"""The Python API: `cryoseg.segment` (prompted instances) and `cryoseg.pick` (every instance of the kind).

    >>> import cryoseg
    >>> result = cryoseg.pick("tomo.mrc", prompts=[(40, 120, 96)])
    >>> result.save("out/")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .io.volume import Volume
from .io.volumes import DEFAULT_NAN_POLICY
from .models.registry import DEFAULT_FEATURES, DEFAULT_SEGMENTER

if TYPE_CHECKING:
    from .models.base import FeatureExtractor, PromptableSegmenter
    from .pipelines.config import PickConfig
    from .pipelines.pick import PickResult
    from .pipelines.pick_query import PickQuery
    from .pipelines.segment import SegmentResult
    from .segment3d import SelfPromptConfig

VolumeLike = Volume | np.ndarray | str | Path

logger = logging.getLogger(__name__)


def load_tomogram(volume: VolumeLike, voxel_size: float | tuple[float, float, float] | None = None,
                  nan_policy: str = DEFAULT_NAN_POLICY) -> Volume:
    """A `Volume` from a `Volume`, a (Z, Y, X) array (voxel size `voxel_size` or 1 Å) or a file path.

    `nan_policy` applies to files: "raise" refuses NaN/Inf, "clean" replaces them with the mean."""
    if isinstance(volume, (str, Path)):
        from .io.volumes import read_volume

        return read_volume(volume, voxel_size=voxel_size, nan_policy=nan_policy)
    if isinstance(volume, Volume):
        if voxel_size is not None:
            return Volume(volume.data, voxel_size, volume.origin, volume.source)
        return volume
    arr = np.asarray(volume)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"a tomogram must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise InputError(f"expected a 3D volume (z, y, x), got an array of shape {arr.shape}")
    return Volume(arr, 1.0 if voxel_size is None else voxel_size)


def prepared_inputs(volume: VolumeLike, voxel_size: float | tuple[float, float, float] | None, prompts: Any,
                    negative: Any, need_prompts: bool = True) -> tuple[Volume, np.ndarray, np.ndarray]:
    """The tomogram (with a usable voxel size), its prompts (at least one unless `need_prompts` is False, each
    voxel once) and negative points, all checked before any model is loaded."""
    from .segment3d.prompts import load_prompts, reconcile_prompts

    vol = load_tomogram(volume, voxel_size)
    if min(vol.shape) < 2:  # the views along the thin axis would be 1-pixel-wide slices
        where = f"{vol.source}: " if vol.source else ""
        raise InputError(f"{where}a volume of shape {vol.shape} (z, y, x) is one voxel thick; segmenting in 3D "
                         "needs at least 2 voxels along each axis")
    vol.require_voxel_size()  # the outputs carry Å; refuse now, not after the work
    points = load_prompts(prompts, vol, "prompt")
    negatives = load_prompts(negative, vol, "negative point")
    if need_prompts and not len(points):
        raise InputError("at least one prompt point is needed")
    return vol, reconcile_prompts(points, negatives, vol.shape), negatives


def _files_read(volume: Volume, *sources: Any) -> tuple[Path, ...]:
    """The files a run read: the tomogram's, and each prompt source given as a path."""
    files = [volume.source] if volume.source is not None else []
    return tuple(files + [Path(s) for s in sources if isinstance(s, (str, Path))])


def _segmenter(segmenter: str | PromptableSegmenter, weights: Any, device: str | None,
               dtype: str | None) -> PromptableSegmenter:
    if isinstance(segmenter, str):
        from .models.loaders import load_segmenter

        return load_segmenter(segmenter, weights=weights, device=device, dtype=dtype)
    return segmenter


def _extractor(features: str | FeatureExtractor, weights: Any, device: str | None, dtype: str | None,
               batch_size: int | None) -> FeatureExtractor:
    if isinstance(features, str):
        from .models.loaders import load_feature_extractor

        return load_feature_extractor(features, weights=weights, device=device, dtype=dtype, batch_size=batch_size)
    return features


def segment(volume: VolumeLike, prompts: Any, negative: Any = None,
            segmenter: str | PromptableSegmenter = DEFAULT_SEGMENTER,
            weights: str | Path | None = None, device: str | None = None, dtype: str | None = None,
            cache_dir: str | Path | None = None, voxel_size: float | tuple[float, float, float] | None = None,
            config: SelfPromptConfig | None = None, strict: bool = False) -> SegmentResult:
    """Segment the instances under point prompts in 3D (Cross-Plane Self-Prompting).

    Args:
        volume: tomogram: a `Volume`, a (Z, Y, X) array or a file (MRC, TIFF, OME-Zarr).
        prompts: (N, 3) z, y, x voxels (one instance each), `Particles`, or a coordinate file
            (STAR, CSV, copick JSON, NDJSON).
        negative: points that belong to no instance, same forms as `prompts`.
        segmenter: registry name of the 2D promptable segmenter, or a backend instance.
        weights: weights of the segmenter (folder, hub id or checkpoint), when it needs them.
        device: "cpu", "cuda", "mps" (None: automatic).
        dtype: model precision, "fp32", "fp16" or "bf16" (half precision on a GPU only; None: fp32).
        cache_dir: embedding cache folder (None: in memory only).
        voxel_size: Å per voxel, overriding the file's header (or for a plain array).
        config: settings (default `SelfPromptConfig()`).
        strict: raise `InputError` when a prompt's mask is empty; by default such a prompt is only logged, and
            its record has status "empty" while every other instance is returned.

    Returns:
        `SegmentResult` with an int32 label volume (voxel size kept) and one record per prompt.

    Raises:
        InputError: prompts outside the volume, or (with `strict`) a prompt whose mask is empty.
        UnknownModelError, WeightsNotFoundError: the segmenter cannot be loaded.
    """
    from .pipelines.segment import segment_instances

    vol, points, negatives = prepared_inputs(volume, voxel_size, prompts, negative)
    model = _segmenter(segmenter, weights, device, dtype)
    logger.info("segmenting %d prompt(s) in 3D with '%s'", len(points), getattr(model, "name", type(model).__name__))
    result = segment_instances(vol, model, points, negatives, config, cache_dir=cache_dir)
    result.inputs = _files_read(vol, prompts, negative)
    logger.info("%d instance(s); %d slices embedded, %d decode calls", len(result.kept), result.n_embed,
                result.n_predict)
    for n, record in enumerate(result.records, 1):
        if record.status == "empty":
            z, y, x = record.prompt
            message = (f"prompt {n} at (z, y, x) = ({z:g}, {y:g}, {x:g}) gave an empty mask: nothing there stands "
                       "out from its surroundings (is it on background?)")
            if strict:
                raise InputError(message)
            logger.warning(message)
    return result


def pick(volume: VolumeLike, prompts: Any = None, negative: Any = None,
         segmenter: str | PromptableSegmenter | None = None, features: str | FeatureExtractor | None = None,
         weights: str | Path | None = None, feature_weights: str | Path | None = None, device: str | None = None,
         dtype: str | None = None, batch_size: int | None = None, cache_dir: str | Path | None = None,
         voxel_size: float | tuple[float, float, float] | None = None, config: PickConfig | None = None,
         query: PickQuery | str | Path | None = None) -> PickResult:
    """Segment and pick every instance of the kind the prompts (or a saved query) point at (CryoSAM).

    Args:
        volume: tomogram: a `Volume`, a (Z, Y, X) array or a file (MRC, TIFF, OME-Zarr).
        prompts: one or a few points on instances of the kind: (N, 3) z, y, x voxels, `Particles` or a file.
        negative: points on things that are not of the kind (excluded from masks, pushed away in matching; in
            verification, everything that looks more like them than like the prompted particles scores lower).
        segmenter: registry name of the 2D promptable segmenter, or a backend instance (default: the query's, else
            the registry default).
        features: registry name of the feature extractor, or a backend instance (default likewise).
        weights: weights of the segmenter; feature_weights: of the feature extractor.
        device: "cpu", "cuda", "mps" (None: automatic).
        dtype: model precision, "fp32", "fp16" or "bf16" (half precision on a GPU only; None: fp32).
        batch_size: slices per feature-extractor call (None: the model's default).
        cache_dir: embedding and feature cache folder.
        voxel_size: Å per voxel, overriding the file's header (or for a plain array).
        config: settings (default `PickConfig()`, or the query's).
        query: instead of prompts, the query of an earlier pick (`PickQuery` or its `query.npz`), to find the same
            kind in this tomogram.

    Returns:
        `PickResult`: instance labels, semantic mask, centroid picks scored by verification (with the cut and
        how it was chosen in `.verification`), counts, seconds per stage, any prompted mask that leaked and
        was cut back (`.leaks`), and the query (`.query`, saved as query.npz).
    """
    from .pipelines.pick import pick_instances
    from .pipelines.pick_query import PickQuery

    if query is None:
        vol, points, negatives = prepared_inputs(volume, voxel_size, prompts, negative)
    else:
        query = query if isinstance(query, PickQuery) else PickQuery.load(query)
        vol, points, negatives = prepared_inputs(volume, voxel_size, prompts, negative, need_prompts=False)
        if len(points):
            raise InputError("give prompts or a saved query, not both (the query already holds its prompts)")
        query.check_voxel_size(vol.voxel_size, str(vol.source or "the tomogram"))
        if config is not None:
            query.check_config(config)
    saved = query.models if query is not None else {}
    seg_model = _segmenter(segmenter or saved.get("segmenter", {}).get("name", DEFAULT_SEGMENTER), weights, device,
                           dtype)
    feat_model = _extractor(features or saved.get("features", {}).get("name", DEFAULT_FEATURES), feature_weights,
                            device, dtype, batch_size)
    result = pick_instances(vol, seg_model, feat_model, points, negatives, config, cache_dir=cache_dir, query=query)
    result.inputs = _files_read(vol, prompts, negative)
    return result
