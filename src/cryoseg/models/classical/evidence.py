"""How far a prompt stands out from its surroundings (steps 1 to 4 of the method in `decode`): background
level and clutter in a window around the prompt, the evidence map, and the ring around a prompt that sits
in a cavity.

Images are (H, W) float arrays (the denoised slice); seeds are (k, 2) int (y, x) slice pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .config import ClassicalConfig
from .morphology import disk, seeded_components, touches_border


def robust_stats(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation (never zero)."""
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * 1.4826
    return med, max(mad, 1e-6)


@dataclass
class Estimate:
    """Background statistics of one prompt in its window (crop) of the slice."""

    win: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive ends) in slice pixels
    bg: float
    clutter: float
    contrast: float  # fg - bg, signed
    evidence: np.ndarray  # crop of polarity * (slice - bg) / |contrast|
    ok: bool  # |contrast| >= min_contrast * clutter: the prompt stands out from its surroundings

    @property
    def crop(self) -> tuple[slice, slice]:
        return slice(self.win[0], self.win[2]), slice(self.win[1], self.win[3])

    @property
    def origin(self) -> np.ndarray:
        return np.array(self.win[:2])


def foreground_level(img: np.ndarray, seeds: np.ndarray, radius: int) -> float:
    """Mean of `img` (H, W) in a disk of `radius` around every seed (k, 2) y, x."""
    H, W = img.shape
    footprint = disk(radius)
    vals = []
    for y, x in seeds:
        ys, xs = slice(max(0, y - radius), min(H, y + radius + 1)), slice(max(0, x - radius), min(W, x + radius + 1))
        dk = footprint[ys.start - (y - radius):ys.stop - (y - radius), xs.start - (x - radius):xs.stop - (x - radius)]
        vals.append(img[ys, xs][dk])
    return float(np.mean(np.concatenate(vals)))


def estimate_background(img: np.ndarray, fg: float, seeds: np.ndarray, known: np.ndarray | None,
                        core: tuple[int, int, int, int], R: int, cfg: ClassicalConfig) -> Estimate:
    """Background level and clutter around the prompt, and whether `fg` stands out from them.

    With `known` (pixels known to be outside the object, from a prior or box) one window suffices. Otherwise
    the object is estimated at the middle threshold and excluded (holes included: a cavity is part of its
    object), and the window doubles while the object reaches its border, or while no contrast is found
    (in case the window was mostly object).
    """
    H, W = img.shape
    obj_est = None  # full-slice estimate of the object, excluded from the background statistics
    est = None
    for _ in range(8):
        win = (max(0, core[0] - R), max(0, core[1] - R), min(H, core[2] + R + 1), min(W, core[3] + R + 1))
        crop = (slice(win[0], win[2]), slice(win[1], win[3]))
        S = img[crop]
        if known is not None:
            exclude = ~known[crop]
        elif obj_est is not None:
            exclude = ndimage.binary_dilation(obj_est[crop], iterations=2)
        else:
            exclude = np.zeros(S.shape, bool)
        bg_vals = S[~exclude]
        if bg_vals.size < 16:  # the object fills the window: fall back to its outermost pixels
            bg_vals = np.concatenate([S[0], S[-1], S[:, 0], S[:, -1]])
        bg, clutter = robust_stats(bg_vals)
        contrast = fg - bg
        ok = abs(contrast) >= cfg.min_contrast * clutter
        est = Estimate(win, bg, clutter, contrast, np.sign(contrast) * (S - bg) / max(abs(contrast), 1e-6), ok)
        if not ok:
            if known is None and obj_est is None and R < cfg.max_context_radius:
                R = min(2 * R, cfg.max_context_radius)  # the window may be mostly object: look wider
                continue
            return est
        if known is not None:
            return est
        local_seeds = seeds - est.origin
        comp = seeded_components(est.evidence - cfg.thresholds[1], np.ones(S.shape, bool), local_seeds, cfg.seed_radius)
        new_obj = np.zeros((H, W), bool)
        new_obj[crop] = ndimage.binary_fill_holes(comp)
        grows = touches_border(comp, win, (H, W)) and R < cfg.max_context_radius
        settled = obj_est is not None and not grows and np.array_equal(new_obj, obj_est)
        obj_est = new_obj
        if settled:
            break
        if grows:
            R = min(2 * R, cfg.max_context_radius)
        elif comp.any():
            R = min(max(R, int(np.ceil(2 * np.sqrt(comp.sum() / np.pi) + 4))), cfg.max_context_radius)
    return est


@dataclass
class Enclosure:
    """A prompt inside a cavity: the ring around it is segmented instead, and the cavity added."""

    seeds: np.ndarray  # (k, 2) ring pixels next to the cavity, slice coordinates
    fg: float  # the ring's level
    hole: np.ndarray  # (H, W) bool cavity holding the prompt, slice coordinates


def find_enclosure(img: np.ndarray, est: Estimate, seeds: np.ndarray, allowed: np.ndarray,
                   cfg: ClassicalConfig) -> Enclosure | None:
    """A ring of strong opposite contrast around the positive points (a hollow particle or vesicle prompted
    in its middle), or None.

    The ring must differ from the background by more than `enclosure_ratio` times the prompt's own
    contrast (and by `min_contrast` clutter), in the opposite direction (either direction when the prompt
    has no contrast), and close around the points within the window.
    """
    crop = est.crop
    S = img[crop]
    level = max(cfg.enclosure_ratio * abs(est.contrast), cfg.min_contrast * est.clutter)
    local = seeds - est.origin
    for sign in ((-np.sign(est.contrast),) if est.ok else (1.0, -1.0)):
        region = (sign * (S - est.bg) > level) & allowed[crop]
        # Closing bridges the small gaps noise leaves in a ring; holes touching the window edge stay open.
        closed = ndimage.binary_closing(region, disk(2), border_value=0) | region
        holes = ndimage.binary_fill_holes(closed) & ~closed
        inside = [(y, x) for y, x in local if holes[y, x]]
        if not inside:
            continue
        labels, _ = ndimage.label(holes)
        hole = np.isin(labels, sorted({int(labels[q]) for q in inside}))
        band = ndimage.binary_dilation(hole, iterations=3) & region  # the ring's inner part
        if band.sum() < 4:
            continue
        ys, xs = np.nonzero(band)
        pick = np.linspace(0, len(ys) - 1, min(16, len(ys))).astype(int)
        full_hole = np.zeros(allowed.shape, bool)
        full_hole[crop] = hole
        return Enclosure(np.stack([ys[pick], xs[pick]], axis=1) + est.origin, float(S[band].mean()), full_hole)
    return None
