"""The parameters of the classical segmenter, checked when the config is made."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError


@dataclass(frozen=True)
class ClassicalConfig:
    """Parameters of the classical segmenter.

    Only `smoothing_sigma` and `clip_percentiles` change the embedding (and hence the signature);
    the rest act at prediction time.

    Attributes:
        smoothing_sigma: Gaussian denoise of the embedded slice, pixels.
        clip_percentiles: robust normalisation percentiles.
        thresholds: (loose, middle, tight) fractions of the way from background to foreground level.
        min_contrast: |fg - bg| must exceed this many clutter standard deviations, else the mask is empty.
        extra_smoothing: further Gaussian denoising (pixels) tried in turn at prediction time, for noisy
            slices; the first at which the prompt stands out is used (capped at half the prior's radius).
        seed_radius: radius (pixels) of the disk around a point that gives the foreground level.
        context_radius: initial half-size (pixels) of the background window.
        max_context_radius: largest half-size the window may grow to.
        enclosure_ratio: a point in a cavity (a hollow particle or vesicle clicked in its middle) gives the
            whole enclosed object when the ring around it differs from the background, in the opposite
            direction, by more than this many times the point's own contrast.
        prior_weight: weight w of the mask prior in the blended score.
        prior_growth: the region may grow beyond the prior by this fraction of the prior's radius ...
        min_growth: ... but at least this many pixels.
        box_margin: a box is enlarged by this fraction of its size (plus 2 pixels) before restricting.
        max_hole_fraction: holes smaller than this fraction of the mask's area are filled.
        logit_gain: scale of the logits (score 0.5 above threshold -> logit 4).
    """

    smoothing_sigma: float = 1.5
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    thresholds: tuple[float, float, float] = (0.35, 0.5, 0.65)
    min_contrast: float = 2.5
    extra_smoothing: tuple[float, ...] = (0.0, 1.5, 3.0)
    enclosure_ratio: float = 1.25
    seed_radius: int = 2
    context_radius: int = 16
    max_context_radius: int = 128
    prior_weight: float = 0.2
    prior_growth: float = 0.25
    min_growth: int = 2
    box_margin: float = 0.1
    max_hole_fraction: float = 0.25
    logit_gain: float = 8.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        object.__setattr__(self, "extra_smoothing", tuple(float(t) for t in self.extra_smoothing))
        object.__setattr__(self, "clip_percentiles", tuple(float(p) for p in self.clip_percentiles))
        if len(self.thresholds) != 3 or not all(0 < t < 1 for t in self.thresholds):
            raise InputError(f"classical thresholds must be three fractions in (0, 1), got {self.thresholds}")
        if not self.extra_smoothing or any(t < 0 for t in self.extra_smoothing):
            raise InputError(f"extra_smoothing must be a non-empty tuple of values >= 0, got {self.extra_smoothing}")
        if self.smoothing_sigma < 0:
            raise InputError(f"smoothing_sigma must be >= 0, got {self.smoothing_sigma}")
        if not 0 <= self.prior_weight < 1:
            raise InputError(f"prior_weight must be in [0, 1), got {self.prior_weight}")
        if self.context_radius < 2 or self.max_context_radius < self.context_radius:
            raise InputError("context_radius must be >= 2 and <= max_context_radius")
        for name in ("min_contrast", "enclosure_ratio", "logit_gain", "max_hole_fraction"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.seed_radius < 0 or self.min_growth < 0 or self.prior_growth < 0 or self.box_margin < 0:
            raise InputError("seed_radius, min_growth, prior_growth and box_margin must be >= 0")
