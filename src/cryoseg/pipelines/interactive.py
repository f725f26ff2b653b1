"""`InteractiveSession`: one tomogram open for clicking, as in a viewer.

Every click reruns a segmentation or a pick on the same tomogram with a few more points. The session keeps what
does not change between clicks: the models (loaded once per name and weights), each segmenter's slice embeddings
(in memory, and in the on-disk cache folder when one is given, so a later session starts warm too), the instances
already grown (a new positive click segments only its own instance) and, through the cache folder, the per-slice
features of the pick.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io.volume import Volume
from ..models.base import FeatureExtractor, PromptableSegmenter
from ..models.registry import DEFAULT_FEATURES, DEFAULT_SEGMENTER
from ..segment3d import CrossPlaneSegmenter, SelfPromptConfig
from .config import PickConfig
from .pick import PickResult
from .segment import SegmentResult, engine_result


class InteractiveSession:
    """Prompted segmentation and picking of one tomogram, reusing models and embeddings across calls.

    Args:
        volume: the tomogram (Z, Y, X) with its voxel size.
        cache_dir: folder of the on-disk embedding and feature caches (None: embeddings in memory only, features
            computed again for each pick).
        device: "cpu", "cuda", "mps" (None: automatic).

    Not thread-safe: run one call at a time (a viewer runs them one after another in a worker thread).
    """

    def __init__(self, volume: Volume, cache_dir: str | Path | None = None, device: str | None = None) -> None:
        volume.require_voxel_size()
        self.volume = volume
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.device = device
        self._models: dict[tuple, Any] = {}
        self._embedders: dict[tuple, Any] = {}
        self._polarity: str | None = None  # the tomogram's estimated density polarity, once a model needs it
        # the instances grown so far: (model, settings, negatives) they were grown with, their engine, their prompts
        self._grown: tuple[tuple, CrossPlaneSegmenter, np.ndarray] | None = None

    def segmenter(self, name: str = DEFAULT_SEGMENTER, weights: str | Path | None = None) -> PromptableSegmenter:
        """The 2D promptable segmenter `name`, loaded on first use."""
        from ..models.loaders import load_segmenter

        key = ("segmenter", name, None if weights is None else str(weights))
        if key not in self._models:
            self._models[key] = load_segmenter(name, weights=weights, device=self.device)
        return self._models[key]

    def extractor(self, name: str = DEFAULT_FEATURES, weights: str | Path | None = None) -> FeatureExtractor:
        """The feature extractor `name`, loaded on first use."""
        from ..models.loaders import load_feature_extractor

        key = ("features", name, None if weights is None else str(weights))
        if key not in self._models:
            self._models[key] = load_feature_extractor(name, weights=weights, device=self.device)
        return self._models[key]

    def _with_polarity(self, config: SelfPromptConfig, segmenter: PromptableSegmenter) -> SelfPromptConfig:
        """`config` with "auto" polarity replaced by the tomogram's, estimated once per session, for a model trained
        on one polarity (the estimate would otherwise be repeated by every click that starts over)."""
        if config.polarity != "auto" or getattr(segmenter, "polarity", None) is None:
            return config
        if self._polarity is None:
            from ..segment3d.wrappers import tomogram_polarity

            self._polarity = tomogram_polarity(self.volume.data)
        return replace(config, polarity=self._polarity)

    def _embedder(self, segmenter: PromptableSegmenter, memory_gb: float | None):
        """An `EmbedderFactory` handing every run the same `SliceEmbedder` of `segmenter`."""
        from ..embed import SliceEmbedder

        def factory(counting: PromptableSegmenter, data: np.ndarray) -> SliceEmbedder:
            # the polarity the model is shown: a negated view of the slices needs embeddings of its own
            key = (id(segmenter), memory_gb, getattr(counting, "polarity", None))
            if key not in self._embedders:
                self._embedders[key] = SliceEmbedder(counting, data, cache_dir=self.cache_dir,
                                                     max_bytes=None if memory_gb is None else int(memory_gb * 1e9))
            embedder = self._embedders[key]
            embedder.segmenter = counting  # each run counts the model calls it causes itself
            return embedder

        return factory

    def segment(self, prompts: Any, negatives: Any = None, segmenter: str = DEFAULT_SEGMENTER,
                weights: str | Path | None = None, config: SelfPromptConfig | None = None) -> SegmentResult:
        """One 3D instance per prompt, as `cryoseg.segment`, growing only what is new.

        When the previous call had the same segmenter, settings and negatives and its prompts are the first of
        these, its instances are kept and only the new prompts are segmented (after them, so an earlier instance
        keeps its voxels; they are not negatives of each other, as prompts of one call are). Anything else starts
        over.

        Args:
            prompts: (N, 3) z, y, x voxels, one instance each.
            negatives: (M, 3) z, y, x voxels that belong to no instance.
            segmenter, weights: the 2D segmenter (registry name) and its weights.
            config: settings (default `SelfPromptConfig()`).

        Returns:
            `SegmentResult` of every prompt's instance (labels copied); its counts of model calls are this call's.
        """
        from .. import api

        _, points, negs = api.prepared_inputs(self.volume, None, prompts, negatives)
        model = self.segmenter(segmenter, weights)
        config = self._with_polarity(config or SelfPromptConfig(), model)
        key = (id(model), config, negs.tobytes())
        if self._grown is not None and self._grown[0] == key and np.array_equal(points[:len(self._grown[2])],
                                                                                 self._grown[2]):
            engine, done = self._grown[1], len(self._grown[2])
        else:
            engine = CrossPlaneSegmenter(self.volume, model, config,
                                         embedder=self._embedder(model, config.embedding_memory_gb))
            done = 0
        before = (engine.segmenter.n_embed, engine.segmenter.n_predict)
        engine.segment(points[done:], negs)
        self._grown = (key, engine, points)
        return engine_result(engine, before, copy=True)

    def pick(self, prompts: Any, negatives: Any = None, segmenter: str = DEFAULT_SEGMENTER,
             features: str = DEFAULT_FEATURES, weights: str | Path | None = None,
             feature_weights: str | Path | None = None, config: PickConfig | None = None) -> PickResult:
        """Every instance of the prompted kind, as `cryoseg.pick`; negatives also serve as negative exemplars.

        Args:
            prompts: (N, 3) z, y, x voxels on instances of the kind.
            negatives: (M, 3) z, y, x voxels on background or on particles of other kinds (a deleted false pick).
            segmenter, features: registry names; weights, feature_weights: their weights.
            config: settings (default `PickConfig()`).
        """
        from .. import api
        from .pick import pick_instances

        config = config or PickConfig()
        _, points, negs = api.prepared_inputs(self.volume, None, prompts, negatives)
        seg_model = self.segmenter(segmenter, weights)
        config = replace(config, segment=self._with_polarity(config.segment, seg_model))
        return pick_instances(self.volume, seg_model, self.extractor(features, feature_weights), points, negs,
                              config, cache_dir=self.cache_dir,
                              embedder=self._embedder(seg_model, config.segment.embedding_memory_gb))
