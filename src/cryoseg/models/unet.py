"""The shape rules of the MONAI 2D U-Nets cryoseg trains (the unsupervised student, compact-features)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError


def check_unet_levels(channels: Sequence[int], strides: Sequence[int], what: str) -> None:
    """Refuse U-Net levels MONAI's `UNet` cannot build: fewer than 2 levels, not one stride fewer than levels, or a
    channel count or stride below 1. `what` names the network in the message."""
    if len(channels) < 2 or len(strides) != len(channels) - 1:
        raise InputError(f"{what} needs at least 2 levels and one stride fewer than levels; got channels "
                         f"{tuple(channels)}, strides {tuple(strides)}")
    if min(*channels, *strides) < 1:
        raise InputError(f"{what}'s channels and strides must be whole numbers >= 1")
