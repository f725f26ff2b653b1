"""Per-slice dense features of the z, y and x views of a volume, optionally cached on disk."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import VIEWS, check_views, resolve_indices, view_length, view_slice
from ..io.volume import Volume, as_volume_array
from ..models.base import DEFAULT_FEATURE_BATCH_SIZE, FeatureExtractor, FeatureMap
from ..progress import track
from .store import SliceStore, make_signature, storage_roundtrip, store_path, volume_hash

logger = logging.getLogger(__name__)


@dataclass
class ViewFeatureStack:
    """Features of some slices of one view.

    Attributes:
        view: "z", "y" or "x" (see `cryoseg.geometry` for which pixels each slice holds).
        indices: (n,) int64 slice indices along the view's axis, ascending.
        features: (n, C, h, w) float32; row k belongs to slice indices[k]. With a cache the values are
            float16-rounded (as stored), so a first and a second run give identical numbers.
        stride: (sy, sx) slice pixels per feature cell.
        image_shape: (H, W) of one slice of this view.
        patch_size: the extractor's patch size in model-input pixels.
        n_computed: how many of these slices the extractor computed in this call (0: all from the cache).
    """

    view: str
    indices: np.ndarray
    features: np.ndarray
    stride: tuple[float, float]
    image_shape: tuple[int, int]
    patch_size: int
    n_computed: int = 0

    def position(self, index: int) -> int:
        """Row of `features` holding slice `index`."""
        k = int(np.searchsorted(self.indices, index))
        if k >= len(self.indices) or self.indices[k] != index:
            raise InputError(f"slice {index} of view {self.view!r} was not extracted")
        return k

    def feature_map(self, index: int) -> FeatureMap:
        """The `FeatureMap` (batch of one) of slice `index`."""
        k = self.position(index)
        return FeatureMap(self.features[k:k + 1], self.stride, self.image_shape, self.patch_size)


# Names used for the same thing elsewhere in the design notes.
FeatureMapStack = ViewFeatureStack
ViewFeatures = ViewFeatureStack


def extract_view_features(
    volume: np.ndarray | Volume,
    extractor: FeatureExtractor,
    views: Sequence[str] = VIEWS,
    cache_dir: str | Path | None = None,
    slices: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    batch_size: int = DEFAULT_FEATURE_BATCH_SIZE,
) -> dict[str, ViewFeatureStack]:
    """Extract features of the slices of each view, computing only what the cache does not hold.

    Args:
        volume: (Z, Y, X) array or `Volume`.
        extractor: any `FeatureExtractor`.
        views: which views, among "z" (slices volume[i], (Y, X)), "y" (volume[:, i], (Z, X)) and
            "x" (volume[:, :, i], (Z, Y)).
        cache_dir: folder of the on-disk cache (`features-<extractor>-<data hash>.zarr` inside); None: no cache.
        slices: slice indices to extract, the same for every view, or a mapping view -> indices;
            None: every slice.
        batch_size: slices per `extractor.extract` call.

    Returns:
        view -> ViewFeatureStack, in the order of `views`.
    """
    vol = as_volume_array(volume)
    views = check_views(views)
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    wanted = {v: resolve_indices(vol.shape, v, slices) for v in views}
    empty = [v for v in views if len(wanted[v]) == 0]
    if empty:
        raise InputError(f"no slices of view {empty[0]!r} were asked for")
    store = None
    if cache_dir is not None:
        data_hash = volume_hash(vol)
        path = store_path(cache_dir, "features", extractor.name, data_hash)
        signature = make_signature("features", vol, data_hash, extractor.signature())
        store = SliceStore.open(path, signature, {v: view_length(vol.shape, v) for v in VIEWS})
    return {v: _extract_view(vol, extractor, v, wanted[v], store, int(batch_size)) for v in views}


def _extract_view(vol: np.ndarray, extractor: FeatureExtractor, view: str, indices: np.ndarray,
                  store: SliceStore | None, batch_size: int) -> ViewFeatureStack:
    done = store.done(view) if store is not None else np.zeros(view_length(vol.shape, view), bool)
    todo, cached = indices[~done[indices]], indices[done[indices]]
    meta = store.view_attrs(view) if len(cached) else {}
    out = None if not meta else np.empty((len(indices), *meta["feature_shape"]), np.float32)
    batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
    for batch in track(batches, description=f"features, view {view}", total=len(batches)):
        images = np.stack([view_slice(vol, view, int(i)) for i in batch])
        fm = extractor.extract(images)
        feats = np.asarray(fm.features)
        if feats.ndim != 4 or feats.shape[0] != len(batch):
            raise InputError(f"feature extractor {extractor.name!r} returned features of shape {feats.shape} "
                             f"for {len(batch)} images; expected (B, C, h, w)")
        batch_meta = {"stride": [float(s) for s in fm.stride], "image_shape": [int(s) for s in fm.image_shape],
                      "patch_size": int(fm.patch_size), "feature_shape": [int(s) for s in feats.shape[1:]]}
        if meta and meta != batch_meta:
            raise InputError(f"feature extractor {extractor.name!r} gave a different output layout for view "
                             f"{view!r} than before ({meta} then {batch_meta}); delete the cache if it is stale")
        if out is None:
            out = np.empty((len(indices), *feats.shape[1:]), np.float32)
        meta = batch_meta
        if store is not None:
            store.write(view, batch, {"features": feats}, meta)
            feats = storage_roundtrip(feats)  # identical to what a later run reads back
        out[np.searchsorted(indices, batch)] = feats
    for k in range(0, len(cached), batch_size):  # read in batches: no second full-size copy in memory
        part = cached[k:k + batch_size]
        out[np.searchsorted(indices, part)] = store.read(view, part)["features"]
    if len(todo):
        logger.info("view %s: computed features of %d slices, %d from the cache", view, len(todo), len(cached))
    return ViewFeatureStack(view=view, indices=indices, features=out, stride=tuple(meta["stride"]),
                            image_shape=tuple(meta["image_shape"]), patch_size=int(meta["patch_size"]),
                            n_computed=len(todo))
