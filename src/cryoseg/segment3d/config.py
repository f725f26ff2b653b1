"""Settings of Cross-Plane Self-Prompting; every default lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..geometry import VIEWS, check_views
from ..polarity import check_polarity

POINT_STRATEGIES = ("distance", "centroid", "confidence")


@dataclass(frozen=True)
class SelfPromptConfig:
    """How a point prompt grows into a 3D instance mask.

    Attributes:
        tau_iou: stop propagating in a direction when the IoU of neighbouring slice masks drops below this.
        views: which orthogonal planes to start from; each propagates along its own axis in both directions.
        min_area: a 2D mask with fewer pixels counts as vanished.
        max_area_fraction: a 2D mask covering more of its slice than this counts as a leak into the
            background and stops the direction (the initial plane of a view is then dropped too).
        max_slices: most slices to propagate per direction (None: until a stop criterion or the volume edge).
        multimask_initial: ask for 3 candidate masks on each start plane (a single point is ambiguous).
        multimask_propagate: ask for 3 candidates while propagating and keep the one overlapping the previous
            slice's mask most (False: one mask, steered by the mask-logits prior).
        point_strategy: how the next slice's point is taken from the previous mask: "distance" (the peak of
            its distance transform, always inside), "centroid" (falls back to "distance" when outside) or
            "confidence" (the mask pixel with the highest logit, as the CryoSAM paper words it). On a simulated
            128^3 tomogram (seed 3, classical backend) the two gave the same one-prompt ribosome F1 and
            instance IoUs within 0.015 of each other; "distance" stays the default.
        negative_reach: a negative point is passed, as a label-0 point, to slices at most this many slices
            away from it along the propagation axis.
        others_as_negatives: on each slice, the prompt points of the other instances segmented together act
            as negative points (several prompts mean several instances).
        fill_holes: fill enclosed holes of the 3D mask.
        max_hole_fraction: only holes smaller than this fraction of the mask are filled, so the lumen of a
            vesicle prompted on its membrane stays empty.
        connectivity: 1 (faces), 2 (edges) or 3 (corners) for the connected component kept around the prompt.
        max_batch: most prompts decoded in one predict call (bounds decoder memory; None: no limit).
        embedding_memory_gb: most slice embeddings held in memory, in GB (least recently used are dropped and read
            back from the embedding cache, a temporary one without --cache-dir; None: no limit). A 200x512x512
            pick with the classical segmenter embeds about 1.2 GB; a 400x1024x1024 one could embed 10 GB.
        polarity: how density appears in the tomogram: "dark" (a raw reconstruction), "bright" (inverted for
            display) or "auto" (estimated from the volume, `cryoseg.polarity.estimate_polarity`). Read only for a
            segmenter trained on one polarity (its `polarity`, e.g. compact-sam's "dark"), which is then shown the
            slices negated when the two differ; other segmenters take either.
    """

    tau_iou: float = 0.5
    views: tuple[str, ...] = VIEWS
    min_area: int = 4
    max_area_fraction: float = 0.5
    max_slices: int | None = None
    multimask_initial: bool = True
    multimask_propagate: bool = False
    point_strategy: str = "distance"
    negative_reach: int = 2
    others_as_negatives: bool = True
    fill_holes: bool = True
    max_hole_fraction: float = 0.1
    connectivity: int = 1
    max_batch: int | None = 64
    embedding_memory_gb: float | None = 1.5
    polarity: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau_iou <= 1.0:
            raise InputError(f"tau_iou must lie in [0, 1], got {self.tau_iou}")
        check_views(self.views)
        if self.min_area < 1:
            raise InputError(f"min_area must be at least 1 pixel, got {self.min_area}")
        if not 0.0 < self.max_area_fraction <= 1.0:
            raise InputError(f"max_area_fraction must lie in (0, 1], got {self.max_area_fraction}")
        if self.max_slices is not None and self.max_slices < 1:
            raise InputError(f"max_slices must be at least 1 (None: no limit), got {self.max_slices}")
        if self.point_strategy not in POINT_STRATEGIES:
            raise InputError(f"point_strategy must be one of {POINT_STRATEGIES}, got {self.point_strategy!r}")
        if self.embedding_memory_gb is not None and not self.embedding_memory_gb > 0:
            raise InputError(f"embedding_memory_gb must be positive (None: no limit), got {self.embedding_memory_gb}")
        if self.negative_reach < 0:
            raise InputError(f"negative_reach must be >= 0, got {self.negative_reach}")
        if not 0.0 <= self.max_hole_fraction:
            raise InputError(f"max_hole_fraction must be >= 0, got {self.max_hole_fraction}")
        if self.connectivity not in (1, 2, 3):
            raise InputError(f"connectivity must be 1, 2 or 3, got {self.connectivity}")
        if self.max_batch is not None and self.max_batch < 1:
            raise InputError(f"max_batch must be >= 1 or None, got {self.max_batch}")
        check_polarity(self.polarity)
