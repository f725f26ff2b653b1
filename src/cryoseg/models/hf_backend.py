"""What the transformers backends (`hf_segmenters`, `hf_features`) share: the model with its device and
precision, how slices are scaled into its input, and what goes into their signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .preprocess import (
    DEFAULT_PERCENTILES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Geometry,
    backend_signature,
    normalize_intensity,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch


class HFBackend:
    """A transformers model and the settings that turn slices into its input.

    Subclasses name the families they accept in `families`.

    Args:
        model: the transformers model, already on its device in its precision, eval mode.
        family: one of the subclass's `families`.
        name: registry name (goes into the signature).
        weights_hash: "sha256:..." of the weight files, or a builtin tag.
        percentiles: intensity clip percentiles before the model's own mean/std normalisation.
        mean, std: per-channel normalisation of the model input.
    """

    families: tuple[str, ...] = ()
    family_kind = "model"  # what the families are families of, for messages

    def __init__(
        self,
        model: Any,
        family: str,
        name: str,
        weights_hash: str,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        if family not in self.families:
            raise InputError(f"unknown {self.family_kind} family {family!r}; known: {', '.join(self.families)}")
        self.model = model
        self.family = family
        self.name = name
        self.weights_hash = weights_hash
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        param = next(model.parameters())  # the model was moved before it was wrapped: read where it is
        self.device = param.device
        self.dtype = param.dtype

    def model_input(self, images: np.ndarray, geometry: Geometry, to_input: Callable[..., Any]) -> torch.Tensor:
        """(H, W) or (B, H, W) images, any range -> the model's pixel tensor on its device in its precision.

        Each image is clipped to its own percentiles and scaled to [0, 1] first; `to_input` (e.g.
        `preprocess.to_model_input`) then places it in the model frame and normalises it by mean/std.
        """
        return to_input(normalize_intensity(images, self.percentiles), geometry, self.mean, self.std, self.device,
                        self.dtype)

    def _signature(self, **preprocess: Any) -> dict[str, Any]:
        """Model, weights hash, precision and intensity settings, plus the subclass's own `preprocess` keys."""
        return backend_signature(self, **preprocess)
