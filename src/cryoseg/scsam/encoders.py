"""ScSAM's two frozen encoders, run once per slice through cryoseg's embedding cache.

SAM's image encoder gives (256, 64, 64) per slice at 1024 px (the tiny SAM: its own width and grid); the MAE
encoder (mask ratio 0) gives its patch-token grid, e.g. (768, 14, 14) at 224 px. Both are frozen, so their outputs
are computed once and kept (in memory, and in the signed zarr cache with `cache_dir`): an epoch then costs only the
light modules. The SAM model is always loaded, even for the MAE-only ablation: its mask decoder initialises ScSAM's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume, as_volume_array
from ..models.registry import get_spec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EncoderChoice:
    """Which frozen encoders a ScSAM model uses.

    Attributes:
        sam: registry name of a SAM ("sam-vit-b", "tiny-sam", ...): its image encoder, and its mask decoder to start
            from.
        mae: registry name of an MAE encoder ("mae-vit-base", "tiny-mae", ...).
        sam_weights, mae_weights: where their weights are (folder, hub id or SAM .pth); None: the registry's lookup.
            The `encoder/` folder written by `cryoseg scsam pretrain-mae` is an MAE's weights.
    """

    sam: str = "sam-vit-b"
    mae: str = "mae-vit-base"
    sam_weights: str | None = None
    mae_weights: str | None = None

    def __post_init__(self) -> None:
        for name, family in ((self.sam, ("sam",)), (self.mae, ("mae",))):
            if get_spec(name).family not in family:
                raise InputError(f"model '{name}' is a {get_spec(name).family} model; ScSAM needs a "
                                 f"{' or '.join(family).upper()} here")

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if v is not None else None) for k, v in asdict(self).items()}


@dataclass
class SliceEmbeddings:
    """The frozen encoders' outputs for N slices of one shape.

    Attributes:
        sam: (N, Cs, h, w) float32 SAM image embeddings, or None when not asked for.
        mae: (N, Cm, hm, wm) float32 MAE patch-grid features, or None when not asked for.
        image_shape: (H, W) of the slices.
    """

    sam: torch.Tensor | None
    mae: torch.Tensor | None
    image_shape: tuple[int, int]


class FrozenEncoders:
    """Loads the two encoders once and embeds stacks of slices.

    Args:
        choice: which encoders.
        device, dtype: as for `cryoseg.models.load_segmenter` (CPU fp32 by default).
        cache_dir: folder of the embedding cache (None: memory only).
    """

    def __init__(self, choice: EncoderChoice, device: Any = None, dtype: Any = None,
                 cache_dir: str | Path | None = None) -> None:
        from ..models.loaders import load_feature_extractor, load_segmenter

        self.choice = choice
        self.cache_dir = cache_dir
        self.segmenter = load_segmenter(choice.sam, weights=choice.sam_weights, device=device, dtype=dtype)
        self.extractor = load_feature_extractor(choice.mae, weights=choice.mae_weights, device=device, dtype=dtype)

    @property
    def sam_model(self) -> Any:
        """The transformers `SamModel` (its mask decoder and positional embedding seed ScSAM's decoder)."""
        return self.segmenter.model

    def signature(self) -> dict[str, Any]:
        """What a trained model records of its encoders, to refuse others at prediction."""
        return {"sam": self.segmenter.signature(), "mae": self.extractor.signature()}

    def embed(self, volume: np.ndarray | Volume, use_sam: bool = True, use_mae: bool = True) -> SliceEmbeddings:
        """Embed every z slice of a (Z, Y, X) volume or stack of images (cached; each slice once)."""
        import torch

        from ..embed import SliceEmbedder, extract_view_features
        from ..progress import track

        vol = as_volume_array(volume)
        sam = mae = None
        if use_sam:
            embedder = SliceEmbedder(self.segmenter, vol, cache_dir=self.cache_dir)
            sam = torch.cat([embedder.get("z", i).data["image_embeddings"].float().cpu()
                             for i in track(range(len(vol)), "SAM embeddings")])
        if use_mae:
            stack = extract_view_features(vol, self.extractor, views=("z",), cache_dir=self.cache_dir)["z"]
            mae = torch.from_numpy(np.ascontiguousarray(stack.features, dtype=np.float32))
        return SliceEmbeddings(sam, mae, (int(vol.shape[1]), int(vol.shape[2])))

    def to_slice(self, low_res: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
        """(..., h4, w4) low-resolution logits over SAM's input frame -> (..., H, W) at the slice's pixels, as
        SAM's own masks are mapped back (differentiable: two matrix products)."""
        from ..models.preprocess import logits_to_image

        return logits_to_image(low_res, self.segmenter.geometry(image_shape))
