"""Signed on-disk stores of per-slice arrays (zarr), shared by the feature cache and the embedding cache.

Layout of one store (a zarr group, format 2):

    <name>.zarr/                 attrs: cryoseg_cache (format), signature {format, kind, data, model, cryoseg_version}
        <view>/                  attrs: whatever the writer records (stride, image_shape, ...)
            done                 (n_slices,) uint8, one chunk per slice: 1 once the slice's data is complete
            data/<array name>    (n_slices, ...) float16 (floating arrays) or the array's own dtype, one chunk per slice

Crash safety: the signature is written when the store is created, before any data; a slice's `done`
flag is written only after all of its arrays, in its own chunk, so an interrupted run leaves slices that
are simply computed again. Each volume has its own store (its data hash is in the name, see `store_path`);
a store whose signature differs from the current one (other model parameters or weights, another cryoseg
version) is deleted and rebuilt, with a warning saying which field differs. Two processes must not write the same store at the same time.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import CorruptFileError, InputError
from ..io.report import as_json
from ..io.zarrs import new_array, new_group

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FP16_MAX = float(np.finfo(np.float16).max)


def volume_hash(volume: np.ndarray) -> str:
    """blake2b (128 bit) of a (Z, Y, X) array's shape, dtype and every byte, read slice by slice.

    Slice by slice so a memory-mapped tomogram is never copied whole; ~0.5 s for 200 x 512 x 512 float32.
    Raises `InputError` on NaN or infinite values, before anything is written to a cache.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(int(s) for s in volume.shape), str(volume.dtype))).encode())
    floating = np.issubdtype(volume.dtype, np.floating)
    for z in range(volume.shape[0]):
        plane = np.ascontiguousarray(volume[z])
        if floating and not np.isfinite(plane).all():
            raise InputError(f"volume slice z={z} contains NaN or infinite values; clean the volume first")
        h.update(plane.tobytes())
    return h.hexdigest()


def make_signature(kind: str, volume: np.ndarray, data_hash: str, model_signature: dict[str, Any]) -> dict[str, Any]:
    """What a store's contents depend on.

    Args:
        kind: "features" or "embeddings".
        volume: the (Z, Y, X) array (for its shape and dtype).
        data_hash: `volume_hash(volume)`.
        model_signature: the extractor's or segmenter's `signature()` (name, weights hash, preprocessing).
    """
    return as_json({
        "format": FORMAT_VERSION,
        "kind": kind,
        "data": {"shape": list(volume.shape), "dtype": str(volume.dtype), "blake2b": data_hash},
        "model": model_signature,
        "cryoseg_version": __version__,
    })


def signature_difference(cached: Any, current: dict[str, Any]) -> str | None:
    """Why a store signed `cached` cannot serve `current`, in words; None when they agree."""
    if not isinstance(cached, dict):
        return "it has no signature (an interrupted first write, or not a cryoseg cache)"
    reasons = []
    if cached.get("format") != current["format"]:
        reasons.append(f"cache format differs (cached {cached.get('format')}, now {current['format']})")
    if cached.get("kind") != current["kind"]:
        reasons.append(f"it holds {cached.get('kind')}, not {current['kind']}")
    old_data, new_data = cached.get("data") or {}, current["data"]
    if old_data.get("shape") != new_data["shape"] or old_data.get("dtype") != new_data["dtype"]:
        reasons.append(f"the volume differs (cached shape {old_data.get('shape')} {old_data.get('dtype')}, "
                       f"now {new_data['shape']} {new_data['dtype']})")
    elif old_data.get("blake2b") != new_data["blake2b"]:
        reasons.append("the volume's data hash differs (the tomogram changed)")
    old_model, new_model = cached.get("model") or {}, current["model"]
    if not isinstance(old_model, dict):
        old_model = {"model": old_model}
    for key in sorted(set(old_model) | set(new_model)):
        if old_model.get(key) != new_model.get(key):
            reasons.append(f"model signature field {key!r} differs (cached {old_model.get(key)!r}, "
                           f"now {new_model.get(key)!r})")
    if cached.get("cryoseg_version") != current["cryoseg_version"]:
        reasons.append(f"cryoseg version differs (cached {cached.get('cryoseg_version')}, "
                       f"now {current['cryoseg_version']})")
    return "; ".join(reasons) or None


def store_path(cache_dir: str | Path, kind: str, model_name: str, data_hash: str) -> Path:
    """`<cache_dir>/<kind>-<model name, made filename-safe>-<first 12 hex digits of the data hash>.zarr`.

    The data hash is in the name so that one cache folder serves many tomograms without them evicting each
    other; a store whose other signature fields (model weights, preprocessing, version) differ is rebuilt."""
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise InputError(f"cache directory {cache_dir} exists and is not a directory")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_name)).strip("._") or "model"
    return cache_dir / f"{kind}-{safe}-{data_hash[:12]}.zarr"


def _is_zarr_dir(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


class SliceStore:
    """One signed zarr store of per-slice arrays for the views of one volume (see the module doc)."""

    def __init__(self, path: Path, group: Any, lengths: dict[str, int]) -> None:
        self.path = path
        self._group = group
        self._lengths = lengths

    @classmethod
    def open(cls, path: str | Path, signature: dict[str, Any], lengths: dict[str, int]) -> SliceStore:
        """Open the store at `path` if its signature matches, else (re)create it, logging why.

        Args:
            path: the store directory (`store_path(...)`).
            signature: from `make_signature`.
            lengths: number of slices of each view ("z", "y", "x") of the volume.
        """
        import zarr

        path = Path(path)
        if path.exists():
            if not path.is_dir() or not _is_zarr_dir(path):
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
                else:
                    raise InputError(f"{path} exists and is not a cryoseg cache store; refusing to replace it")
        if path.exists():
            try:
                group = zarr.open_group(str(path), mode="r+")
                reason = signature_difference(dict(group.attrs).get("signature"), signature)
            except Exception as exc:  # any unreadable store is rebuilt, not trusted
                reason = f"it cannot be read ({type(exc).__name__}: {exc})"
            if reason is None:
                logger.debug("reusing cache %s", path)
                return cls(path, group, lengths)
            logger.warning("rebuilding cache %s because %s", path, reason)
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        group = new_group(path)
        # The signature goes in before any data, so a half-written store is at worst missing slices.
        group.attrs.update({"cryoseg_cache": FORMAT_VERSION, "signature": signature})
        return cls(path, group, lengths)

    def _view(self, view: str, create: bool = False) -> Any | None:
        if view in self._group:
            return self._group[view]
        if not create:
            return None
        g = self._group.create_group(view)
        new_array(g, "done", shape=(self._lengths[view],), chunks=(1,), dtype="uint8")
        g.create_group("data")
        return g

    def done(self, view: str) -> np.ndarray:
        """(n_slices,) bool: which slices of `view` are complete in the store."""
        g = self._view(view)
        if g is None:
            return np.zeros(self._lengths[view], bool)
        try:
            return np.asarray(g["done"][:]) == 1
        except Exception as exc:
            raise CorruptFileError(f"cache {self.path} is damaged ({exc}); delete it to rebuild") from exc

    def view_attrs(self, view: str) -> dict[str, Any]:
        """What the writer recorded about `view` (empty when nothing was written)."""
        g = self._view(view)
        return {} if g is None else dict(g.attrs)

    def write(self, view: str, indices: np.ndarray, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        """Store slices `indices` of `view`, then mark them done.

        Args:
            view: "z", "y" or "x".
            indices: (n,) slice indices.
            arrays: name -> (n, ...) array; floating arrays are stored as float16.
            attrs: JSON-able facts about the view (e.g. stride, image_shape), recorded once.
        """
        g = self._view(view, create=True)
        if not dict(g.attrs):
            g.attrs.update(as_json(attrs))
        data = g["data"]
        for name, values in arrays.items():
            values = to_storage(values)
            item = tuple(values.shape[1:])
            if name not in data:
                new_array(data, name, shape=(self._lengths[view], *item), chunks=(1, *item), dtype=values.dtype)
            arr = data[name]
            if tuple(arr.shape[1:]) != item or arr.dtype != values.dtype:
                raise InputError(f"cache {self.path}: array {name!r} of view {view!r} was stored as "
                                 f"{arr.shape[1:]} {arr.dtype}, now {item} {values.dtype}; delete the cache")
            for k, i in enumerate(indices):
                arr[int(i)] = values[k]
        done = g["done"]
        for i in indices:  # after the data: an interrupted write leaves the slice not done
            done[int(i)] = 1

    def read(self, view: str, indices: np.ndarray) -> dict[str, np.ndarray]:
        """name -> (n, ...) arrays of slices `indices` of `view`; float16 comes back as float32."""
        g = self._view(view)
        if g is None:
            raise InputError(f"cache {self.path} holds nothing for view {view!r}")
        out = {}
        try:
            for name in g["data"].array_keys():
                values = np.asarray(g["data"][name].oindex[np.asarray(indices, dtype=np.int64)])
                out[name] = values.astype(np.float32) if values.dtype == np.float16 else values
        except Exception as exc:
            raise CorruptFileError(f"cache {self.path} is damaged ({exc}); delete it to rebuild") from exc
        return out


def to_storage(values: np.ndarray) -> np.ndarray:
    """The array as stored: floating point becomes float16 (clipped to its range), other dtypes are kept."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.floating):
        return np.clip(values, -_FP16_MAX, _FP16_MAX).astype(np.float16)
    return values


def storage_roundtrip(values: np.ndarray) -> np.ndarray:
    """What reading `values` back from a store gives (float16-rounded float32 for floating arrays)."""
    stored = to_storage(values)
    return stored.astype(np.float32) if stored.dtype == np.float16 else stored
