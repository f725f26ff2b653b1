"""Slabs: the few z ranges of a few tomograms that the unsupervised method makes pseudo-labels from.

The user names them ("tomo.mrc:40:60"), or `choose_slabs` picks them by structure content. The paper names the hand
choice as its weak point; choosing automatically means a fresh user gets sensible slabs, and the report says which
ones were used and why, so the choice can be checked and overridden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

MIN_THICKNESS = 3  # z-smoothing compares a slice with both neighbours: thinner slabs have no interior slice


@dataclass(frozen=True)
class Slab:
    """One z range of one tomogram.

    Attributes:
        volume: index of the tomogram in the list of volumes given to the pipeline.
        start: first z slice (inclusive).
        stop: last z slice (exclusive).
        score: the structure score the automatic choice gave it (None when the user chose it).
    """

    volume: int
    start: int
    stop: int
    score: float | None = None

    @property
    def thickness(self) -> int:
        return self.stop - self.start

    def label(self, names: list[str]) -> str:
        """"name:start:stop" for messages, reports and file names."""
        return f"{names[self.volume]}:{self.start}:{self.stop}"


def check_slab(slab: Slab, shape: tuple[int, ...], name: str, min_thickness: int = MIN_THICKNESS) -> Slab:
    """Refuse a slab outside its (Z, Y, X) volume or thinner than `min_thickness` slices, in one line."""
    z = shape[0]
    if not 0 <= slab.start < slab.stop <= z:
        raise InputError(f"slab {name}:{slab.start}:{slab.stop} is outside the volume, which has z slices 0..{z - 1} "
                         "(give START:STOP with 0 <= START < STOP <= the number of slices)")
    if slab.thickness < min_thickness:
        raise InputError(f"slab {name}:{slab.start}:{slab.stop} is {slab.thickness} slice(s) thick; give at least "
                         f"{min_thickness} (z-smoothing needs both neighbours of a slice)")
    return slab


def parse_slab(text: str, names: Sequence[Sequence[str]]) -> Slab:
    """A slab from "TOMOGRAM:START:STOP" (STOP exclusive). TOMOGRAM is one of the names tomogram i may be called
    by, `names[i]` (e.g. its path, file name and name without extension), or its index i."""
    name, sep, rest = str(text).rpartition(":")
    name, sep2, start_text = name.rpartition(":")
    if not (sep and sep2 and name):
        raise InputError(f"a slab is TOMOGRAM:START:STOP (z slices, stop excluded), got {text!r}")
    try:
        start, stop = int(start_text), int(rest)
    except ValueError:
        raise InputError(f"slab {text!r}: START and STOP must be whole numbers") from None
    matches = [i for i, aliases in enumerate(names) if name in aliases]
    if len(matches) == 1:
        return Slab(matches[0], start, stop)
    if not matches and name.isdigit() and int(name) < len(names):
        return Slab(int(name), start, stop)
    known = ", ".join(aliases[0] for aliases in names)
    what = "is ambiguous" if matches else "names no given tomogram"
    raise InputError(f"slab {text!r} {what}; the tomograms are {known} (or their index 0..{len(names) - 1})")


def structure_profile(data: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """How much structure each z slice holds: the variance of the slice smoothed at `sigma` pixels (structures)
    over the variance of what smoothing removed (mostly noise), an SNR-like ratio independent of the grey scale.

    Args:
        data: (Z, Y, X) volume.
        sigma: smoothing scale in pixels; structures larger than this count, finer detail counts as noise.

    Returns:
        (Z,) float64 scores, higher for slices with more visible structure.
    """
    scores = np.empty(data.shape[0])
    for k in range(data.shape[0]):
        image = np.asarray(data[k], dtype=np.float32)
        smooth = ndimage.gaussian_filter(image, sigma)
        noise = float(np.var(image - smooth))
        scores[k] = float(np.var(smooth)) / noise if noise > 0 else 0.0
    return scores


def choose_slabs(volumes: list[np.ndarray], n_slabs: int = 2, thickness: int = 10, margin: float = 0.1,
                 sigma: float = 2.0) -> list[Slab]:
    """Pick the `n_slabs` z ranges with the most structure across `volumes` (without overlap).

    Windows of `thickness` slices are scored by the mean `structure_profile` of their slices; the top and bottom
    `margin` of each tomogram are skipped, because they are often empty or distorted by the missing wedge. A
    tomogram thinner than `thickness` gives one slab of its whole depth.

    Args:
        volumes: (Z, Y, X) volumes.
        n_slabs: slabs to choose in total.
        thickness: slices per slab (at least `MIN_THICKNESS`).
        margin: fraction of z skipped at each end.
        sigma: see `structure_profile`.

    Returns:
        Slabs, best first, each with its score.
    """
    if n_slabs < 1 or thickness < MIN_THICKNESS:
        raise InputError(f"choose at least 1 slab of at least {MIN_THICKNESS} slices (got {n_slabs} of {thickness})")
    if not 0 <= margin < 0.5:
        raise InputError(f"the margin must be in [0, 0.5), got {margin}")
    candidates: list[Slab] = []
    for index, data in enumerate(volumes):
        z = data.shape[0]
        if z < MIN_THICKNESS:
            raise InputError(f"volume {index} has {z} z slice(s); slabs need at least {MIN_THICKNESS}")
        width = min(thickness, z)
        skip = int(margin * z) if z - 2 * int(margin * z) >= width else 0
        profile = structure_profile(data, sigma)
        window = np.convolve(profile, np.ones(width) / width, mode="valid")  # mean score of [k, k + width)
        for start in range(skip, z - skip - width + 1):
            candidates.append(Slab(index, start, start + width, float(window[start])))
    chosen: list[Slab] = []
    for slab in sorted(candidates, key=lambda s: (-(s.score or 0.0), s.volume, s.start)):
        if all(s.volume != slab.volume or slab.stop <= s.start or s.stop <= slab.start for s in chosen):
            chosen.append(slab)
        if len(chosen) == n_slabs:
            break
    return chosen
