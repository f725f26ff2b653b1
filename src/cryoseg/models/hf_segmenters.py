"""Promptable segmenters on transformers models: SAM (`SamModel`), SAM-HQ (`SamHQModel`) and SAM 2 image
prediction (`Sam2Model`). The architectures are transformers'; this module only prepares inputs, calls the
model's own `get_image_embeddings` and `forward(image_embeddings=...)`, and maps results back to slice pixels.

SAM and SAM-HQ reproduce segment-anything's `SamPredictor` from the 8-bit slice on (`preprocess.to_sam_input`,
two-step mask upsampling); prompts of every family are placed as Meta's predictors place them
(`Geometry.prompts_to_model`). SAM 2's image goes through `preprocess.to_model_input`.

Batching: the B prompts of one `predict` call go through the prompt encoder and mask decoder in one forward
call. They ride on the image-batch axis (the slice embedding is expanded, not copied, to B), because that is
the layout in which transformers accepts a different mask prompt per prompt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .base import CheckedPrompts, MaskPrediction, PromptableSegmenter, SliceEmbedding, check_prompts
from .hf_backend import HFBackend
from .preprocess import (
    DEFAULT_PERCENTILES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Geometry,
    logits_to_image,
    longest_side_geometry,
    stretch_geometry,
    to_model_input,
    to_sam_input,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

SEGMENTER_FAMILIES = ("sam", "sam-hq", "sam2")
# Upsampled float32 masks are made this many megabytes at a time, then thresholded to bool.
_MASK_CHUNK_BYTES = 256 << 20


class HFPromptableSegmenter(HFBackend, PromptableSegmenter):
    """A SAM-family model behind the `PromptableSegmenter` interface.

    Args:
        model: a transformers SamModel / SamHQModel / Sam2Model, already on its device in its dtype, eval mode.
        family: "sam", "sam-hq" or "sam2".
        name, weights_hash, percentiles, mean, std: as in `HFBackend`.
    """

    families = SEGMENTER_FAMILIES
    family_kind = "segmenter"

    def __init__(self, model: Any, family: str, name: str, weights_hash: str,
                 percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                 mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD) -> None:
        super().__init__(model, family, name, weights_hash, percentiles, mean, std)
        cfg = model.config
        if family == "sam2":
            self.input_size = int(cfg.prompt_encoder_config.image_size)
            self.low_res = tuple(int(v) for v in model.prompt_encoder.mask_input_size)
        else:
            self.input_size = int(cfg.vision_config.image_size)
            side = 4 * int(cfg.prompt_encoder_config.image_embedding_size)
            self.low_res = (side, side)

    # --- geometry ----------------------------------------------------------------------------------------

    def geometry(self, image_shape: tuple[int, int]) -> Geometry:
        """Where a slice of `image_shape` (H, W) sits in this model's input frame."""
        if self.family == "sam2":  # SAM 2 resizes to a square without keeping the aspect ratio
            return stretch_geometry(image_shape, self.input_size)
        return longest_side_geometry(image_shape, self.input_size)

    # --- embedding ---------------------------------------------------------------------------------------

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        """Embed one slice. `image`: (H, W) float array, any range."""
        import torch

        arr = np.asarray(image)
        if arr.ndim != 2:
            raise InputError(f"embed expects one 2D (H, W) slice, got shape {arr.shape}")
        geom = self.geometry(arr.shape)
        pixels = self.model_input(arr, geom, to_model_input if self.family == "sam2" else to_sam_input)
        with torch.inference_mode():
            if self.family == "sam":
                data = {"image_embeddings": self.model.get_image_embeddings(pixels)}
            elif self.family == "sam-hq":
                emb, intermediate = self.model.get_image_embeddings(pixels)
                # the HQ decoder only reads the first global-attention block's output
                data = {"image_embeddings": emb, "intermediate_embeddings": intermediate[0]}
            else:
                feats = self.model.get_image_embeddings(pixels)
                data = {"feat_s0": feats[0], "feat_s1": feats[1], "image_embeddings": feats[-1]}
        return SliceEmbedding({k: v.detach() for k, v in data.items()}, (int(arr.shape[0]), int(arr.shape[1])))

    def embedding_arrays(self, embedding: SliceEmbedding) -> dict[str, np.ndarray]:
        """Named float32 numpy arrays (each with a leading batch axis of 1) for the on-disk cache."""
        return {k: v.float().cpu().numpy() for k, v in embedding.data.items()}

    def embedding_from_arrays(self, arrays: dict[str, np.ndarray], image_shape: tuple[int, int]) -> SliceEmbedding:
        """Inverse of `embedding_arrays` (arrays may be fp16 from the cache)."""
        import torch

        expected = {"sam": {"image_embeddings"}, "sam-hq": {"image_embeddings", "intermediate_embeddings"},
                    "sam2": {"feat_s0", "feat_s1", "image_embeddings"}}[self.family]
        if set(arrays) != expected:
            raise InputError(f"cached embedding has arrays {sorted(arrays)}, "
                             f"model '{self.name}' needs {sorted(expected)}")
        data = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device, self.dtype) for k, v in arrays.items()}
        return SliceEmbedding(data, (int(image_shape[0]), int(image_shape[1])))

    # --- prompting ---------------------------------------------------------------------------------------

    def predict(self, embedding: SliceEmbedding, points: np.ndarray, point_labels: np.ndarray,
                boxes: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                multimask: bool = False) -> MaskPrediction:
        """Decode B prompts on one embedded slice in one batched decoder call (prompt rules: `check_prompts`).

        Args:
            embedding: from `embed` (or `embedding_from_arrays`).
            points: (B, P, 2) float, (y, x) in slice pixels; P may be 0 when `boxes` are given.
            point_labels: (B, P) int: 1 foreground, 0 background (negative), -1 padding (ignored).
            boxes: optional (B, 4) float, (y0, x0, y1, x1) in slice pixels.
            mask_logits: optional (B, h, w) prior logits, as returned in `MaskPrediction.logits[:, m]`
                (h, w = `self.low_res`; they live in the model frame, not in slice pixels).
            multimask: 3 candidate masks per prompt instead of 1.

        Returns:
            MaskPrediction with masks (B, M, H, W) bool, logits (B, M, h, w) float32, iou_scores (B, M) float32.
        """
        import torch

        H, W = embedding.image_shape
        prompts = self._check_prompts(embedding, points, point_labels, boxes, mask_logits)
        pts, labels, bxs, prior = prompts.points, prompts.labels, prompts.boxes, prompts.mask_logits
        B = len(prompts)
        M = 3 if multimask else 1
        if B == 0:
            return MaskPrediction(np.zeros((0, M, H, W), bool), np.zeros((0, M, *self.low_res), np.float32),
                                  np.zeros((0, M), np.float32))
        geom = self.geometry((H, W))
        kwargs: dict[str, Any] = {"multimask_output": multimask}
        dev = self.device
        if pts.shape[1] > 0:
            xy = geom.prompts_to_model(pts)[:, None]  # (B, 1, P, 2): prompts ride on the image-batch axis
            kwargs["input_points"] = torch.as_tensor(xy, dtype=torch.float32, device=dev)
            kwargs["input_labels"] = torch.as_tensor(labels[:, None], dtype=torch.long, device=dev)
        if bxs is not None:
            boxes_xy = geom.prompt_boxes_to_model(bxs)[:, None]
            kwargs["input_boxes"] = torch.as_tensor(boxes_xy, dtype=torch.float32, device=dev)
        if prior is not None:
            kwargs["input_masks"] = torch.as_tensor(prior[:, None], device=dev).to(self.dtype)
        with torch.inference_mode():
            emb = {k: v.to(dev).expand(B, *v.shape[1:]) for k, v in embedding.data.items()}
            if self.family == "sam":
                out = self.model(image_embeddings=emb["image_embeddings"], **kwargs)
            elif self.family == "sam-hq":
                out = self.model(image_embeddings=emb["image_embeddings"],
                                 intermediate_embeddings=[embedding.data["intermediate_embeddings"].to(dev)], **kwargs)
            else:
                out = self.model(image_embeddings=[emb["feat_s0"], emb["feat_s1"], emb["image_embeddings"]], **kwargs)
            low = out.pred_masks[:, 0].float()  # (B, M, h, w)
            iou = out.iou_scores[:, 0].float()  # (B, M)
            masks = self._upsample(low.reshape(B * low.shape[1], *low.shape[-2:]), geom)
        M = low.shape[1]
        return MaskPrediction(masks.reshape(B, M, H, W), low.cpu().numpy().astype(np.float32),
                              iou.cpu().numpy().astype(np.float32))

    def _upsample(self, low: torch.Tensor, geom: Geometry) -> np.ndarray:
        """(N, h, w) frame logits -> (N, H, W) bool masks, in chunks to bound memory."""
        H, W = geom.original
        out = np.empty((low.shape[0], H, W), dtype=bool)
        step = max(1, _MASK_CHUNK_BYTES // max(1, 4 * H * W))
        for start in range(0, low.shape[0], step):
            out[start:start + step] = (logits_to_image(low[start:start + step], geom) > 0).cpu().numpy()
        return out

    def _check_prompts(self, embedding: SliceEmbedding, points: np.ndarray, point_labels: np.ndarray,
                       boxes: np.ndarray | None, mask_logits: np.ndarray | None) -> CheckedPrompts:
        """The shared prompt rules, with this model's low-res grid as the shape of the mask logits."""
        if not isinstance(embedding, SliceEmbedding) or not isinstance(embedding.data, dict):
            raise InputError(f"predict needs an embedding from model '{self.name}'.embed()")
        return check_prompts(embedding.image_shape, points, point_labels, boxes, mask_logits, self.low_res)

    def signature(self) -> dict[str, Any]:
        """What determines an embedding: model name and family, weights hash, precision and preprocessing."""
        if self.family == "sam2":
            return self._signature(layout="stretch")
        # the 8-bit PIL resize of segment-anything's predictor (earlier embeddings came from a float resize)
        return self._signature(layout="longest-side+pad", pixels="uint8+pil-bilinear")

