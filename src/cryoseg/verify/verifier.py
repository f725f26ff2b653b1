"""Verification of proposals: score every candidate against the prompted (and negative) particles and cut.

Steps: low-pass the tomogram; sample each prompted particle under a sphere in every rotation; correlate every
candidate (at small shifts) with them; keep the best candidate within each particle radius; average each
exemplar with its best matches (`template`) and correlate again; lower the score of candidates that look more
like a negative exemplar than like the prompted ones; cut where the scores split (`cut`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.scratch import scratch_array
from ..matching.nms import nms
from .candidates import outside
from .config import VerifyConfig
from .correlate import Correlation, Sphere, correlate
from .cut import Cut, choose_cut
from .exemplars import Exemplars, cube_half
from .template import averaged_exemplars

logger = logging.getLogger(__name__)


@dataclass
class Verification:
    """Every distinct candidate, scored, best first.

    Attributes:
        centre: (N, 3) z, y, x voxels (moved to the best-correlating shift).
        score: (N,) the verification score: correlation with the prompted particles, lowered by likeness to
            negative exemplars.
        correlation: (N,) correlation with the (averaged) prompted particles.
        negative: (N,) correlation with the negative exemplars (NaN without negatives).
        source: (N,) index of the candidate in the input `points` it came from.
        cut: the score a pick needs, and how it was chosen.
        radius: the correlation sphere's radius in voxels.
    """

    centre: np.ndarray
    score: np.ndarray
    correlation: np.ndarray
    negative: np.ndarray
    source: np.ndarray
    cut: Cut
    radius: float

    @property
    def passed(self) -> np.ndarray:
        """(N,) bool: the candidates at or above the cut."""
        return self.score >= self.cut.value

    def report(self) -> dict:
        return {"candidates": int(len(self.score)), "passed": int(self.passed.sum()), "cut": self.cut.value,
                "cut_chosen_by": self.cut.how, "sphere_radius": self.radius}


def lowpass(volume: np.ndarray, sigma: float) -> np.ndarray:
    """(Z, Y, X) float32 copy of the tomogram smoothed by a Gaussian of `sigma` voxels (0: no smoothing); a large
    one is a scratch array (`cryoseg.io.scratch`), so the copy need not fit in memory."""
    out = scratch_array(np.shape(volume), np.float32)
    if sigma > 0:
        ndimage.gaussian_filter(volume, sigma, output=out)
    else:
        out[...] = volume
    return out


def verify(smooth: np.ndarray, points: np.ndarray, prompts: np.ndarray | Exemplars, radius: float,
           negatives: np.ndarray | Exemplars | None = None, config: VerifyConfig | None = None,
           taken: np.ndarray | None = None) -> Verification:
    """Score candidates against the prompted particles and choose the cut.

    Args:
        smooth: (Z, Y, X) tomogram low-passed by `lowpass(volume, config.lowpass)`.
        points: (N, 3) z, y, x voxels of the candidates (proposals).
        prompts: the prompted particles: (P, 3) z, y, x voxels of their centres in `smooth` (P >= 1), or
            `Exemplars` cut from another tomogram (a saved query; cube half-width `exemplar_half(radius, config)`).
        radius: the prompted particles' equivalent-sphere radius, voxels.
        negatives: clicks on particles of a wrong kind: (M, 3) z, y, x voxels in `smooth`, or `Exemplars`.
        config: settings (default `VerifyConfig()`).
        taken: optional (Z, Y, X) labels of instances already known (the prompted ones): candidates that land
            on them, or within `radius` of a prompt given as points, are not returned (nor averaged into the
            template).
    """
    config = config or VerifyConfig()
    sphere = Sphere.of(config.mask_scale * radius + 1)
    step = config.angular_step
    half = cube_half(sphere, config.shift)
    near = np.zeros((0, 3)) if isinstance(prompts, Exemplars) else np.asarray(prompts, np.float64).reshape(-1, 3)
    prompts = as_exemplars(smooth, prompts, half)
    negatives = as_exemplars(smooth, negatives, half)
    positive = prompts.vectors(sphere, step)
    negative = negatives.vectors(sphere, step) if len(negatives) else None
    points = np.asarray(points, np.float64).reshape(-1, 3)

    def score(exemplars: np.ndarray, at: np.ndarray, shift: int) -> tuple[Correlation, np.ndarray, np.ndarray]:
        found = correlate(smooth, at, exemplars, sphere, shift)
        against = np.full(len(points), np.nan)
        total = found.score.copy()
        if negative is not None:
            # At the centre the positive correlation chose, so both compare the same subvolume.
            against = correlate(smooth, found.centre, negative, sphere, 0).score
            total -= config.negative_weight * np.maximum(0.0, against - found.score)
        return found, against, total

    def new(found: Correlation) -> np.ndarray:
        keep = outside(found.centre, taken) if taken is not None else np.ones(len(found.score), bool)
        if len(near):
            keep &= np.linalg.norm(found.centre[:, None] - near[None], axis=2).min(axis=1) > radius
        return keep

    exemplars = positive
    found, against, total = score(exemplars, points, config.shift)
    keep = new(found)
    for _ in range(config.refine_rounds):
        distinct = _distinct(found.centre, total, keep, radius)
        cut = _cut(total[distinct], config)
        best = distinct[total[distinct] >= cut.value][:config.refine_top]
        if cut.how == "all" or not len(best):
            break  # too few candidates to tell which are of the kind: nothing safe to average in
        # Centres were found in the first round; later rounds score there only (27 times cheaper at shift 1).
        exemplars = averaged_exemplars(smooth, positive, found, best, sphere, step)
        found, against, total = score(exemplars, found.centre, 0)
        keep = new(found)
    distinct = _distinct(found.centre, total, keep, radius)
    anchor = _prompt_scores(prompts, exemplars, sphere, config.shift) if config.cut is None else None
    cut = _cut(total[distinct], config, anchor)
    logger.info("verification: %d candidate(s), %d at or above the cut %.3f (%s)", len(distinct),
                int(np.sum(total[distinct] >= cut.value)), cut.value, cut.how)
    return Verification(found.centre[distinct], total[distinct], found.score[distinct], against[distinct], distinct,
                        cut, sphere.radius)


def exemplar_half(radius: float, config: VerifyConfig) -> int:
    """Half-width of the exemplar cubes `verify` reads for particles of `radius` voxels under `config`."""
    return cube_half(Sphere.of(config.mask_scale * radius + 1), config.shift)


def as_exemplars(smooth: np.ndarray, particles: np.ndarray | Exemplars | None, half: int) -> Exemplars:
    """`particles` as `Exemplars` of half-width `half`: cut from `smooth` when given as (P, 3) z, y, x voxels."""
    if isinstance(particles, Exemplars):
        if len(particles) and particles.half != half:
            raise InputError(f"exemplar cubes have half-width {particles.half} voxels; these settings read {half}")
        return particles
    if particles is None or not len(particles):
        return Exemplars.empty(half)
    return Exemplars.cut(smooth, particles, half)


def _cut(scores: np.ndarray, config: VerifyConfig, prompt_scores: np.ndarray | None = None) -> Cut:
    return choose_cut(scores, prompt_scores) if config.cut is None else Cut(config.cut, "given")


def _prompt_scores(prompts: Exemplars, exemplars: np.ndarray, sphere: Sphere, shift: int) -> np.ndarray | None:
    """(P,) each prompted particle's correlation with the other prompts' exemplars (None for one prompt)."""
    if len(prompts) < 2:
        return None
    return np.array([prompts.correlate_one(p, np.delete(exemplars, p, axis=0), sphere, shift).score[0]
                     for p in range(len(prompts))])


def _distinct(centres: np.ndarray, scores: np.ndarray, keep: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the best candidate within 1.2 radii of each other (one per particle), best first."""
    idx = np.flatnonzero(keep)
    return idx[nms(centres[idx], scores[idx], 1.2 * radius)]
