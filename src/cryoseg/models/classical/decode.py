"""Decoding one prompt on one embedded slice: the method of the classical segmenter.

The slice was embedded by `ClassicalSegmenter.embed` (robust normalisation, Gaussian denoise). Per prompt:

1. Foreground level `fg` = mean of the denoised slice in a small disk around the positive point(s)
   (box centre, or the prior's innermost pixel, when there is no positive point).
2. Background level `bg` and clutter (robust std) from a window around the prompt, excluding the object:
   the (dilated) prior or box when given, else the object found so far; without a prior the window
   doubles while the object touches its border (up to `max_context_radius`).
3. Polarity is decided from sign(fg - bg), so dark-on-bright (usual cryo-ET contrast) and bright-on-dark
   both work. If |fg - bg| < `min_contrast` x clutter at every level of extra smoothing tried
   (`extra_smoothing`, for noisy slices), the mask is empty: the point is not on an object. This is what
   stops 3D propagation past the end of an object.
4. A point inside a cavity closed by a ring of stronger, opposite contrast (a hollow particle or a vesicle
   clicked in its middle) gives the ring plus the cavity instead.
5. Evidence e = polarity * (slice - bg) / |fg - bg| (0 at background, 1 at the prompt). A mask prior
   (logits from a previous call) is blended in, (1 - w) * (e - t) + w * clip(prior / gain, -1, 1), and
   the region may not leave the prior dilated by a fraction of its radius. A box restricts the region
   to the box (plus a margin).
6. The mask is the connected component(s) of {score > 0} holding the positive point(s). A negative
   point inside it is cut off by a watershed between positive and negative seeds; small holes are filled.
7. With a prior, a second candidate is grown from the prior itself (present if the prior's mean stands
   out; level from its stronger half; holes inside the prior filled). It replaces the point's result
   only when that one departs from the prior (IoU < 0.5) and the prior-seeded one agrees better, e.g.
   when the propagated point fell into a cavity that the ring no longer closes.
8. `multimask` gives three thresholds t = `thresholds` (loose, middle, tight: largest to smallest);
   otherwise only the middle one.
9. Confidence (`iou_scores`, in [0, 1]) combines the contrast-to-clutter ratio, the evidence step across
   the mask boundary and compactness, lowered when the mask runs into the window edge (a likely leak)
   or the edge of the region the prior or box allows. It ranks candidates; it is not a calibrated IoU.

Steps 1 to 4 are in `evidence`, the mask operations in `morphology`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .config import ClassicalConfig
from .evidence import Estimate, estimate_background, find_enclosure, foreground_level
from .morphology import (
    close_cavity,
    cut_negatives,
    disk,
    fill_holes_within,
    fill_small_holes,
    seeded_components,
    shape_quality,
    touches_border,
)


@dataclass
class PixelPrompt:
    """One prompt, validated, in integer pixel coordinates of the full slice."""

    pos: np.ndarray  # (k, 2) int y, x
    neg: np.ndarray  # (m, 2) int y, x
    box: tuple[int, int, int, int] | None  # y0, x0, y1, x1 inclusive, clipped to the slice
    prior: np.ndarray | None  # (H, W) float32 logits


@dataclass
class _Context:
    """One prompt prepared for decoding (full-slice coordinates)."""

    smooth_at: Any  # extra sigma -> (H, W) denoised slice
    shape: tuple[int, int]
    cfg: ClassicalConfig
    pos: np.ndarray  # (k, 2) positive points (or the box centre / prior's innermost pixel)
    neg: np.ndarray  # (m, 2) negative points
    allowed: np.ndarray  # (H, W) bool where the object may be
    known: np.ndarray | None  # (H, W) bool known to be outside the object (None: nothing known)
    r_ref: float | None  # object radius from the prior or box
    core: tuple[int, int, int, int]  # bounding box of everything the prompt touches
    R: int  # initial window margin around `core`
    prior: np.ndarray | None  # (H, W) prior logits
    prior_mask: np.ndarray | None  # (H, W) bool, None when no (or an empty) prior

    def levels(self) -> Iterator[tuple[float, np.ndarray]]:
        """(extra sigma, image) in the order to try; a known object size caps the total at radius / 2. Lazy: a
        level is smoothed only when the ones before it did not do."""
        for extra in self.cfg.extra_smoothing:
            if extra > 0 and self.r_ref is not None and np.hypot(self.cfg.smoothing_sigma, extra) > self.r_ref / 2:
                break
            yield extra, self.smooth_at(extra)


@dataclass
class _Mode:
    """How the mask is grown: from which seeds, on which evidence, and which holes are part of the object."""

    est: Estimate
    seeds: np.ndarray  # (k, 2) slice coordinates the region grows from
    cavity: np.ndarray | None = None  # (H, W) bool cavity to add (a point inside a hollow object)
    fill_within: np.ndarray | None = None  # (H, W) bool: holes mostly inside it are filled (the prior)


def _dilate_within_box(mask: np.ndarray, structure: np.ndarray, reach: int) -> np.ndarray:
    """`binary_dilation(mask, structure)` of an (H, W) mask, computed only around the mask's bounding box (the
    dilation cannot reach further than `reach` pixels): the same result at a fraction of the cost on large slices."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, c0 = max(0, rows[0] - reach - 1), max(0, cols[0] - reach - 1)
    r1, c1 = rows[-1] + reach + 2, cols[-1] + reach + 2
    out = np.zeros_like(mask)
    out[r0:r1, c0:c1] = ndimage.binary_dilation(mask[r0:r1, c0:c1], structure)
    return out


def _context(smooth_at: Any, shape: tuple[int, int], p: PixelPrompt, cfg: ClassicalConfig) -> _Context | None:
    H, W = shape
    prior_mask = p.prior > 0 if p.prior is not None else None
    if prior_mask is not None and not prior_mask.any():
        prior_mask = None  # an empty prior says nothing about where the object is
    seeds = p.pos
    if len(seeds) == 0:
        if p.box is not None:
            seeds = np.array([[(p.box[0] + p.box[2]) // 2, (p.box[1] + p.box[3]) // 2]])
        elif prior_mask is not None:
            dist = ndimage.distance_transform_edt(prior_mask)
            seeds = np.array([np.unravel_index(int(np.argmax(dist)), dist.shape)])
        else:
            return None  # nothing to segment
    allowed = np.ones((H, W), bool)
    r_ref = None
    if prior_mask is not None:
        r_ref = float(np.sqrt(prior_mask.sum() / np.pi))
        grow = max(cfg.min_growth, int(np.ceil(cfg.prior_growth * r_ref)))
        allowed &= _dilate_within_box(prior_mask, disk(grow), grow)
    if p.box is not None:
        y0, x0, y1, x1 = p.box
        m = int(np.ceil(cfg.box_margin * max(y1 - y0, x1 - x0))) + 2
        box_mask = np.zeros((H, W), bool)
        box_mask[max(0, y0 - m):y1 + m + 1, max(0, x0 - m):x1 + m + 1] = True
        allowed &= box_mask
        r_box = 0.5 * max(y1 - y0, x1 - x0)
        r_ref = r_box if r_ref is None else max(r_ref, r_box)
    known = None if r_ref is None else ~allowed
    cy, cx = list(seeds[:, 0]), list(seeds[:, 1])
    if known is not None:
        ay, ax = np.nonzero(allowed)
        if len(ay) == 0:
            return None  # the box and the prior do not overlap
        cy += [int(ay.min()), int(ay.max())]
        cx += [int(ax.min()), int(ax.max())]
    R = cfg.context_radius if r_ref is None else max(cfg.context_radius, int(np.ceil(r_ref + 8)))
    return _Context(smooth_at, (H, W), cfg, seeds, p.neg, allowed, known, r_ref,
                    (min(cy), min(cx), max(cy), max(cx)), min(R, cfg.max_context_radius), p.prior, prior_mask)


def _point_mode(ctx: _Context, has_points: bool) -> _Mode | None:
    """Grow from the prompt points, at the least extra smoothing at which they stand out.

    At each smoothing level a cavity enclosed by a strong ring is looked for first (hollow particles are
    prompted in their middle), then the object under the points themselves.
    """
    cfg = ctx.cfg
    for _, img in ctx.levels():
        fg = foreground_level(img, ctx.pos, cfg.seed_radius)
        est = estimate_background(img, fg, ctx.pos, ctx.known, ctx.core, ctx.R, cfg)
        enc = find_enclosure(img, est, ctx.pos, ctx.allowed, cfg) if has_points else None
        if enc is not None:
            ring = estimate_background(img, enc.fg, enc.seeds, ctx.known, ctx.core, ctx.R, cfg)
            if ring.ok:
                return _Mode(ring, enc.seeds, cavity=enc.hole)
        if est.ok:
            return _Mode(est, ctx.pos)
    return None


def _prior_mode(ctx: _Context) -> _Mode | None:
    """Grow from the prior itself: its mean level against the background, seeded at its strongest pixels.

    This keeps propagation on the object when the point falls on a part that alone does not stand out
    (the cavity of a hollow particle), and, because the mean over the whole prior must stand out, it
    still lets the mask vanish past the object's end.
    """
    cfg, pm = ctx.cfg, ctx.prior_mask
    for _, img in ctx.levels():
        fg = float(img[pm].mean())
        est = estimate_background(img, fg, ctx.pos, ctx.known, ctx.core, ctx.R, cfg)
        if not est.ok:
            continue
        strong = pm & (np.sign(est.contrast) * (img - fg) >= 0)
        ys, xs = np.nonzero(strong)
        if len(ys) == 0:
            continue
        # The prior's mean decides presence; its stronger half sets the level, as a point on the object
        # would (the mean, diluted by the prior's margin, would let the mask stay as large as the prior).
        core_est = estimate_background(img, float(img[strong].mean()), ctx.pos, ctx.known, ctx.core, ctx.R, cfg)
        pick = np.linspace(0, len(ys) - 1, min(32, len(ys))).astype(int)
        return _Mode(core_est, np.stack([ys[pick], xs[pick]], axis=1), fill_within=pm)
    return None


def _region(ctx: _Context, mode: _Mode, f: float) -> tuple[np.ndarray, np.ndarray]:
    """The mask (crop of `mode.est.win`, bool) at threshold `f`, and its score map (crop, float)."""
    cfg, est = ctx.cfg, mode.est
    crop, e, origin = est.crop, est.evidence, est.origin
    score = e - f
    if ctx.prior_mask is not None:
        prior_term = np.clip(ctx.prior[crop] / cfg.logit_gain, -1.0, 1.0)
        score = (1 - cfg.prior_weight) * score + cfg.prior_weight * prior_term
    seeds = mode.seeds - origin
    comp = seeded_components(score, ctx.allowed[crop], seeds, cfg.seed_radius, min_fraction=0.1)
    neg = ctx.neg - origin
    neg = neg[(neg[:, 0] >= 0) & (neg[:, 0] < e.shape[0]) & (neg[:, 1] >= 0) & (neg[:, 1] < e.shape[1])]
    if comp.any() and len(neg):
        comp = cut_negatives(comp, e, seeds, neg)
    if comp.any() and mode.cavity is not None:
        comp = close_cavity(comp, ctx.pos - origin, mode.cavity[crop] & ctx.allowed[crop])
    if comp.any() and mode.fill_within is not None:
        comp = fill_holes_within(comp, mode.fill_within[crop], neg)
    return fill_small_holes(comp, cfg.max_hole_fraction, neg), score


def decode_prompt(smooth_at: Any, shape: tuple[int, int], p: PixelPrompt, fractions: tuple[float, ...],
                  cfg: ClassicalConfig, out_masks: np.ndarray, out_logits: np.ndarray, out_scores: np.ndarray) -> None:
    """Segment one prompt; fills out_masks (M, H, W), out_logits (M, H, W), out_scores (M,) in place.

    `smooth_at(extra)` returns the embedded slice smoothed by a further Gaussian of `extra` pixels.
    """
    ctx = _context(smooth_at, shape, p, cfg)
    if ctx is None:
        return  # masks stay empty, scores 0
    modes = [_point_mode(ctx, has_points=len(p.pos) > 0)]
    if ctx.prior_mask is not None:
        modes.append(_prior_mode(ctx))
    modes = [m for m in modes if m is not None]
    if not modes:
        return  # nothing here differs from its surroundings: empty masks
    mode = modes[0]
    if len(modes) > 1:
        # The point's own result is used unless it departs from the prior (IoU < 0.5, e.g. the point fell
        # into a cavity) and the prior-seeded one agrees with the prior better.
        def agreement(m: _Mode) -> float:
            full = np.zeros(shape, bool)
            full[m.est.crop] = _region(ctx, m, cfg.thresholds[1])[0]
            return float((full & ctx.prior_mask).sum() / max(1, (full | ctx.prior_mask).sum()))
        scores = [agreement(m) for m in modes]
        if scores[0] < 0.5 and scores[-1] > scores[0]:
            mode = modes[-1]

    est = mode.est
    crop, e = est.crop, est.evidence
    s_contrast = 1.0 - np.exp(-0.5 * (abs(est.contrast) / est.clutter / cfg.min_contrast) ** 2)
    half = 0.5 / cfg.logit_gain  # keeps masks == logits > 0 exact
    for k, f in enumerate(fractions):
        comp, score = _region(ctx, mode, f)
        logit = np.where(comp, np.maximum(score, 0) + half, np.minimum(score, 0) - half)
        out_logits[k][crop] = np.clip(cfg.logit_gain * logit, -4 * cfg.logit_gain, 4 * cfg.logit_gain)
        out_masks[k][crop] = comp
        if comp.any():
            # Running into the window edge suggests a leak into the surroundings; reaching the edge of the
            # prior's or box's allowed region is milder (the object may simply be growing).
            penalty = 1.0
            if touches_border(comp, est.win, shape):
                penalty = 0.5
            elif ctx.known is not None and (comp & ~ndimage.binary_erosion(ctx.allowed[crop], border_value=1)).any():
                penalty = 0.8
            out_scores[k] = s_contrast * shape_quality(comp, e) * penalty
