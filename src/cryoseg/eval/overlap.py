"""Sparse overlap (contingency) table of two label arrays, computed chunk by chunk.

One pass over the data: each chunk's label pairs are packed into one integer code and counted with
`np.bincount`, so no per-class boolean copies are made and memory stays at a few chunk-sized
temporaries, even for 200 x 512 x 512 volumes or memory-mapped files.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume

logger = logging.getLogger(__name__)

CHUNK_VOXELS = 1 << 21  # ~2 M voxels per chunk: a few 16 MB temporaries (~64 MB peak)
_DENSE_BINS = 1 << 22  # the largest dense bincount table used for one chunk


def label_array(value: Any, name: str) -> np.ndarray:
    """The label array of a `Volume` or array-like, checked to be bool, integer, or integral floats.

    Float arrays are accepted (label maps are often stored as float32 MRC); non-integral values are
    rejected chunk by chunk in `overlap_table`.
    """
    data = value.data if isinstance(value, Volume) else value
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.ndim == 0:
        raise InputError(f"{name} must be an array of labels, got a scalar")
    if not (data.dtype == bool or np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise InputError(f"{name} must hold integer labels or a boolean mask, got dtype {data.dtype}")
    return data


def check_same_shape(pred: Any, truth: Any, pred_arr: np.ndarray, truth_arr: np.ndarray) -> None:
    """Raise if the shapes differ; warn if two Volumes have different voxel sizes."""
    if pred_arr.shape != truth_arr.shape:
        raise InputError(
            f"prediction and ground truth have different shapes: {pred_arr.shape} vs {truth_arr.shape} (z, y, x)"
        )
    if isinstance(pred, Volume) and isinstance(truth, Volume):
        if not np.allclose(pred.voxel_size, truth.voxel_size, rtol=0.01):
            logger.warning("prediction voxel size %s Å differs from ground truth %s Å", pred.voxel_size,
                        truth.voxel_size)


def _as_int(chunk: np.ndarray, name: str) -> np.ndarray:
    if chunk.dtype == bool:
        return chunk.astype(np.int64)
    if np.issubdtype(chunk.dtype, np.floating):
        if not np.all(np.isfinite(chunk)) or np.any(chunk != np.round(chunk)):
            raise InputError(f"{name} holds non-integer values; expected a label map or a boolean mask")
    return chunk.astype(np.int64, copy=False)


def _chunk_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (a, b) label pairs in one chunk and their counts."""
    amin, amax, bmin, bmax = int(a.min()), int(a.max()), int(b.min()), int(b.max())
    na, nb = amax - amin + 1, bmax - bmin + 1
    if na * nb <= _DENSE_BINS:
        code = (a - amin) * nb + (b - bmin)
        counts = np.bincount(code, minlength=na * nb)
        nz = np.flatnonzero(counts)
        return nz // nb + amin, nz % nb + bmin, counts[nz]
    # Sparse ids (e.g. instance labels up to millions): compact them first.
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    code = ia.astype(np.int64) * ub.size + ib
    codes, counts = np.unique(code, return_counts=True)
    return ua[codes // ub.size], ub[codes % ub.size], counts


def overlap_table(a: np.ndarray, b: np.ndarray, a_name: str = "prediction",
                  b_name: str = "ground truth") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count voxels for every pair of labels that co-occur.

    Args:
        a, b: label arrays of the same shape (any dimensionality; chunks run along the first axis,
            z for a (Z, Y, X) volume). bool, integer, or integral float.

    Returns:
        (a_ids, b_ids, counts): (P,) int64 arrays; counts[k] voxels have label a_ids[k] in `a` and
        b_ids[k] in `b`. Only pairs with counts > 0 are listed, sorted by (a_id, b_id).
    """
    if a.size == 0:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    a2 = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    b2 = b.reshape(b.shape[0], -1) if b.ndim > 1 else b.reshape(-1, 1)
    step = max(1, CHUNK_VOXELS // max(1, a2.shape[1]))
    parts = []
    for start in range(0, a2.shape[0], step):
        ac = _as_int(np.asarray(a2[start:start + step]).ravel(), a_name)
        bc = _as_int(np.asarray(b2[start:start + step]).ravel(), b_name)
        parts.append(_chunk_pairs(ac, bc))
    a_ids = np.concatenate([p[0] for p in parts])
    b_ids = np.concatenate([p[1] for p in parts])
    counts = np.concatenate([p[2] for p in parts])
    if len(parts) == 1:
        return a_ids, b_ids, counts
    pairs, inverse = np.unique(np.stack([a_ids, b_ids], axis=1), axis=0, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=counts).astype(np.int64)
    return pairs[:, 0], pairs[:, 1], summed
