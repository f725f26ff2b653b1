"""The default score cut, chosen from the candidates' own scores.

Candidates are mostly not of the prompted kind (blobs of noise, other complexes), and the ones that are form
a separate group at higher correlation. The lower half of the candidates is taken to be background; on the
upper half a two-component Gaussian mixture is fitted (EM, started from Otsu's split), and the cut is where
a score becomes more likely under the upper component than under the lower one. When the two components
overlap (Ashman's D < `MIN_SEPARATION`) the scores show no clear group of the prompted kind; the cut is
still taken there, and flagged ("mixture, overlapping") so the caller can warn. (Otsu's threshold over all
scores, tried as the fallback, lost half the picks on two of nine simulated classes.)

With three or more prompts, the prompts themselves show what a copy of the kind scores: each prompted particle
scored against the other prompts' exemplars is an unbiased sample of it (the candidates are a ranked
selection; the prompts were clicked, not ranked). The cut is then their mean less `PROMPT_SPREAD` standard
deviations, which keeps about 98 % of the copies if their scores are normal. The mixture cannot tell apart two
kinds that both score well (a 70S ribosome prompt against 70S and mitochondrial ribosomes on a simulated
200x512x512 tomogram: F1 0.64 at the mixture's cut with ten prompts, below one prompt's 0.69).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SEPARATION = 2.0
PROMPT_SPREAD = 2.0
MIN_PROMPTS = 3


@dataclass(frozen=True)
class Cut:
    """The chosen cut and how it was chosen ("mixture", "mixture, overlapping", "prompts", "given", or "all": too
    few candidates to tell groups apart, all kept)."""

    value: float
    how: str


def otsu(scores: np.ndarray) -> float:
    """Otsu's threshold of 1D scores (the split maximising the between-group variance)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(scores, np.float64)))


def _mixture(x: np.ndarray, iterations: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and standard deviations (each (2,), lower first) of a 2-component 1D Gaussian mixture."""
    t = otsu(x)
    lo, hi = x[x <= t], x[x > t]
    floor = 1e-3 * max(float(np.ptp(x)), 1e-6)
    w = np.array([len(lo), len(hi)], np.float64) / len(x)
    mu = np.array([lo.mean(), hi.mean()])
    sd = np.array([lo.std(), hi.std()]) + floor
    for _ in range(iterations):
        dens = w / sd * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2)
        resp = dens / np.maximum(dens.sum(axis=1, keepdims=True), 1e-300)
        n = resp.sum(axis=0) + 1e-12
        w, mu = n / len(x), (resp * x[:, None]).sum(axis=0) / n
        sd = np.sqrt((resp * (x[:, None] - mu) ** 2).sum(axis=0) / n) + floor
    order = np.argsort(mu)
    return w[order], mu[order], sd[order]


def choose_cut(scores: np.ndarray, prompt_scores: np.ndarray | None = None) -> Cut:
    """The cut on candidate scores (see the module docstring).

    Args:
        scores: (N,) scores of every candidate, higher is more like the prompted particles.
        prompt_scores: (P,) each prompted particle's score against the other prompts' exemplars; used when
            there are at least `MIN_PROMPTS`.
    """
    if prompt_scores is not None and len(prompt_scores) >= MIN_PROMPTS:
        anchor = np.asarray(prompt_scores, np.float64)
        return Cut(float(anchor.mean() - PROMPT_SPREAD * anchor.std(ddof=1)), "prompts")
    x = np.asarray(scores, np.float64)
    x = x[np.isfinite(x)]
    upper = x[x >= np.median(x)] if len(x) else x
    if len(upper) < 4 or np.ptp(upper) == 0:
        return Cut(float(x.min()) if len(x) else 0.0, "all")
    w, mu, sd = _mixture(upper)
    separation = abs(mu[1] - mu[0]) / np.sqrt(0.5 * (sd[0] ** 2 + sd[1] ** 2))
    grid = np.linspace(mu[0], mu[1], 1001)
    dens = w / sd * np.exp(-0.5 * ((grid[:, None] - mu) / sd) ** 2)
    how = "mixture" if separation >= MIN_SEPARATION else "mixture, overlapping"
    return Cut(float(grid[np.argmax(dens[:, 1] >= dens[:, 0])]), how)
