"""compact-features: cryoseg's own dense feature extractor, a small MONAI 2D U-Net trained on the simulator
(`cryoseg train features`) behind the `FeatureExtractor` interface.

Unlike the ViT extractors, it works on each slice at its own pixel size (fully convolutional, no resizing): a
particle's features do not change with the size of the tomogram around it, as the voxel size, not the image size,
sets what a particle looks like. Each slice is normalised as the filter bank normalises it (`robust_normalize`), the
network's per-pixel embedding is averaged over `stride` x `stride` cells (the filter bank's grid, so matching
settings carry over) and every cell's vector scaled to unit length (matching compares by cosine).

A weights folder holds config.json (`CompactFeaturesConfig`, with "model": "compact-features") and
model.safetensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, InputError
from .base import FeatureExtractor, FeatureMap
from .filterbank import robust_normalize
from .unet import check_unet_levels

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_NAME = "compact-features"


@dataclass(frozen=True)
class CompactFeaturesConfig:
    """The network of compact-features.

    Attributes:
        channels: U-Net channels per level (MONAI `UNet`).
        strides: down-sampling between levels (slices are padded to a multiple of their product; the U-Net
            returns full resolution, and `stride` alone sets the feature grid).
        num_res_units: residual units per block.
        dim: channels of the embedding (the feature vector of a cell).
        stride: pixels per feature cell (the filter bank's 4 by default).
    """

    channels: tuple[int, ...] = (16, 32, 64)
    strides: tuple[int, ...] = (2, 2)
    num_res_units: int = 1
    dim: int = 32
    stride: int = 4

    def __post_init__(self) -> None:
        check_unet_levels(self.channels, self.strides, "compact-features")
        if min(self.dim, self.stride) < 1:
            raise InputError("compact-features' dim and stride must be whole numbers >= 1")

    @property
    def multiple(self) -> int:
        """Slices are padded to a multiple of this (the product of the strides) before the U-Net."""
        return int(np.prod(self.strides))


def build_network(config: CompactFeaturesConfig) -> Any:
    """A randomly initialised MONAI 2D U-Net: (B, 1, H, W) normalised slices -> (B, dim, H, W) embeddings."""
    from monai.networks.nets import UNet

    # batch norm, not MONAI's default instance norm: at inference its fixed statistics keep each cell's vector a
    # function of its neighbourhood alone, not of the whole slice
    return UNet(spatial_dims=2, in_channels=1, out_channels=config.dim, channels=tuple(config.channels),
                strides=tuple(config.strides), num_res_units=config.num_res_units, norm="batch")


def cell_embeddings(network: Any, images: Any, config: CompactFeaturesConfig) -> Any:
    """(B, H, W) normalised float32 tensor -> (B, dim, ceil(H / stride), ceil(W / stride)) unit-length cell vectors.

    Slices are reflect-padded to a multiple of the U-Net's strides and the result cropped back; cells average the
    pixels they cover (the last row and column may be partial). Differentiable: training uses it too."""
    import torch.nn.functional as F

    H, W = images.shape[-2:]
    m = config.multiple
    pad_y, pad_x = -H % m, -W % m
    x = images[:, None]
    if pad_y or pad_x:
        x = F.pad(x, (0, pad_x, 0, pad_y), mode="reflect" if min(H, W) > max(pad_y, pad_x) else "replicate")
    pixels = network(x)[..., :H, :W]
    s = config.stride
    cells = F.avg_pool2d(pixels, s, s, ceil_mode=True, count_include_pad=False) if s > 1 else pixels
    return F.normalize(cells, dim=1)


class CompactFeatureExtractor(FeatureExtractor):
    """compact-features behind the `FeatureExtractor` interface (CPU or GPU, float32).

    Args:
        network: the U-Net of `build_network(config)` with trained weights.
        config: its configuration.
        weights_hash: identifies the weights in the embedding cache's key.
        device: where the network runs.
        batch_size: slices per forward pass.
    """

    name = MODEL_NAME

    def __init__(self, network: Any, config: CompactFeaturesConfig, weights_hash: str, device: Any = "cpu",
                 batch_size: int = 16) -> None:
        self.network = network.to(device).eval()
        self.config = config
        self.weights_hash = weights_hash
        self.device = device
        self.batch_size = int(batch_size)

    @classmethod
    def from_folder(cls, folder: str | Path, weights_hash: str, device: Any = "cpu",
                    batch_size: int = 16) -> CompactFeatureExtractor:
        """Load a weights folder (config.json + model.safetensors) written by `save_folder`."""
        config, network = load_network(Path(folder))
        return cls(network, config, weights_hash, device, batch_size)

    def extract(self, images: np.ndarray) -> FeatureMap:
        """Features of B slices.

        Args:
            images: (B, H, W) real array, any range (a single (H, W) image is taken as B = 1).

        Returns:
            FeatureMap with features (B, dim, ceil(H / stride), ceil(W / stride)) float32, unit length per cell;
            stride (stride, stride), patch_size = stride.
        """
        import torch

        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[0] == 0:
            raise InputError(f"extract expects a non-empty (B, H, W) stack of images, got shape {arr.shape}")
        s = self.config.stride
        out = np.empty((len(arr), self.config.dim, -(-arr.shape[1] // s), -(-arr.shape[2] // s)), np.float32)
        for start in range(0, len(arr), self.batch_size):
            chunk = torch.from_numpy(robust_normalize(arr[start:start + self.batch_size])).to(self.device)
            with torch.inference_mode():
                out[start:start + len(chunk)] = cell_embeddings(self.network, chunk, self.config).cpu().numpy()
        return FeatureMap(out, (float(s), float(s)), arr.shape[1:], s)

    def signature(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights_hash, **asdict(self.config)}


def save_folder(network: Any, config: CompactFeaturesConfig, folder: Path, record: dict[str, Any] | None = None
                ) -> None:
    """Write config.json and model.safetensors (and training.json when `record` is given) into `folder`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps({"model": MODEL_NAME, **asdict(config)}, indent=2))
    save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, folder / WEIGHTS_FILE)
    if record is not None:
        (folder / "training.json").write_text(json.dumps(record, indent=2, default=str))


def load_network(folder: Path) -> tuple[CompactFeaturesConfig, Any]:
    """The configuration and network of a compact-features folder (CPU, eval mode).

    Raises:
        CorruptFileError: config.json or model.safetensors is missing, unreadable, or of another model.
    """
    from safetensors.torch import load_file

    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{folder} is not a compact-features folder: {CONFIG_FILE} unreadable ({exc})") from None
    if data.pop("model", None) != MODEL_NAME:
        raise CorruptFileError(f"{folder / CONFIG_FILE} is not a compact-features configuration")
    try:
        config = CompactFeaturesConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise CorruptFileError(f"{folder / CONFIG_FILE}: {exc}") from None
    network = build_network(config)
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
        network.load_state_dict(state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CorruptFileError(f"{folder / WEIGHTS_FILE} does not hold compact-features weights ({exc})") from None
    return config, network.eval()
