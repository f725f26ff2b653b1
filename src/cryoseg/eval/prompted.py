"""How well one prompt segments one object: the IoU of each single-prompt 3D segmentation (cross-plane
self-prompting) against the object's true mask. Compact-sam's training validates with it and the compact-model
benchmark reports it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..segment3d import SelfPromptConfig


def single_prompt_ious(segmenter: Any, volume: Any, cases: Iterable[tuple[np.ndarray, np.ndarray]],
                       config: SelfPromptConfig | None = None, cache_dir: str | Path | None = None) -> list[float]:
    """The IoU of each case's single-prompt 3D segmentation against its true mask. Each prompt is segmented on its
    own (no other prompt is a negative); every slice is embedded at most once for all of them.

    Args:
        segmenter: a `PromptableSegmenter`.
        volume: the tomogram, a `Volume` or a (Z, Y, X) array.
        cases: (point, truth) pairs: point (3,) z, y, x voxels; truth (Z, Y, X) bool, the object's mask.
        config: `SelfPromptConfig` of the segmentations (default settings when None).
        cache_dir: folder of the embedding cache (none when None).
    """
    from dataclasses import replace

    from ..io.volume import Volume
    from ..segment3d import CrossPlaneSegmenter, SelfPromptConfig
    from ..segment3d.wrappers import resolved_polarity

    volume = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
    config = config or SelfPromptConfig()
    # estimated once: every engine shows the model the slices as the first did, whose embeddings they share
    config = replace(config, polarity=resolved_polarity(segmenter, volume.data, config.polarity))
    scores: list[float] = []
    first = None  # the first engine: its slice embedder serves the others
    for point, truth in cases:
        shared = None if first is None else (lambda *_: first.embedder.inner)
        engine = CrossPlaneSegmenter(volume, segmenter, config, embedder=shared, cache_dir=cache_dir)
        first = first or engine
        engine.segment(np.asarray(point, np.float64)[None])
        found = np.asarray(engine.labels) > 0
        scores.append(np.count_nonzero(found & truth) / max(1, np.count_nonzero(found | truth)))
    return scores
