"""Settings of the whole-tomogram pick; every default lives here (or in the nested configs). A light module: the CLI
quotes these defaults in its help."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ..geometry import VIEWS
from ..matching.config import MatchingConfig
from ..segment3d.config import SelfPromptConfig
from ..verify.config import VerifyConfig


@dataclass(frozen=True)
class PickConfig:
    """Settings of the whole-tomogram pick; every default lives here (or in the nested configs).

    Attributes:
        segment: 3D segmentation of prompts and proposals.
        matching: the feature search (tau_sim, top_k, levels, mode, ...).
        verify: how proposals are judged against the prompted particles, and the score cut.
        size_ratio: keep a proposal's instance only if its voxel count over the mean of the prompted
            instances lies in [low, high].
        proposal_batch: proposals segmented together (decoded in shared batched calls); a proposal is skipped
            when an instance of an earlier batch already holds it, and marked "duplicate" when one of its own
            batch does. Proposals are not negatives of each other (unlike the user's prompts), so the batch
            size changes the cost, not the result: two proposals on one elongated particle must not split it
            (on four simulated 128^3 tomograms, one prompt per class, mutual negatives never raised F1 and
            cut the dumbbell F1 from 0.36 to 0.25 on one by splitting dumbbells).
        proposal_reach: a proposal propagates at most this many times the prompted particles' largest extent
            per direction (None: no limit). An instance that grows further is far larger than the prompted ones;
            without the bound a backend that leaks along a proposal decodes slice after slice of the tomogram
            before the size filter throws the instance away (a compact-sam pick of one DeepFinder toy class took
            906 s so).
        min_prompt_voxels: a prompted instance smaller than this (after a leak is cut back) is refused: it is no
            particle to look for, and a query a voxel or two wide proposes nearly every voxel of the tomogram.
        feature_views: views whose per-slice features are concatenated for matching.
        slice_step: embed every n-th slice for the features (None: the extractor's stride).
        class_name: object name written to the coordinate files (copick object, STAR class 1).
    """

    segment: SelfPromptConfig = field(default_factory=SelfPromptConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    size_ratio: tuple[float, float] = (0.33, 3.0)
    proposal_batch: int = 64
    proposal_reach: float | None = 1.5
    min_prompt_voxels: int = 27
    feature_views: tuple[str, ...] = VIEWS
    slice_step: int | None = None
    class_name: str = "particle"

    def __post_init__(self) -> None:
        lo, hi = self.size_ratio
        if not 0 <= lo <= 1 <= hi:
            raise InputError(f"size_ratio must be (low, high) with 0 <= low <= 1 <= high, got {self.size_ratio}")
        if self.proposal_batch < 1:
            raise InputError(f"proposal_batch must be at least 1, got {self.proposal_batch}")
        if self.min_prompt_voxels < 1:
            raise InputError(f"min_prompt_voxels must be at least 1, got {self.min_prompt_voxels}")
        if self.proposal_reach is not None and not self.proposal_reach > 0:
            raise InputError(f"proposal_reach must be positive (None: no limit), got {self.proposal_reach}")
