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

from ..matching.nms import nms
from .candidates import outside
from .config import VerifyConfig
from .correlate import Correlation, Sphere, correlate, exemplar_vectors
from .cut import Cut, choose_cut
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
    """(Z, Y, X) float32 copy of the tomogram smoothed by a Gaussian of `sigma` voxels (0: no smoothing)."""
    data = np.asarray(volume, dtype=np.float32)
    return ndimage.gaussian_filter(data, sigma, output=np.float32) if sigma > 0 else data.copy()


def verify(smooth: np.ndarray, points: np.ndarray, prompts: np.ndarray, radius: float,
           negatives: np.ndarray | None = None, config: VerifyConfig | None = None,
           taken: np.ndarray | None = None) -> Verification:
    """Score candidates against the prompted particles and choose the cut.

    Args:
        smooth: (Z, Y, X) tomogram low-passed by `lowpass(volume, config.lowpass)`.
        points: (N, 3) z, y, x voxels of the candidates (proposals).
        prompts: (P, 3) z, y, x voxels of the prompted particles' centres (P >= 1).
        radius: the prompted particles' equivalent-sphere radius, voxels.
        negatives: (M, 3) z, y, x voxels of clicks on particles of a wrong kind.
        config: settings (default `VerifyConfig()`).
        taken: optional (Z, Y, X) labels of instances already known (the prompted ones): candidates that land
            on them, or within `radius` of a prompt, are not returned (nor averaged into the template).
    """
    config = config or VerifyConfig()
    sphere = Sphere.of(config.mask_scale * radius + 1)
    step = config.angular_step
    positive = exemplar_vectors(smooth, prompts, sphere, step)
    negative = exemplar_vectors(smooth, negatives, sphere, step) if negatives is not None and len(negatives) else None
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
        near = np.linalg.norm(found.centre[:, None] - np.asarray(prompts)[None], axis=2).min(axis=1) <= radius
        return ~near & (outside(found.centre, taken) if taken is not None else True)

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
    anchor = _prompt_scores(smooth, prompts, exemplars, sphere, config.shift) if config.cut is None else None
    cut = _cut(total[distinct], config, anchor)
    logger.info("verification: %d candidate(s), %d at or above the cut %.3f (%s)", len(distinct),
                int(np.sum(total[distinct] >= cut.value)), cut.value, cut.how)
    return Verification(found.centre[distinct], total[distinct], found.score[distinct], against[distinct], distinct,
                        cut, sphere.radius)


def _cut(scores: np.ndarray, config: VerifyConfig, prompt_scores: np.ndarray | None = None) -> Cut:
    return choose_cut(scores, prompt_scores) if config.cut is None else Cut(config.cut, "given")


def _prompt_scores(smooth: np.ndarray, prompts: np.ndarray, exemplars: np.ndarray, sphere: Sphere,
                   shift: int) -> np.ndarray | None:
    """(P,) each prompted particle's correlation with the other prompts' exemplars (None for one prompt)."""
    prompts = np.asarray(prompts, np.float64).reshape(-1, 3)
    if len(prompts) < 2:
        return None
    return np.array([correlate(smooth, prompts[p:p + 1], np.delete(exemplars, p, axis=0), sphere, shift).score[0]
                     for p in range(len(prompts))])


def _distinct(centres: np.ndarray, scores: np.ndarray, keep: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the best candidate within 1.2 radii of each other (one per particle), best first."""
    idx = np.flatnonzero(keep)
    return idx[nms(centres[idx], scores[idx], 1.2 * radius)]
