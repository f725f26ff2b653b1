"""Fixtures of the ScSAM tests: the tiny random SAM (16-channel embeddings on an 8x8 grid, decoder width 16) and
tiny MAE-shaped embeddings (32 channels)."""

from __future__ import annotations

import pytest

SAM_DIM = 16  # tiny-sam: vision output_channels = decoder hidden size = 16, 8x8 embedding grid
MAE_DIM = 32  # tiny-mae hidden size


@pytest.fixture(scope="module")
def tiny_sam():
    """The tiny random-weight SamModel (shared by a module's tests: tests that train copy from it, never into it)."""
    from cryoseg.models.tiny import build_tiny_model

    return build_tiny_model("tiny-sam")


@pytest.fixture
def make_config():
    """`make_config(k, use_sam=True, use_mae=True, grid=(8, 8), **more)`: an ScSAMConfig sized for the tiny SAM."""
    from cryoseg.scsam import ScSAMConfig

    def make(k: int = 3, use_sam: bool = True, use_mae: bool = True, grid: tuple[int, int] = (8, 8), **more):
        return ScSAMConfig(class_names=[f"class{i + 1}" for i in range(k)], use_sam=use_sam, use_mae=use_mae,
                           sam_dim=SAM_DIM, mae_dim=MAE_DIM, embed_dim=SAM_DIM, grid=grid, **more)

    return make
