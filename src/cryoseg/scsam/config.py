"""Settings of the ScSAM head (the trained part of ScSAM); every default lives here. A light module (no torch), so
the CLI can quote these defaults and a saved config can be read without the model stack."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import InputError

BACKGROUND = "background"


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _weight(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ScSAMConfig:
    """The ScSAM head: which frozen encoders feed it, its widths and grid, its prompts and its loss.

    Attributes:
        class_names: the K >= 1 foreground classes, in label order: label k (1..K) is `class_names[k - 1]`;
            label 0 is the background, which is implicit (so no class may be called "background").
        use_sam: feed the SAM image embedding (False: the MAE-only ablation).
        use_mae: feed the MAE patch-grid embedding (False: the SAM-only ablation). At least one must be used.
        sam_dim: channels Cs of the SAM image embedding (256 for SAM ViT-B/L/H).
        mae_dim: channels Cm of the MAE patch embedding (the ViT hidden size, 768 for ViT-B).
        embed_dim: width of the fused embedding and of SAM's mask decoder (its hidden size: 256 for real SAM).
        grid: (h, w) of the SAM image embedding (64 x 64 for SAM at 1024 px); when SAM is unused, the grid the
            MAE features are resampled to. The decoder's logits are (4h, 4w).
        n_sparse: per class, the number of most activated positions that become sparse prompt tokens (besides the
            prototype token); 0 keeps only the prototype token.
        ce_weight, dice_weight: weights of cross-entropy and soft Dice on the (K+1)-class map.
        alignment_weight: weight of the FAFM alignment loss (mean 1 - cosine between the projected embeddings).
        prototype_weight: weight of the prototype separation loss.
        prototype_margin: cosine similarity two distinct prototypes may reach before the separation loss acts;
            in [-1, 1).
    """

    class_names: tuple[str, ...]
    use_sam: bool = True
    use_mae: bool = True
    sam_dim: int = 256
    mae_dim: int = 768
    embed_dim: int = 256
    grid: tuple[int, int] = (64, 64)
    n_sparse: int = 4
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    alignment_weight: float = 0.1
    prototype_weight: float = 0.1
    prototype_margin: float = 0.0

    def __post_init__(self) -> None:
        names = self.class_names
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise InputError(f"class_names must be a list of class names, got {names!r}")
        names = tuple(names)
        if not names:
            raise InputError("class_names must name at least one foreground class")
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"class names must be non-empty strings, got {name!r}")
            if name.strip().lower() == BACKGROUND:
                raise InputError(f"class name {name!r} is reserved: label 0 is the implicit background")
        if len(set(names)) != len(names):
            raise InputError(f"class names must be unique, got {list(names)}")
        object.__setattr__(self, "class_names", names)

        for flag in ("use_sam", "use_mae"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if not (self.use_sam or self.use_mae):
            raise InputError("ScSAM needs at least one encoder: use_sam and use_mae are both false")
        for dim in ("sam_dim", "mae_dim", "embed_dim"):
            _positive_int(getattr(self, dim), dim)

        grid = self.grid
        if isinstance(grid, str) or not isinstance(grid, (list, tuple)) or len(grid) != 2:
            raise InputError(f"grid must be (h, w), got {grid!r}")
        grid = (_positive_int(grid[0], "grid height"), _positive_int(grid[1], "grid width"))
        object.__setattr__(self, "grid", grid)

        n = self.n_sparse
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= grid[0] * grid[1]:
            raise InputError(f"n_sparse must be an integer in [0, {grid[0] * grid[1]}] (the grid's positions), "
                             f"got {n!r}")
        for weight in ("ce_weight", "dice_weight", "alignment_weight", "prototype_weight"):
            object.__setattr__(self, weight, _weight(getattr(self, weight), weight))
        if self.ce_weight == 0 and self.dice_weight == 0:
            raise InputError("ce_weight and dice_weight are both 0: nothing would train the segmentation")
        margin = self.prototype_margin
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not -1 <= margin < 1:
            raise InputError(f"prototype_margin must be a cosine similarity in [-1, 1), got {margin!r}")
        object.__setattr__(self, "prototype_margin", float(margin))

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes (the logits have K + 1 channels)."""
        return len(self.class_names)

    @property
    def label_names(self) -> tuple[str, ...]:
        """The name of every label 0..K: background first, then `class_names`."""
        return (BACKGROUND, *self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples); `from_dict` reads it back."""
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        out["grid"] = list(self.grid)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScSAMConfig:
        """The config saved by `to_dict`; unknown keys are an error (they would be silently lost)."""
        if not isinstance(data, dict):
            raise InputError(f"an ScSAM config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown ScSAM config keys {unknown}; known: {sorted(known)}")
        if "class_names" not in data:
            raise InputError("ScSAM config has no class_names")
        return cls(**data)
