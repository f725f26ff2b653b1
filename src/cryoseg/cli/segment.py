"""`cryoseg segment` (the prompted instances) and `cryoseg pick` (every instance of the kind).

Thin: parse, call `cryoseg.api`, write the outputs. Only options the user set are forwarded; every
default lives in the library's config dataclasses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InputError
from ..matching.config import MODES, MatchingConfig
from ..models.base import DEFAULT_FEATURE_BATCH_SIZE
from ..models.registry import DEFAULT_FEATURES, DEFAULT_SEGMENTER
from ..pipelines.config import PickConfig
from ..pipelines.output import DEFAULT_VOLUME_FORMAT, VOLUME_FORMATS
from ..segment3d.config import SelfPromptConfig
from .common import DEVICE_HELP, NAN_POLICY_HELP, check_output_dir, only_set, say
from .parse import parse_numbers, parse_point, parse_voxel_size

PROMPT_HELP = "A point z,y,x in voxels on an instance (repeat for several)."
PROMPTS_HELP = "Coordinate file of prompts (.star .csv .json .ndjson)."
NEGATIVE_HELP = "A point z,y,x in voxels that belongs to no instance (repeat for several)."


# The library's defaults, quoted in the help (the CLI forwards only what the user sets).
_SEGMENT, _MATCHING, _PICK = SelfPromptConfig(), MatchingConfig(), PickConfig()

# Options shared by `segment` and `pick` (Typer reads them as defaults; one definition each).
TOMO = typer.Argument(..., help="Tomogram: .mrc .rec .map .st .tif .tiff .zarr .ome.zarr")
PROMPT = typer.Option(None, "--prompt", "-p", help=PROMPT_HELP)
NEGATIVE = typer.Option(None, "--negative", "-n", help=NEGATIVE_HELP)
PROMPTS = typer.Option(None, "--prompts", help=PROMPTS_HELP)
NEGATIVES = typer.Option(None, "--negatives", help="Coordinate file of negative points.")
OUTPUT = typer.Option(..., "--output", "-o", help="Output folder.")
SEGMENTER = typer.Option(None, "--segmenter", help="2D segmenter model name (see `cryoseg models`; default "
                                                   f"{DEFAULT_SEGMENTER}).")
WEIGHTS = typer.Option(None, "--weights", help="Segmenter weights: folder, hub id or checkpoint.")
DEVICE = typer.Option(None, "--device", help=DEVICE_HELP)
DTYPE = typer.Option(None, "--dtype", help="Model precision: fp32, fp16 or bf16 (half precision on a GPU only; "
                                           "default fp32).")
TAU_IOU = typer.Option(None, "--tau-iou", help="Stop propagating below this slice-to-slice IoU "
                                               f"(default {_SEGMENT.tau_iou}).")
MAX_SLICES = typer.Option(None, "--max-slices", help="Most slices propagated per direction (default: "
                          f"{'no limit' if _SEGMENT.max_slices is None else _SEGMENT.max_slices}).")
POLARITY = typer.Option(None, "--polarity", help="How density appears: dark, bright or auto (default "
                        f"{_SEGMENT.polarity}); segmenters trained on one polarity (compact-sam) see the slices "
                        "negated when it differs.")
VOXEL_SIZE = typer.Option(None, "--voxel-size", help="Override the header: Å, one value or z,y,x.")
VOLUME_FORMAT = typer.Option(None, "--format", help=f"Volumes as {' or '.join(map(repr, VOLUME_FORMATS))} "
                                                    f"(OME-Zarr); default {DEFAULT_VOLUME_FORMAT!r}.")
OVERWRITE = typer.Option(False, "--overwrite", help="Write into a non-empty output folder.")
NAN_POLICY = typer.Option(None, "--nan-policy", help=NAN_POLICY_HELP)


def _points(inline: list[str] | None, path: Path | None, volume: Any, option: str, what: str) -> Any:
    """Inline points and/or a coordinate file, as (N, 3) z, y, x voxels checked against the volume."""
    import numpy as np

    from ..segment3d.prompts import load_prompts

    parts = []
    if inline:
        parts.append(load_prompts(np.array([parse_point(t, option) for t in inline]), volume, what))
    if path is not None:
        parts.append(load_prompts(path, volume, what))
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def _check_output(output: Path, volume_format: str | None, overwrite: bool, *inputs: Path | None) -> None:
    from ..pipelines.output import check_volume_format

    check_output_dir(output, overwrite, [p for p in inputs if p is not None])
    if volume_format is not None:
        check_volume_format(volume_format)



def _segment_config(tau_iou: float | None, max_slices: int | None, polarity: str | None) -> Any:
    from ..segment3d import SelfPromptConfig

    return SelfPromptConfig(**only_set({"tau_iou": tau_iou, "max_slices": max_slices, "polarity": polarity}))


def pick_changes(tau_iou: float | None = None, max_slices: int | None = None, tau_sim: float | None = None,
                 top_k: int | None = None, mode: str | None = None, size_ratio: str | None = None,
                 cut: float | None = None, polarity: str | None = None) -> dict[str, Any]:
    """The pick settings the user set on the command line, as `with_settings` changes (`cryoseg pick` and
    `cryoseg batch pick`)."""
    changes: dict[str, Any] = {}
    segment = only_set({"tau_iou": tau_iou, "max_slices": max_slices, "polarity": polarity})
    matching = only_set({"tau_sim": tau_sim, "top_k": top_k, "mode": mode})
    if segment:
        changes["segment"] = segment
    if matching:
        changes["matching"] = matching
    if size_ratio is not None:
        changes["size_ratio"] = parse_numbers(size_ratio, "--size-ratio", (2,), meaning="low,high")
    if cut is not None:
        changes["verify"] = {"cut": cut}
    return changes


def _load_volume(tomo: Path, voxel_size: str | None, nan_policy: str | None) -> Any:
    from .. import api

    return api.load_tomogram(tomo, parse_voxel_size(voxel_size) if voxel_size is not None else None,
                             **only_set({"nan_policy": nan_policy}))


def _load_inputs(tomo: Path, voxel_size: str | None, nan_policy: str | None, prompt: list[str] | None,
                 prompts: Path | None, negative: list[str] | None, negatives: Path | None) -> tuple[Any, Any, Any]:
    """The tomogram, its prompts (at least one) and negative points, as both commands read them."""
    volume = _load_volume(tomo, voxel_size, nan_policy)
    points = _points(prompt, prompts, volume, "--prompt", "prompt")
    if not len(points):
        raise InputError("give at least one prompt: --prompt z,y,x or --prompts FILE (pick also takes --query FILE)")
    return volume, points, _points(negative, negatives, volume, "--negative", "negative point")


def segment(
    tomo: Path = TOMO,
    prompt: list[str] | None = PROMPT,
    negative: list[str] | None = NEGATIVE,
    prompts: Path | None = PROMPTS,
    negatives: Path | None = NEGATIVES,
    output: Path = OUTPUT,
    segmenter: str | None = SEGMENTER,
    weights: str | None = WEIGHTS,
    device: str | None = DEVICE,
    dtype: str | None = DTYPE,
    tau_iou: float | None = TAU_IOU,
    max_slices: int | None = MAX_SLICES,
    polarity: str | None = POLARITY,
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Embedding cache folder (reused across runs)."),
    voxel_size: str | None = VOXEL_SIZE,
    volume_format: str | None = VOLUME_FORMAT,
    overwrite: bool = OVERWRITE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Segment the instances under the prompts in 3D (Cross-Plane Self-Prompting)."""
    from .. import api

    _check_output(output, volume_format, overwrite, tomo, prompts, negatives)
    volume, points, negs = _load_inputs(tomo, voxel_size, nan_policy, prompt, prompts, negative, negatives)
    kwargs = only_set({"segmenter": segmenter, "weights": weights, "device": device, "dtype": dtype,
                   "cache_dir": cache_dir})
    config = _segment_config(tau_iou, max_slices, polarity)
    result = api.segment(volume, points, negs, config=config, strict=True, **kwargs)
    files = result.save(output, inputs=tuple(p for p in (tomo, prompts, negatives) if p is not None),
                        parameters={"tomogram": str(tomo)}, **only_set({"volume_format": volume_format}))
    say(f"{len(result.kept)} instance(s) from {len(points)} prompt(s); {result.n_embed} slices embedded, "
        f"{result.n_predict} decode calls; wrote {len(files)} files to {output}")


def pick(
    tomo: Path = TOMO,
    prompt: list[str] | None = PROMPT,
    negative: list[str] | None = NEGATIVE,
    prompts: Path | None = PROMPTS,
    negatives: Path | None = NEGATIVES,
    output: Path = OUTPUT,
    segmenter: str | None = SEGMENTER,
    features: str | None = typer.Option(None, "--features", help=f"Feature extractor model name (default "
                                        f"{DEFAULT_FEATURES})."),
    weights: str | None = WEIGHTS,
    feature_weights: str | None = typer.Option(None, "--feature-weights", help="Feature extractor weights."),
    device: str | None = DEVICE,
    dtype: str | None = DTYPE,
    tau_iou: float | None = TAU_IOU,
    max_slices: int | None = MAX_SLICES,
    polarity: str | None = POLARITY,
    tau_sim: float | None = typer.Option(None, "--tau-sim", help="Similarity a region needs to be searched finer "
                                         f"(default {_MATCHING.tau_sim})."),
    top_k: int | None = typer.Option(None, "--top-k", help=f"Most proposals kept (default {_MATCHING.top_k})."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Slices per feature-extractor call (default "
                                          f"{DEFAULT_FEATURE_BATCH_SIZE})."),
    mode: str | None = typer.Option(None, "--mode", help=f"Matching: {' or '.join(map(repr, MODES))} "
                                                         f"(default {_MATCHING.mode!r})."),
    size_ratio: str | None = typer.Option(
        None, "--size-ratio", help="low,high: keep instances whose volume over the prompted ones' is in range "
                                   f"(default {','.join(f'{v:g}' for v in _PICK.size_ratio)})."),
    cut: float | None = typer.Option(
        None, "--cut", help="Verification score a pick needs, -1 to 1 (default: chosen from the candidates' "
                            "scores, see report.json's verification)."),
    query: Path | None = typer.Option(
        None, "--query", help="Instead of prompts: the query.npz of an earlier pick, to find the same kind here (its "
                              "models and settings are used; thresholds, top-k and the cut may be changed)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Embedding and feature cache folder."),
    voxel_size: str | None = VOXEL_SIZE,
    volume_format: str | None = VOLUME_FORMAT,
    overwrite: bool = OVERWRITE,
    nan_policy: str | None = NAN_POLICY,
) -> None:
    """Find, segment and pick every instance of the kind the prompts point at (CryoSAM)."""
    from .. import api
    from ..pipelines.pick_query import PickQuery, with_settings

    _check_output(output, volume_format, overwrite, tomo, prompts, negatives, query)
    saved = PickQuery.load(query) if query is not None else None
    changes = pick_changes(tau_iou=tau_iou, max_slices=max_slices, tau_sim=tau_sim, top_k=top_k, mode=mode,
                           size_ratio=size_ratio, cut=cut, polarity=polarity)
    config = with_settings(saved.config if saved is not None else PickConfig(), **changes)
    if saved is None:
        volume, points, negs = _load_inputs(tomo, voxel_size, nan_policy, prompt, prompts, negative, negatives)
    else:
        if prompt or prompts is not None:
            raise InputError("give prompts or --query, not both (the query already holds its prompts)")
        volume = _load_volume(tomo, voxel_size, nan_policy)
        points, negs = None, _points(negative, negatives, volume, "--negative", "negative point")
    kwargs = only_set({"segmenter": segmenter, "features": features, "weights": weights,
                   "feature_weights": feature_weights, "device": device, "dtype": dtype,
                   "batch_size": batch_size, "cache_dir": cache_dir})
    result = api.pick(volume, points, negs, config=config, query=saved, **kwargs)
    files = result.save(output, inputs=tuple(p for p in (tomo, prompts, negatives, query) if p is not None),
                        parameters={"tomogram": str(tomo)}, **only_set({"volume_format": volume_format}))
    c = result.counts
    v = result.verification
    source = f"{c['prompts']} prompt(s)" if saved is None else f"the query of {c['query_prompts']} prompt(s)"
    say(f"{c['instances']} instance(s) from {source}: {c['candidates']} candidate(s) verified, "
        f"{c['verified']} at or above the score cut {v.cut.value:.3f} ({v.cut.how}), {c['rejected_size']} of those "
        f"rejected by size; wrote {len(files)} files to {output}")


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)
    app.command("pick")(pick)
