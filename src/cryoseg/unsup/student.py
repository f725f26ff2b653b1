"""The student network that learns from the pseudo-labels: a MONAI 2D U-Net (as in the reference), trained on
random crops with cross-entropy plus Dice, applied to whole tomograms slice by slice with sliding windows.

The student sees the raw slices (each normalised by `normalise_slices`), not the feature extractor's canvas: once
trained it needs neither the diffusion model nor the spectral steps, so segmenting a tomogram is one network pass
per window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.filterbank import robust_normalize
from ..models.unet import check_unet_levels

N_CLASSES = 3  # background, membrane, particle (`labels.CLASS_NAMES`)


@dataclass(frozen=True)
class StudentConfig:
    """The student's architecture and how it sees the slices.

    Attributes:
        channels: feature channels per U-Net level.
        strides: down-sampling stride between levels (len(channels) - 1 of them).
        num_res_units: residual units per block (MONAI's UNet).
        dropout: dropout inside the blocks.
        patch: side of the training crops and of the sliding window, in pixels (a multiple of the product of the
            strides, so every level divides evenly).
        overlap: sliding-window overlap (0..1) when segmenting whole slices.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 2
    dropout: float = 0.1
    patch: int = 128
    overlap: float = 0.25

    def __post_init__(self) -> None:
        check_unet_levels(self.channels, self.strides, "the student network")
        step = int(np.prod(self.strides))
        if self.patch < step or self.patch % step:
            raise InputError(f"patch ({self.patch}) must be a multiple of the strides' product ({step})")
        if not 0 <= self.overlap < 1 or not 0 <= self.dropout < 1:
            raise InputError("overlap and dropout must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples); `from_dict` reads it back."""
        from ..io.report import as_json

        return as_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        try:
            return cls(channels=tuple(data["channels"]), strides=tuple(data["strides"]),
                       num_res_units=int(data["num_res_units"]), dropout=float(data["dropout"]),
                       patch=int(data["patch"]), overlap=float(data["overlap"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a student network configuration ({exc})") from None


def build_student(config: StudentConfig = StudentConfig()) -> Any:
    """A randomly initialised MONAI 2D U-Net: (B, 1, H, W) normalised slices -> (B, 3, H, W) class logits."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=N_CLASSES, channels=tuple(config.channels),
                strides=tuple(config.strides), num_res_units=config.num_res_units, dropout=config.dropout)


def normalise_slices(stack: np.ndarray) -> np.ndarray:
    """(Z, H, W) slices -> float32, each clipped to its 0.5/99.5 percentiles and scaled to zero mean, unit variance
    (the same for training and segmenting, whatever the tomogram's grey scale)."""
    return robust_normalize(np.asarray(stack))


def random_crops(images: np.ndarray, labels: np.ndarray, n: int, patch: int, rng: np.random.Generator,
                 foreground_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """`n` random (patch, patch) crops of slices, half of them (by default) centred on a labelled pixel so that
    thin membranes and rare particles are seen often enough.

    Args:
        images: (N, H, W) float32 normalised slices.
        labels: (N, H, W) integer pseudo-labels.
        n: crops to cut.
        patch: crop side; slices smaller than it are padded (reflect for images, background for labels).
        rng: the random generator (seeded by the caller for repeatable epochs).

    Returns:
        (n, patch, patch) float32 images and (n, patch, patch) int64 labels.
    """
    pad_y, pad_x = max(0, patch - images.shape[1]), max(0, patch - images.shape[2])
    if pad_y or pad_x:
        widths = ((0, 0), (0, pad_y), (0, pad_x))
        images = np.pad(images, widths, mode="reflect" if min(images.shape[1:]) > 1 else "edge")
        labels = np.pad(labels, widths)
    _, h, w = images.shape
    foreground = np.argwhere(labels > 0)
    out_images = np.empty((n, patch, patch), np.float32)
    out_labels = np.empty((n, patch, patch), np.int64)
    for i in range(n):
        if len(foreground) and rng.random() < foreground_share:
            k, cy, cx = foreground[rng.integers(len(foreground))]
            y = int(np.clip(cy - patch // 2, 0, h - patch))
            x = int(np.clip(cx - patch // 2, 0, w - patch))
        else:
            k, y, x = rng.integers(len(images)), rng.integers(h - patch + 1), rng.integers(w - patch + 1)
        out_images[i] = images[k, y:y + patch, x:x + patch]
        out_labels[i] = labels[k, y:y + patch, x:x + patch]
    return out_images, out_labels


def predict_slices(model: Any, stack: np.ndarray, config: StudentConfig, batch_size: int = 4,
                   description: str = "segmenting slices") -> np.ndarray:
    """Class probabilities of every slice by Gaussian-weighted sliding windows.

    Args:
        model: the student (eval mode); its device is used.
        stack: (Z, H, W) slices, already `normalise_slices`-d.
        config: patch and overlap of the windows.
        batch_size: slices per forward pass.

    Returns:
        (3, Z, H, W) float32 probabilities (background, membrane, particle).
    """
    import torch
    from monai.inferers import sliding_window_inference

    from ..progress import track

    device = next(model.parameters()).device
    out = np.empty((N_CLASSES, *stack.shape), np.float32)
    starts = range(0, len(stack), batch_size)
    with torch.inference_mode():
        for start in track(starts, description, total=len(starts)):
            x = torch.from_numpy(np.ascontiguousarray(stack[start:start + batch_size]))[:, None].to(device)
            logits = sliding_window_inference(x, (config.patch, config.patch), batch_size, model,
                                              overlap=config.overlap, mode="gaussian", padding_mode="constant")
            out[:, start:start + batch_size] = torch.softmax(logits, dim=1).float().cpu().numpy().transpose(1, 0, 2, 3)
    return out
