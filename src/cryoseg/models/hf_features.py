"""Dense feature extractors on transformers vision encoders: DINOv2 (`Dinov2Model`), DINOv2 with registers
(`Dinov2WithRegistersModel`), DINOv3 (`DINOv3ViTModel`), MAE (`ViTMAEModel`, masking off) and SAM's image
encoder (`SamModel.vision_encoder`).

Each slice is resized so its longest side is about `input_size` and each side is a whole number of patches
(so every feature cell covers image content only); SAM's encoder, whose position embeddings are fixed, gets
that image padded to its square input and its feature grid cropped back to the content cells. Patch tokens
are taken after the CLS and register tokens, in row-major order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .base import DEFAULT_FEATURE_BATCH_SIZE, FeatureExtractor, FeatureMap
from .hf_backend import HFBackend
from .preprocess import DEFAULT_PERCENTILES, IMAGENET_MEAN, IMAGENET_STD, Geometry, patch_geometry, to_model_input

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

FEATURE_FAMILIES = ("dinov2", "dinov2-reg", "dinov3", "mae", "sam-encoder")


class HFFeatureExtractor(HFBackend, FeatureExtractor):
    """A ViT encoder behind the `FeatureExtractor` interface.

    Args:
        model: the transformers encoder (for "sam-encoder": `SamModel.vision_encoder`), on its device and
            dtype, eval mode.
        family: one of `FEATURE_FAMILIES`.
        input_size: longest side of the model input in pixels (rounded to whole patches).
        batch_size: images per forward pass.
        name, weights_hash, percentiles, mean, std: as in `HFBackend`.
    """

    families = FEATURE_FAMILIES
    family_kind = "feature"

    def __init__(self, model: Any, family: str, name: str, weights_hash: str, input_size: int,
                 batch_size: int = DEFAULT_FEATURE_BATCH_SIZE, percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                 mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD) -> None:
        super().__init__(model, family, name, weights_hash, percentiles, mean, std)
        if int(batch_size) < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        cfg = model.config
        patch = cfg.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
        self.num_prefix_tokens = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)
        if family == "sam-encoder":
            fixed = int(cfg.image_size)
            if input_size != fixed:
                raise InputError(f"model '{name}' has fixed position embeddings and needs input size {fixed}, "
                                 f"got {input_size}")
        if input_size < self.patch_size:
            raise InputError(f"input size {input_size} is smaller than the patch size {self.patch_size}")
        # round down to whole patches (e.g. DINOv2: 518 = 37 x 14)
        self.input_size = int(input_size) // self.patch_size * self.patch_size
        if family == "mae":
            cfg.mask_ratio = 0.0  # keep every patch; the embeddings read this shared config object
        self.feature_dim = int(cfg.output_channels if family == "sam-encoder" else cfg.hidden_size)

    def geometry(self, image_shape: tuple[int, int]) -> Geometry:
        """Where an (H, W) image sits in the model input; `resized // patch_size` is the feature grid."""
        return patch_geometry(image_shape, self.input_size, self.patch_size,
                              pad_to_target=self.family == "sam-encoder")

    def extract(self, images: np.ndarray) -> FeatureMap:
        """Features of B images.

        Args:
            images: (B, H, W) float array, any range (a single (H, W) image is taken as B = 1).

        Returns:
            FeatureMap with features (B, C, h, w) float32, h = H * scale / patch (rounded), stride (H / h, W / w).
        """
        import torch

        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[0] == 0:
            raise InputError(f"extract expects a non-empty (B, H, W) stack of images, got shape {arr.shape}")
        geom = self.geometry(arr.shape[1:])
        cells = (geom.resized[0] // self.patch_size, geom.resized[1] // self.patch_size)
        out = np.empty((arr.shape[0], self.feature_dim, *cells), dtype=np.float32)
        for start in range(0, arr.shape[0], self.batch_size):
            chunk = arr[start:start + self.batch_size]
            pixels = self.model_input(chunk, geom, to_model_input)
            with torch.inference_mode():
                feats = self._forward(pixels, geom, cells)
            out[start:start + len(chunk)] = feats.float().cpu().numpy()
        H, W = geom.original
        return FeatureMap(out, (H / cells[0], W / cells[1]), (H, W), self.patch_size)

    def _forward(self, pixels: torch.Tensor, geom: Geometry, cells: tuple[int, int]) -> torch.Tensor:
        """(b, 3, Fh, Fw) pixels -> (b, C, h, w) patch features of the content region."""
        import torch

        b = pixels.shape[0]
        if self.family == "sam-encoder":
            grid = self.model(pixel_values=pixels).last_hidden_state  # (b, C, Fh/p, Fw/p) after the neck
            return grid[:, :, : cells[0], : cells[1]]
        n = cells[0] * cells[1]
        if self.family == "mae":
            # identity noise keeps the patch order; ids_restore undoes any shuffle regardless
            noise = torch.arange(n, device=pixels.device, dtype=torch.float32).expand(b, n)
            out = self.model(pixel_values=pixels, noise=noise, interpolate_pos_encoding=True)
            tokens = out.last_hidden_state[:, 1:]
            if tokens.shape[1] != n:
                raise RuntimeError(f"MAE kept {tokens.shape[1]} of {n} patches; masking must be off")
            index = out.ids_restore.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1])
            tokens = torch.gather(tokens, 1, index)
        else:
            tokens = self.model(pixel_values=pixels).last_hidden_state
            if tokens.shape[1] != self.num_prefix_tokens + n:
                raise RuntimeError(f"model '{self.name}' returned {tokens.shape[1]} tokens, expected "
                                   f"{self.num_prefix_tokens} CLS/register + {n} patch tokens")
            tokens = tokens[:, self.num_prefix_tokens:]  # drop CLS and register tokens
        return tokens.reshape(b, cells[0], cells[1], -1).permute(0, 3, 1, 2)

    def signature(self) -> dict[str, Any]:
        """What determines the features: model, weights hash, precision and preprocessing."""
        layout = "patch-rounded+pad" if self.family == "sam-encoder" else "patch-rounded"
        return self._signature(patch_size=self.patch_size, layout=layout)
