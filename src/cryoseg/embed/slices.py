"""`SliceEmbedder`: each slice of each view embedded at most once, in memory and optionally on disk."""

from __future__ import annotations

import logging
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import VIEWS, check_views, view_image_shape, view_length, view_slice
from ..io.volume import Volume, as_volume_array
from ..models.base import PromptableSegmenter, SliceEmbedding
from .store import SliceStore, make_signature, storage_roundtrip, store_path, volume_hash

logger = logging.getLogger(__name__)


class SliceEmbedder:
    """Hands out `segmenter.embed` results for slices of the z, y and x views of one volume.

    Each slice is embedded at most once: results are kept in memory and, with `cache_dir`, in a signed
    zarr store (`embeddings-<segmenter>-<data hash>.zarr`, float16, one chunk per slice; see `cryoseg.embed.store`),
    so a later run, or another machine given the folder, does no model work for slices already there.
    With a cache, embeddings are float16-rounded (as stored) whether fresh or read back.

    Args:
        segmenter: any `PromptableSegmenter`; its `embedding_arrays`/`embedding_from_arrays` define what
            is stored.
        volume: (Z, Y, X) array or `Volume`.
        cache_dir: folder of the on-disk cache; None keeps embeddings in memory only (until `max_bytes`).
        max_in_memory: keep at most this many embeddings in memory (least recently used are dropped);
            only allowed with a cache, so a dropped slice is read back rather than embedded again.
        max_bytes: keep at most about this many bytes of embeddings in memory (least recently used are dropped).
            Without `cache_dir`, the first time this bound is reached the embeddings start going to a temporary
            on-disk cache (removed with the embedder), so a large tomogram's slices are embedded once each
            without all of them being held in memory.

    Attributes:
        n_computed: number of `segmenter.embed` calls made so far.
        n_loaded: number of embeddings read from the on-disk cache.
    """

    def __init__(self, segmenter: PromptableSegmenter, volume: np.ndarray | Volume,
                 cache_dir: str | Path | None = None, max_in_memory: int | None = None,
                 max_bytes: int | None = None) -> None:
        self.segmenter = segmenter
        self.volume = as_volume_array(volume)
        if max_in_memory is not None and (cache_dir is None or max_in_memory < 1):
            raise InputError("max_in_memory needs a cache_dir and must be at least 1 (dropped slices are reloaded)")
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_in_memory = max_in_memory
        self.max_bytes = max_bytes
        self._bytes: dict[tuple[str, int], int] = {}
        self._spill: tempfile.TemporaryDirectory | None = None
        self.n_computed = 0
        self.n_loaded = 0
        self._memory: OrderedDict[tuple[str, int], SliceEmbedding] = OrderedDict()
        self._store: SliceStore | None = None
        self._done: dict[str, np.ndarray] = {}

    @property
    def store(self) -> SliceStore | None:
        """The on-disk store, opened (and checked against the current signature) on first use."""
        if self._store is None and self.cache_dir is not None:
            data_hash = volume_hash(self.volume)
            path = store_path(self.cache_dir, "embeddings", self.segmenter.name, data_hash)
            signature = make_signature("embeddings", self.volume, data_hash, self.segmenter.signature())
            self._store = SliceStore.open(path, signature, {v: view_length(self.volume.shape, v) for v in VIEWS})
        return self._store

    def get(self, view: str, index: int) -> SliceEmbedding:
        """The embedding of slice `index` of `view` ("z": volume[i], "y": volume[:, i], "x": volume[:, :, i])."""
        view = check_views(view)[0]
        index = int(index)
        key = (view, index)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        image = view_slice(self.volume, view, index)  # validates the index
        store = self.store
        if store is not None:
            if view not in self._done:
                self._done[view] = store.done(view)
            if self._done[view][index]:
                arrays = {k: v[0] for k, v in store.read(view, np.array([index])).items()}
                emb = self.segmenter.embedding_from_arrays(arrays, view_image_shape(self.volume.shape, view))
                self.n_loaded += 1
                return self._remember(key, emb)
        emb = self.segmenter.embed(image)
        self.n_computed += 1
        if store is not None:
            arrays = self.segmenter.embedding_arrays(emb)
            store.write(view, np.array([index]), {k: np.asarray(v)[None] for k, v in arrays.items()},
                        {"image_shape": list(emb.image_shape)})
            self._done[view][index] = True
            # Hand out what a later run will read back, so results do not depend on whether a slice was cached.
            emb = self.segmenter.embedding_from_arrays({k: storage_roundtrip(np.asarray(v)) for k, v in arrays.items()},
                                                       emb.image_shape)
        return self._remember(key, emb)

    def _remember(self, key: tuple[str, int], emb: SliceEmbedding) -> SliceEmbedding:
        self._memory[key] = emb
        if self.max_in_memory is not None:
            while len(self._memory) > self.max_in_memory:
                self._forget()
        if self.max_bytes is not None:
            self._bytes[key] = sum(np.asarray(v).nbytes for v in self.segmenter.embedding_arrays(emb).values())
            if sum(self._bytes.values()) > self.max_bytes:
                if self.cache_dir is None:
                    self._start_spilling()
                while len(self._memory) > 1 and sum(self._bytes.values()) > self.max_bytes:
                    self._forget()
        return emb

    def _forget(self) -> None:
        key, _ = self._memory.popitem(last=False)
        self._bytes.pop(key, None)

    def _start_spilling(self) -> None:
        """Move to a temporary on-disk cache: what is in memory is written there, later slices go there too."""
        self._spill = tempfile.TemporaryDirectory(prefix="cryoseg-embeddings-")
        self.cache_dir = Path(self._spill.name)
        logger.info("embeddings exceed %.1f GB in memory; keeping the rest in a temporary cache %s",
                    self.max_bytes / 1e9, self.cache_dir)
        store = self.store
        for (view, index), emb in self._memory.items():
            arrays = self.segmenter.embedding_arrays(emb)
            store.write(view, np.array([index]), {k: np.asarray(v)[None] for k, v in arrays.items()},
                        {"image_shape": list(emb.image_shape)})
            self._done.setdefault(view, store.done(view))[index] = True
