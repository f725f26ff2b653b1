"""The query of a pick, saved to apply one click to other tomograms (`query.npz`).

Everything a pick learns from its prompts: the matching query (the prompted instances' masked mean feature) and
the negative points' features, the prompted instances' size, the prompted and negative particles as exemplar cubes
of the low-passed tomogram (what verification correlates against), their polarity, and the models, settings and
voxel size they were made with. Applied to another tomogram, a pick skips segmenting prompts and goes straight to
matching, verification and segmentation of what passed.

What must match on reuse, because the saved arrays mean nothing otherwise: the feature extractor (its signature:
name, weights, preprocessing) and the segmenter; the voxel size (within 1 %); and the settings in `FIXED_SETTINGS`.
Every other setting (thresholds, top-k, the cut, size ratio) may be changed per tomogram.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, InputError
from ..geometry import equivalent_radius
from ..io.atomic import atomic_path
from ..io.report import as_json, dataclass_from_json
from ..io.volume import Volume
from ..matching.features import VolumeFeatures
from ..matching.query import make_query, negative_vectors
from ..polarity import polarity_at
from ..verify import Exemplars, as_exemplars, exemplar_half
from .config import PickConfig

QUERY_FILE = "query.npz"
FORMAT = 1
# (section, field) of PickConfig the saved arrays depend on: features per view and slice step (the query vector),
# low-pass, sphere size and shift (the exemplar cubes).
FIXED_SETTINGS = ((None, "feature_views"), (None, "slice_step"), ("verify", "lowpass"), ("verify", "mask_scale"),
                  ("verify", "shift"))


@dataclass
class PickQuery:
    """What to look for in any tomogram of the same kind of data.

    Attributes:
        vector: (C,) float32 unit matching query.
        negative_vectors: (M, C) float32 unit features around the negative points (matching pushes away from them).
        reference_voxels: mean voxel count of the prompted instances (size filter and particle radius).
        exemplars: the prompted particles, cut from the low-passed tomogram.
        negatives: the negative points' particles, cut likewise.
        polarity: "dark" or "bright", how the prompted particles stand out (for blob proposals).
        voxel_size: (3,) Å per voxel z, y, x of the tomogram the query was made on.
        models: {"segmenter": signature, "features": signature} (each a dict with at least "name").
        config: the settings of the pick that made it.
        source: the tomogram it was made on (for messages and the report).
    """

    vector: np.ndarray
    negative_vectors: np.ndarray
    reference_voxels: float
    exemplars: Exemplars
    negatives: Exemplars
    polarity: str
    voxel_size: tuple[float, float, float]
    models: dict[str, dict[str, Any]]
    config: PickConfig
    source: str = ""

    def describe(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return (f"query of {len(self.exemplars)} prompted particle(s){where} "
                f"({self.reference_voxels:.0f} voxels each, {self.voxel_size[0]:g} Å)")

    def save(self, path: str | Path, inputs: tuple[str | Path, ...] = ()) -> Path:
        """Write the query as an .npz (atomic; refuses to replace one of `inputs`)."""
        path = Path(path)
        meta = as_json({"format": FORMAT, "reference_voxels": self.reference_voxels, "polarity": self.polarity,
                        "voxel_size": self.voxel_size, "models": self.models, "config": self.config,
                        "source": self.source})
        with atomic_path(path, inputs) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, meta=np.array(json.dumps(meta)), vector=self.vector,
                                    negative_vectors=self.negative_vectors, exemplar_cubes=self.exemplars.cubes,
                                    exemplar_centres=self.exemplars.centres, negative_cubes=self.negatives.cubes,
                                    negative_centres=self.negatives.centres)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PickQuery:
        """Read a query written by `save`; a missing, truncated or foreign file raises one line."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such query file (a pick writes OUT/{QUERY_FILE})")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays["meta"]))
            if meta.get("format") != FORMAT:
                raise InputError(f"{path}: query format {meta.get('format')!r}; this cryoseg reads format {FORMAT}")
            query = cls(arrays["vector"].astype(np.float32), arrays["negative_vectors"].astype(np.float32),
                        float(meta["reference_voxels"]),
                        Exemplars(arrays["exemplar_cubes"], arrays["exemplar_centres"]),
                        Exemplars(arrays["negative_cubes"], arrays["negative_centres"]), str(meta["polarity"]),
                        tuple(float(v) for v in meta["voxel_size"]), meta["models"],
                        dataclass_from_json(PickConfig, meta["config"]), str(meta.get("source", "")))
        except InputError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            raise CorruptFileError(f"{path}: not a readable cryoseg query ({type(exc).__name__}: {exc})") from None
        if query.vector.ndim != 1 or not len(query.exemplars) or query.exemplars.cubes.ndim != 4:
            raise CorruptFileError(f"{path}: a query without a feature vector or prompted exemplars")
        return query

    def check_models(self, segmenter: dict[str, Any], features: dict[str, Any]) -> None:
        """Refuse models other than the query's (their signatures: name, weights, preprocessing)."""
        for role, used in (("segmenter", segmenter), ("features", features)):
            saved = self.models.get(role, {})
            if as_json(used) != as_json(saved):
                option = "--segmenter/--weights" if role == "segmenter" else "--features/--feature-weights"
                raise InputError(f"the query was made with {role} '{saved.get('name')}' ({_differs(saved, used)}); "
                                 f"this pick uses '{used.get('name')}': give the query's model with {option}, or "
                                 "make a new query")

    def check_config(self, config: PickConfig) -> None:
        """Refuse settings that change what the saved arrays mean (`FIXED_SETTINGS`)."""
        for section, name in FIXED_SETTINGS:
            mine = getattr(getattr(self.config, section) if section else self.config, name)
            theirs = getattr(getattr(config, section) if section else config, name)
            if as_json(mine) != as_json(theirs):
                key = f"{section}.{name}" if section else name
                raise InputError(f"setting {key} = {theirs!r} differs from the query's {mine!r}; a saved query "
                                 "fixes it (make a new query to change it)")

    def check_voxel_size(self, voxel_size: tuple[float, float, float], where: str) -> None:
        """Refuse a tomogram whose voxel size differs from the query's by more than 1 %."""
        if not np.allclose(voxel_size, self.voxel_size, rtol=0.01):
            mine, theirs = _angstrom(self.voxel_size), _angstrom(voxel_size)
            raise InputError(f"{where}: voxel size {theirs} Å, but the query was made at {mine} Å; bin or resample "
                             "the tomogram to the query's voxel size (sizes and exemplars are in voxels)")


def _angstrom(voxel_size: tuple[float, ...]) -> str:
    """"10" for an isotropic voxel size, "10, 10, 12" otherwise."""
    values = [f"{v:g}" for v in voxel_size]
    return values[0] if len(set(values)) == 1 else ", ".join(values)


def _differs(saved: dict[str, Any], used: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(used) if saved.get(k) != used.get(k))
    return "differs in " + ", ".join(keys[:4]) if keys else "differs"


def with_settings(config: PickConfig, **changes: Any) -> PickConfig:
    """`config` with top-level fields or `section={field: value}` changes (only the given fields change)."""
    out = {}
    for key, value in changes.items():
        current = getattr(config, key)
        out[key] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
    return dataclasses.replace(config, **out)


def build_query(features: VolumeFeatures, labels: np.ndarray, centres: np.ndarray, negatives: np.ndarray,
                smooth: np.ndarray, reference_voxels: float, models: dict[str, dict[str, Any]], config: PickConfig,
                volume: Volume) -> PickQuery:
    """The query of the prompted instances of one tomogram.

    Args:
        features: the tomogram's features.
        labels: (Z, Y, X) int labels of the prompted instances (0 elsewhere).
        centres: (P, 3) z, y, x centroids of the prompted instances.
        negatives: (M, 3) z, y, x negative points.
        smooth: (Z, Y, X) the tomogram low-passed by `config.verify.lowpass`.
        reference_voxels: mean voxel count of the prompted instances.
        models: the segmenter's and the extractor's signatures.
        config: the pick's settings.
        volume: the tomogram (voxel size and source).
    """
    radius = equivalent_radius(reference_voxels)
    half = exemplar_half(radius, config.verify)
    negative_features = (negative_vectors(features, negatives, radius) if len(negatives)
                         else np.zeros((0, features.channels), np.float32))
    return PickQuery(make_query(features, labels).vector, negative_features, float(reference_voxels),
                     Exemplars.cut(smooth, centres, half), as_exemplars(smooth, negatives, half),
                     polarity_at(smooth, centres, radius), tuple(volume.voxel_size), models, config,
                     str(volume.source or ""))
