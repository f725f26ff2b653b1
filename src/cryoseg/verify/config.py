"""Settings of proposal verification; every default lives here."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class VerifyConfig:
    """How proposals are judged against the prompted particles.

    Attributes:
        angular_step: rotations of each exemplar, about this many degrees apart (30: 553 rotations).
        shift: the candidate's centre is searched this many voxels around its proposed place along each axis
            (a proposal's centre is rarely the particle's exact centre).
        lowpass: Gaussian sigma (voxels) applied before correlating: at the SNR of a tomogram, the noise of
            single voxels would otherwise dominate a correlation of two noisy subvolumes.
        mask_scale: the correlation sphere has radius mask_scale * r + 1, r the prompted instances'
            equivalent-sphere radius: beyond the particle, so its outline and the empty shell around it count
            (on a simulated 200x512x512 tomogram, ribosome prompt: AP 0.89 at 1.1, 0.92 at 1.3, 0.96 at 1.5).
        blob_proposals: besides feature matching, propose every blob at the prompted size (Laplacian of
            Gaussian): cheap, class-agnostic, and with verification ranking them, it lifts recall where the
            features miss copies.
        blob_threshold: robust z-score of the LoG response a blob proposal needs.
        blob_top_k: most blob proposals (the strongest): small radii on large tomograms give thousands of noise
            blobs (the simulated 128^3 and 200x512x512 tomograms gave at most 661 for their larger classes).
        refine_rounds: rounds of averaging each prompted particle with its best matches before scoring again
            (`cryoseg.verify.template`).
        refine_top: most candidates averaged in per round (only those above that round's cut; on the same
            tomogram 8 gave AP 0.92, 32 gave 0.96).
        negative_weight: how much a candidate's likeness to a negative exemplar, in excess of its likeness to
            the positive ones, lowers its score.
        cut: the score a pick needs (None: chosen from the scores, see `cryoseg.verify.cut`).
    """

    angular_step: float = 30.0
    shift: int = 1
    lowpass: float = 1.0
    mask_scale: float = 1.5
    blob_proposals: bool = True
    blob_threshold: float = 3.0
    blob_top_k: int = 2048
    refine_rounds: int = 1
    refine_top: int = 32
    negative_weight: float = 1.0
    cut: float | None = None

    def __post_init__(self) -> None:
        if not 5.0 <= self.angular_step <= 180.0:
            raise InputError(f"angular_step must lie in [5, 180] degrees, got {self.angular_step}")
        if not 0 <= self.shift <= 5:
            raise InputError(f"shift must be 0 to 5 voxels, got {self.shift}")
        if self.lowpass < 0 or self.mask_scale <= 0:
            raise InputError("lowpass must be >= 0 and mask_scale > 0")
        if self.blob_top_k < 1:
            raise InputError(f"blob_top_k must be at least 1, got {self.blob_top_k}")
        if self.refine_rounds < 0 or self.refine_top < 1:
            raise InputError("refine_rounds must be >= 0 and refine_top >= 1")
        if self.negative_weight < 0:
            raise InputError(f"negative_weight must be >= 0, got {self.negative_weight}")
        if self.cut is not None and not -1.0 <= self.cut <= 1.0:
            raise InputError(f"cut must lie in [-1, 1] (a correlation), got {self.cut}")
