"""Preprocessing shared by the transformers backends: robust intensity normalisation, resize + pad into the
model's input frame, and the exact coordinate and mask mappings between slice pixels and that frame.

Conventions:
- Slice pixels: arrays (H, W); point coordinates (y, x) with pixel centres at integers, so pixel (i, j)
  covers the continuous square [i - 0.5, i + 0.5) x [j - 0.5, j + 0.5).
- Model frame: the (Fh, Fw) tensor the network sees. The slice is resized to (h, w) = `Geometry.resized`
  and placed at the top-left corner; the rest is zero padding (after normalisation). Coordinates in the
  model frame are (x, y) pixel indices, as the SAM prompt encoders expect (they add 0.5 themselves).
- The resize maps pixel centres by the per-axis scale s = h / H (resp. w / W): continuous coordinate
  c in the slice (c = index + 0.5) goes to c * s in the frame. Images, masks and `points_to_model` all use
  this one mapping, so a round trip is exact on non-square slices too.
- Prompts of the SAM-family backends (SAM 2 included) follow Meta's predictors instead (`prompts_to_model`):
  the pixel index times s, 0.5 * (1 - s) frame pixels away from the centre mapping.

The SAM layout (`longest_side_geometry`, `to_sam_input`, two-step mask upsampling) reproduces segment-anything's
`SamPredictor` from the 8-bit image on: 8-bit slice, PIL bilinear resize, (v - 255 mean) / (255 std), zero
padding; low-res logits upsampled to the frame, cropped to the content, then resized to the slice.

numpy for the statistics, PIL for SAM's 8-bit resize, torch for the rest (no torchvision). torch is imported
inside functions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """Where one slice of shape `original` (H, W) sits in a model input frame.

    Attributes:
        original: (H, W) of the slice.
        resized: (h, w) of the resized slice inside the frame (top-left aligned).
        frame: (Fh, Fw) of the model input; frame - resized is zero padding.
        masks_via_frame: how `logits_to_image` brings low-res logits back: True as SAM's predictor does
            (bilinear to the whole frame, crop to `resized`, bilinear to `original`); False in one bilinear
            step sampled at the slice pixel centres (SAM 2's predictor).
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    frame: tuple[int, int]
    masks_via_frame: bool = False

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx): frame pixels per slice pixel along y and x."""
        return self.resized[0] / self.original[0], self.resized[1] / self.original[1]

    def points_to_model(self, points_yx: np.ndarray) -> np.ndarray:
        """(..., 2) (y, x) slice coordinates -> (..., 2) (x, y) model-frame pixel coordinates (float64)."""
        p = np.asarray(points_yx, dtype=np.float64)
        sy, sx = self.scale
        return np.stack([(p[..., 1] + 0.5) * sx - 0.5, (p[..., 0] + 0.5) * sy - 0.5], axis=-1)

    def points_from_model(self, points_xy: np.ndarray) -> np.ndarray:
        """Inverse of `points_to_model`: (..., 2) (x, y) frame coordinates -> (..., 2) (y, x) slice coordinates."""
        p = np.asarray(points_xy, dtype=np.float64)
        sy, sx = self.scale
        return np.stack([(p[..., 1] + 0.5) / sy - 0.5, (p[..., 0] + 0.5) / sx - 0.5], axis=-1)

    def boxes_to_model(self, boxes_yxyx: np.ndarray) -> np.ndarray:
        """(..., 4) (y0, x0, y1, x1) slice boxes -> (..., 4) (x0, y0, x1, y1) model-frame boxes."""
        b = np.asarray(boxes_yxyx, dtype=np.float64)
        first = self.points_to_model(b[..., 0:2])
        second = self.points_to_model(b[..., 2:4])
        return np.concatenate([first, second], axis=-1)

    def prompts_to_model(self, points_yx: np.ndarray) -> np.ndarray:
        """(..., 2) (y, x) slice coordinates -> (..., 2) (x, y) frame coordinates, as Meta's predictors place
        prompts: index times scale (segment-anything's `apply_coords`, SAM 2's `transform_coords`).

        This differs from `points_to_model` by 0.5 * (1 - s) frame pixels; following it makes a prompt give
        what Meta's predictor gives for the same pixel."""
        p = np.asarray(points_yx, dtype=np.float64)
        sy, sx = self.scale
        return np.stack([p[..., 1] * sx, p[..., 0] * sy], axis=-1)

    def prompt_boxes_to_model(self, boxes_yxyx: np.ndarray) -> np.ndarray:
        """(..., 4) (y0, x0, y1, x1) slice boxes -> (..., 4) (x0, y0, x1, y1) frame boxes, corners mapped
        by `prompts_to_model`."""
        b = np.asarray(boxes_yxyx, dtype=np.float64)
        return np.concatenate([self.prompts_to_model(b[..., 0:2]), self.prompts_to_model(b[..., 2:4])], axis=-1)


def longest_side_geometry(shape: tuple[int, int], target: int) -> Geometry:
    """SAM's layout: resize so the longest side is `target` (aspect kept, rounded), pad to `target` x `target`;
    masks come back through the frame, as in SAM's predictor."""
    h, w = _check_shape(shape)
    scale = target / max(h, w)
    resized = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
    return Geometry((h, w), resized, (target, target), masks_via_frame=True)


def stretch_geometry(shape: tuple[int, int], target: int) -> Geometry:
    """SAM 2's layout: resize to `target` x `target` without keeping the aspect ratio, no padding."""
    h, w = _check_shape(shape)
    return Geometry((h, w), (target, target), (target, target))


def patch_geometry(shape: tuple[int, int], target: int, patch: int, pad_to_target: bool = False) -> Geometry:
    """ViT layout: longest side ~ `target`, each side rounded to a whole number of patches (at most half a
    patch of aspect change), so every feature cell covers image content only.

    With `pad_to_target` the frame is `target` x `target` (for encoders with fixed position embeddings,
    e.g. SAM's); otherwise the frame is the resized size itself (no padding).
    """
    h, w = _check_shape(shape)
    if target % patch:
        raise InputError(f"input size {target} is not a multiple of the patch size {patch}")
    scale = target / max(h, w)
    cells = (max(1, int(round(h * scale / patch))), max(1, int(round(w * scale / patch))))
    resized = (cells[0] * patch, cells[1] * patch)
    frame = (target, target) if pad_to_target else resized
    return Geometry((h, w), resized, frame)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"image shape {tuple(shape)} is not a non-empty 2D (H, W) shape")
    return int(shape[0]), int(shape[1])


def normalize_intensity(
    images: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> np.ndarray:
    """Clip each image to its own percentile range and scale it to [0, 1].

    Args:
        images: (H, W) or (B, H, W) float array of any range (tomogram slices).
        percentiles: (low, high) percentiles in [0, 100]; robust to hot pixels and gold fiducials.

    Returns:
        float32 array of the same shape in [0, 1]. A constant image becomes all zeros.
    """
    arr = np.asarray(images)
    if arr.ndim not in (2, 3):
        raise InputError(f"expected a 2D (H, W) image or a (B, H, W) stack, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"image of shape {arr.shape} is empty")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"image dtype {arr.dtype} is not a real numeric type")
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise InputError(f"percentiles {percentiles} must satisfy 0 <= low < high <= 100")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError("image contains NaN or infinite values; clean them first (e.g. nan_policy='clean')")
    lo, hi = np.percentile(arr, [lo_p, hi_p], axis=(-2, -1), keepdims=True).astype(np.float32)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0).astype(np.float32)
    out = np.clip((arr - lo) / safe, 0.0, 1.0)
    return np.where(span > 0, out, 0.0).astype(np.float32)


def to_model_input(
    images01: np.ndarray,
    geometry: Geometry,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Resize [0, 1] grey images into the model frame as 3-channel normalised pixel values.

    Args:
        images01: (B, H, W) float32 in [0, 1] (from `normalize_intensity`), all of shape `geometry.original`.
        geometry: where the slices go in the frame.
        mean, std: per-channel normalisation of the model (applied to the grey value copied to RGB).

    Returns:
        (B, 3, Fh, Fw) tensor on `device` in `dtype` (float32 if None); padding is 0 after normalisation.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(images01, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if tuple(arr.shape[1:]) != geometry.original:
        raise InputError(f"image shape {arr.shape[1:]} does not match the geometry {geometry.original}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=torch.float32)[:, None]
    if geometry.resized != geometry.original:
        down = geometry.resized[0] < geometry.original[0] or geometry.resized[1] < geometry.original[1]
        # torch's antialiased bilinear resize to a one-pixel-wide output fills the whole column with one value
        # (seen with torch 2.13 on the CPU); the resize is separable, so resizing the transposed image is the same
        flip = down and geometry.resized[1] == 1 and geometry.resized[0] > 1
        size = geometry.resized[::-1] if flip else geometry.resized
        # antialias only when shrinking: it low-pass filters so thin membranes do not alias away
        x = x.transpose(-1, -2) if flip else x
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)
        x = x.transpose(-1, -2) if flip else x
    return _normalise_and_pad(x, geometry, mean, std, dtype)


def _normalise_and_pad(x: torch.Tensor, geometry: Geometry, mean: tuple[float, float, float],
                       std: tuple[float, float, float], dtype: torch.dtype | None) -> torch.Tensor:
    """(B, 1, h, w) resized grey pixels -> (B, 3, Fh, Fw): grey copied to RGB, normalised per channel in float32,
    zero-padded at the bottom and right, cast to `dtype` (float32 if None)."""
    import torch
    import torch.nn.functional as F

    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x.expand(-1, 3, -1, -1) - m) / s
    pad_h = geometry.frame[0] - geometry.resized[0]
    pad_w = geometry.frame[1] - geometry.resized[1]
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=0.0)
    return x.to(dtype or torch.float32).contiguous()


def to_uint8(images01: np.ndarray) -> np.ndarray:
    """[0, 1] images (from `normalize_intensity`) -> the 8-bit images SAM's reference predictor takes.

    Args:
        images01: (H, W) or (B, H, W) float in [0, 1].

    Returns:
        uint8 array of the same shape: 255 * value rounded to the nearest integer.
    """
    return np.rint(np.clip(np.asarray(images01, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def to_sam_input(
    images01: np.ndarray,
    geometry: Geometry,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """SAM's input, as segment-anything's `SamPredictor.set_image` makes it from the 8-bit image `to_uint8` gives.

    The 8-bit grey image is resized with PIL's bilinear filter (antialiased when shrinking, rounded back to
    8 bits: what `ResizeLongestSide` does through torchvision on a PIL image; resizing the grey image equals
    resizing each of its RGB copies), then normalised as (v - 255 mean) / (255 std) and zero-padded.

    Args:
        images01: (B, H, W) or (H, W) float32 in [0, 1] (from `normalize_intensity`), of shape `geometry.original`.
        geometry: where the slices go in the frame.
        mean, std: per-channel normalisation in [0, 1] units (SAM's pixel_mean / 255, pixel_std / 255).

    Returns:
        (B, 3, Fh, Fw) tensor on `device` in `dtype` (float32 if None); padding is 0 after normalisation.
    """
    import torch
    from PIL import Image

    arr = to_uint8(images01)
    if arr.ndim == 2:
        arr = arr[None]
    if tuple(arr.shape[1:]) != geometry.original:
        raise InputError(f"image shape {arr.shape[1:]} does not match the geometry {geometry.original}")
    h, w = geometry.resized
    # PIL returns a copy when the size is unchanged, as torchvision's resize does
    resized = np.stack([np.asarray(Image.fromarray(a).resize((w, h), Image.BILINEAR)) for a in arr])
    x = torch.from_numpy(resized).to(device=device)[:, None].float()
    # the normalisation in 0..255 units, in float32, as SAM's pixel_mean / pixel_std buffers
    return _normalise_and_pad(x, geometry, tuple(255.0 * v for v in mean), tuple(255.0 * v for v in std), dtype)


def _bilinear_matrix(n_out: int, n_in: int, ratio: float) -> torch.Tensor:
    """(n_out, n_in) float64 weights of a 1D bilinear resampling with `F.interpolate(..., align_corners=False)`'s
    rule: output pixel i reads input coordinate (i + 0.5) * ratio - 0.5 (ratio: input pixels per output pixel),
    clamped to the end pixels."""
    import torch

    u = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * ratio - 0.5).clamp(0.0, n_in - 1)
    i0 = torch.floor(u).long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    frac = u - i0
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    weights.index_put_((rows, i0), 1.0 - frac, accumulate=True)
    weights.index_put_((rows, i1), frac, accumulate=True)
    return weights


@functools.lru_cache(maxsize=64)
def _axis_matrix(n_out: int, n_resized: int, n_frame: int, n_low: int, via_frame: bool,
                 device: torch.device) -> torch.Tensor:
    """(n_out, n_low) float32 weights on `device` bringing one axis of low-res logits (spanning `n_frame`
    frame pixels, the first `n_resized` of them content) back to `n_out` slice pixels. Built in float64 on
    the CPU (small; MPS has no float64). Cached: every slice of a volume, and every training batch, has the
    same geometry; callers only read the result."""
    import torch

    if via_frame:  # SAM: to the whole frame, keep the content, then to the slice
        to_frame = _bilinear_matrix(n_frame, n_low, n_low / n_frame)[:n_resized]
        weights = _bilinear_matrix(n_out, n_resized, n_resized / n_out) @ to_frame
    else:  # one step at the slice pixel centres, (i + 0.5) * n_resized / n_out frame pixels
        weights = _bilinear_matrix(n_out, n_low, n_resized / n_out * n_low / n_frame)
    return weights.to(device=device, dtype=torch.float32)


def logits_to_image(logits: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Map low-resolution mask logits that span the whole model frame back to slice pixels.

    Args:
        logits: (N, h_low, w_low) logits covering the frame (Fh, Fw) (SAM: 256 x 256 over 1024 x 1024).
        geometry: the slice's geometry; `geometry.masks_via_frame` picks SAM's two resizes (to the frame,
            crop, to the slice) or one bilinear sampling at the slice pixel centres (SAM 2).

    Returns:
        (N, H, W) float32 logits at the slice's resolution. Both are separable and linear, so each is one
        (H, h_low) and one (w_low, W) matrix product: exact, without a frame-sized intermediate.
    """
    import torch

    n_low_y, n_low_x = logits.shape[-2:]
    (H, W), (h, w), (Fh, Fw) = geometry.original, geometry.resized, geometry.frame
    ry = _axis_matrix(H, h, Fh, n_low_y, geometry.masks_via_frame, logits.device)
    rx = _axis_matrix(W, w, Fw, n_low_x, geometry.masks_via_frame, logits.device)
    return torch.matmul(torch.matmul(ry, logits.float()), rx.T)


def backend_signature(backend: Any, **preprocess: Any) -> dict[str, Any]:
    """What determines a transformers backend's output: model, weights hash, precision and preprocessing.

    `backend` has name, family, model, weights_hash, dtype, percentiles, mean, std and input_size;
    `preprocess` adds what is specific to the backend (its layout, patch size)."""
    from .device import dtype_name

    return {
        "name": backend.name,
        "family": backend.family,
        "class": type(backend.model).__name__,
        "weights": backend.weights_hash,
        "dtype": dtype_name(backend.dtype),
        "preprocess": {"percentiles": list(backend.percentiles), "mean": list(backend.mean),
                       "std": list(backend.std), "input_size": backend.input_size, **preprocess},
    }
