"""Training cryoseg's compact promptable segmenter on the simulator (`cryoseg train segmenter`).

Every epoch simulates a few fresh tomograms (`cryoseg.train.scenes.scene_config`: random templates, SNR, defocus,
tilt range, membranes and filaments; seeds from the run's seed and the epoch, so a run is reproducible and resumable)
and draws prompted slices from them in every view (`cryoseg.train.prompted.prompted_samples`): half start prompts
(a point, sometimes negative points), half propagation steps (the neighbouring slice's mask, perturbed, as the
mask-logit prior and its deepest pixel as the point; the target is empty past the instance's end). The model
(`compact-sam`, SAM's architecture in a small config) is trained end to end through `CompactSamSegmenter`'s own
preprocessing (low-pass included), so what it learns is what it is fed at inference. Start prompts train SAM's three
candidate masks, each toward the instance; propagation steps its single mask. Loss: binary cross-entropy + Dice of
the mask logits at slice resolution, plus the squared error of the predicted IoU of every candidate. Validation, which
keeps the best epoch: the mean IoU of single-prompt 3D segmentations (cross-plane self-prompting, as the benchmark
measures) of particles in scenes of held-out seeds; the 2D IoU of single steps did not track it (of one run, an
epoch with 2D IoU 0.425 gave 0.51 3D instance IoU on a DeepFinder toy tomogram, the best 2D epoch, 0.449, 0.36).
The result is a transformers folder, loadable as `--segmenter compact-sam --weights FOLDER` (or shipped).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..train.prompted import PromptedBatch, prompted_samples
from ..train.scenes import VALIDATION_SEED, SceneTrainConfig

logger = logging.getLogger(__name__)

# magnitudes of the prior's logits, drawn per sample: the model's own low-resolution logits, which propagation hands
# over, reach about ±10-25
PRIOR_LOGITS = (4.0, 20.0)


@dataclass(frozen=True)
class CompactTrainConfig(SceneTrainConfig):
    """Settings of `train_segmenter` (the shared ones: `SceneTrainConfig`).

    Attributes:
        val_scenes: held-out tomograms for validation.
        val_prompts: particles prompted per validation tomogram, each segmented in 3D on its own.
    """

    epochs: int = 60  # about 30 s each on 2 CPU cores, validation included
    patience: int = 45
    # a constant rate left the single-prompt 3D IoU of consecutive epochs jumping between 0.01 and 0.45
    lr_schedule: str = "cosine"
    val_scenes: int = 1
    val_prompts: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("val_scenes", "val_prompts"):
            if getattr(self, name) < 1:
                raise InputError(f"CompactTrainConfig.{name} must be at least 1")


def _scene(seed: int, config: CompactTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) float32 tomogram and int instance labels of the scene of `seed`."""
    sim = config.scene(seed)
    return np.asarray(sim.tomogram.data, np.float32), np.asarray(sim.instances.data)


def _batches(config: CompactTrainConfig, epoch: int) -> list[PromptedBatch]:
    out = []
    for k in range(config.scenes):
        seed = config.training_seed(epoch, k)
        tomogram, instances = _scene(seed, config)
        rng = np.random.default_rng(seed)
        out += [prompted_samples(tomogram, instances, rng, config.batch_size, with_prior=bool(b % 2))
                for b in range(config.batches_per_scene)]
    return out


def prior_logits(priors: np.ndarray, geometry: Any, low_res: tuple[int, int], magnitudes: np.ndarray) -> np.ndarray:
    """(B, H, W) bool masks of the neighbouring slice -> (B, h, w) float32 logits over the model frame, laid out as
    the decoder's own low-resolution logits (the slice's resized content top-left, padding outside), ±magnitudes[b]
    inside and outside."""
    from scipy import ndimage

    (fh, fw), (rh, rw) = geometry.frame, geometry.resized
    h, w = round(rh * low_res[0] / fh), round(rw * low_res[1] / fw)
    out = np.empty((len(priors), *low_res), np.float32)
    for b, mask in enumerate(priors):
        out[b] = -magnitudes[b]
        zoom = (h / mask.shape[0], w / mask.shape[1])
        inside = ndimage.zoom(mask.astype(np.float32), zoom, order=1)[:h, :w]
        out[b, :inside.shape[0], :inside.shape[1]] = (2 * inside - 1) * magnitudes[b]
    return out


class _Trainer:
    """The step and validation of `fit` for one compact SAM."""

    def __init__(self, model: Any, image_side: int) -> None:
        from ..models.compact_sam import CompactSamSegmenter

        self.model = model
        self.wrapper = CompactSamSegmenter(model, "training")  # the preprocessing of inference, low-pass included
        self.geometry = self.wrapper.geometry((image_side, image_side))

    def forward(self, batch: PromptedBatch) -> tuple[Any, Any]:
        """(B, M, H, W) mask logits at slice resolution and (B, M) predicted IoU: M = 3 candidates for start
        prompts (as cross-plane self-prompting asks on a start plane), M = 1 for propagation steps."""
        import torch

        from ..models.preprocess import logits_to_image, to_sam_input

        geom = self.geometry
        pixels = self.wrapper.model_input(batch.images, geom, to_sam_input)
        device = pixels.device
        points = torch.as_tensor(geom.prompts_to_model(batch.points)[:, None], dtype=torch.float32, device=device)
        kwargs = {}
        if batch.priors is not None:
            magnitudes = torch.empty(len(batch.priors)).uniform_(*PRIOR_LOGITS).numpy()  # torch: seeded by `fit`
            kwargs["input_masks"] = torch.as_tensor(
                prior_logits(batch.priors, geom, self.wrapper.low_res, magnitudes)[:, None], device=device)
        out = self.model(pixel_values=pixels, input_points=points,
                         input_labels=torch.as_tensor(batch.labels, device=device)[:, None],
                         multimask_output=batch.priors is None, **kwargs)
        low = out.pred_masks[:, 0]  # (B, M, h, w)
        logits = logits_to_image(low.reshape(-1, *low.shape[-2:]), geom)
        return logits.reshape(*low.shape[:2], *logits.shape[-2:]), out.iou_scores[:, 0]

    def step(self, model: Any, batch: PromptedBatch) -> tuple[Any, dict[str, float]]:
        """Cross-entropy + Dice of every candidate against the instance, and the squared error of every
        candidate's predicted IoU. Every candidate is asked for the instance: a point at an instance's deepest
        pixel, as self-prompting places it, is not ambiguous, and training only the best candidate (SAM's rule)
        left the most confident one too large, which propagation then carried on."""
        import torch
        import torch.nn.functional as F

        logits, predicted_iou = self.forward(batch)
        target = torch.as_tensor(batch.targets, dtype=torch.float32, device=logits.device)[:, None].expand_as(logits)
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * target).sum((2, 3)) + 1) / (prob.sum((2, 3)) + target.sum((2, 3)) + 1)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((2, 3))
        iou = _iou(logits.detach() > 0, target > 0)
        loss = (bce + dice).mean() + F.mse_loss(predicted_iou, iou)
        chosen = iou.gather(1, predicted_iou.detach().argmax(dim=1, keepdim=True))
        return loss, {"iou": float(chosen.mean())}


def _validation_case(seed: int, config: CompactTrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A held-out scene: (Z, Y, X) tomogram, instance labels, and (P, 4) rows (z, y, x, instance id) of
    `config.val_prompts` particles drawn at random, prompted at their centres."""
    sim = config.scene(seed)
    particles = sim.particles
    chosen = np.random.default_rng(seed).choice(len(particles), min(config.val_prompts, len(particles)),
                                                replace=False)
    rows = np.column_stack([particles.coords[chosen], particles.instance_ids[chosen]])
    return np.asarray(sim.tomogram.data, np.float32), np.asarray(sim.instances.data), rows


def validation_iou(segmenter: Any, tomogram: np.ndarray, instances: np.ndarray, prompts: np.ndarray) -> float:
    """The mean IoU of single-prompt 3D segmentations of particles (`cryoseg.eval.prompted.single_prompt_ious`,
    default settings, dark density as the simulator makes it) against their true instances: what the benchmark
    measures, and what a 2D score does not track closely.

    Args:
        segmenter: a `PromptableSegmenter`.
        tomogram: (Z, Y, X) float32; instances: (Z, Y, X) instance labels.
        prompts: (P, 4) rows of z, y, x (a particle's centre) and its instance id.
    """
    from ..eval.prompted import single_prompt_ious
    from ..segment3d import SelfPromptConfig

    cases = ((row[:3], instances == int(row[3])) for row in prompts)
    config = SelfPromptConfig(polarity="dark")  # the simulator's density: nothing to estimate, nothing negated
    return float(np.mean(single_prompt_ious(segmenter, tomogram, cases, config)))


def _iou(pred: Any, truth: Any) -> Any:
    """IoU over the last two axes of boolean tensors; 1 where both are empty (a propagation step that stops)."""
    import torch

    inter = (pred & truth).sum((-2, -1)).float()
    union = (pred | truth).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def train_segmenter(outdir: str | Path, config: CompactTrainConfig = CompactTrainConfig(),
                    resume: bool = False) -> dict[str, Any]:
    """Train compact-sam on simulated tomograms; write OUT/model (transformers folder), OUT/curves.png and
    OUT/checkpoint.pt (for `resume`). Returns the training record (also in OUT/model/training.json)."""
    import json

    from ..io.atomic import atomic_path
    from ..models.compact import compact_sam_config
    from ..models.device import resolve_device
    from ..models.tiny import build_from_config
    from ..train import fit, plot_curves

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model = build_from_config("SamModel", compact_sam_config(), seed=config.seed).to(resolve_device(config.device))
    trainer = _Trainer(model, config.shape[0])
    validation = [_validation_case(VALIDATION_SEED + config.seed + k, config) for k in range(config.val_scenes)]

    def validate(net: Any) -> float:
        return float(np.mean([validation_iou(trainer.wrapper, *case) for case in validation]))

    history = fit(model, lambda epoch: _batches(config, epoch), trainer.step, validate, config.fit_settings(),
                  checkpoint=outdir / "checkpoint.pt", resume=resume)
    plot_curves(history, outdir / "curves.png")
    record = {"model": "compact-sam", "config": asdict(config), "history": history.to_dict(),
              "validation_iou": max(history.val_metric) if history.val_metric else None}
    with atomic_path(outdir / "model", is_dir=True) as tmp:
        model.cpu().save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps(record, indent=2, default=str))
    return record
