"""ScSAM end to end: train the light modules on the frozen encoders' outputs for labelled slices, then segment every
slice of new volumes into the classes, with no prompt.

Training embeds every slice once (the embedding cache), so an epoch runs only the head: FAFM, the class prompt
encoder and SAM's mask decoder. The loss is taken at the slices' own pixels: the head's low-resolution logits are
mapped back exactly as SAM's masks are (`FrozenEncoders.to_slice`).

Augmentation (our choice): the 8 dihedral transforms (90° turns and flips) of each batch act on the cached
embeddings and the labels together. They commute with the encoders only where the slice fills SAM's square input
frame (no padding), so they are used for square slices only; other shapes train without augmentation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.report import REPORT, as_json, write_report
from ..io.volume import Volume
from ..scsam.encoders import EncoderChoice, FrozenEncoders
from ..train.config import TrainConfig

logger = logging.getLogger(__name__)

MODEL_KIND = "scsam"
PREDICT_BATCH = 8  # slices through the head at once when predicting


@dataclass(frozen=True)
class ScSAMTrainConfig:
    """How to train an ScSAM model; every default lives here.

    Attributes:
        class_names: the foreground classes, label k (1..K) is class_names[k - 1]; 0 is background.
        encoders: the frozen SAM and MAE.
        use_sam, use_mae: the fused model (both), or an ablation with one encoder.
        train: the optimizer, epochs and early stopping.
        val_fraction: share of the slices held out to choose the best epoch (by validation mIoU).
        augment: dihedral augmentation of square slices (see the module docstring).
        axis: the view the training slices are cut along ("z": volume[i]).
    """

    class_names: tuple[str, ...]
    encoders: EncoderChoice = field(default_factory=EncoderChoice)
    use_sam: bool = True
    use_mae: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    val_fraction: float = 0.2
    augment: bool = True
    axis: str = "z"

    def __post_init__(self) -> None:
        from ..scsam.config import ScSAMConfig

        object.__setattr__(self, "class_names", tuple(self.class_names))
        if not self.use_sam and not self.use_mae:
            raise InputError("ScSAM needs at least one encoder: use_sam or use_mae")
        ScSAMConfig(self.class_names, use_sam=self.use_sam, use_mae=self.use_mae)  # names checked before any work
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")


@dataclass
class ScSAMTrainResult:
    """A trained ScSAM model.

    Attributes:
        model_dir: its folder (weights, config, report.json with the history, curves.png).
        history: the training history (per-epoch loss, validation mIoU, best epoch).
        val_miou: validation mIoU of the kept (best) epoch.
        class_pixels: (K + 1,) training pixels of background and each class.
        seconds: wall-clock seconds per stage ("embed", "train").
    """

    model_dir: Path
    history: Any
    val_miou: float
    class_pixels: np.ndarray
    seconds: dict[str, float]


def _scsam_config(settings: ScSAMTrainConfig, encoders: FrozenEncoders, embeddings: Any) -> Any:
    from ..scsam.config import ScSAMConfig

    sam_model = encoders.sam_model
    vision = sam_model.config.vision_config
    grid = (vision.image_size // vision.patch_size,) * 2
    return ScSAMConfig(class_names=settings.class_names, use_sam=settings.use_sam, use_mae=settings.use_mae,
                       sam_dim=int(vision.output_channels),
                       mae_dim=int(embeddings.mae.shape[1]) if embeddings.mae is not None else 768,
                       embed_dim=int(sam_model.mask_decoder.hidden_size), grid=grid)


def miou(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    """Mean IoU over the classes 1..n_classes present in `truth` or `pred` ((N, H, W) int labels)."""
    from ..eval import segmentation_scores

    return float(segmentation_scores(pred, truth, classes=list(range(1, n_classes + 1))).mean_iou)


def train(images: Sequence[np.ndarray | Volume], labels: Sequence[np.ndarray | Volume], outdir: str | Path,
          settings: ScSAMTrainConfig, device: Any = None, cache_dir: str | Path | None = None,
          resume: bool = False) -> ScSAMTrainResult:
    """Train ScSAM's light modules on labelled slices and save the model folder.

    Args:
        images: volumes or stacks (Z, Y, X) (arrays or `Volume`s).
        labels: one label volume per image, same shape, values 0 (background) .. K.
        outdir: the model folder to write (complete or not at all).
        settings: classes, encoders, ablation, training settings.
        device: "cpu", "cuda", ... for the encoders and the head (None: automatic).
        cache_dir: embedding cache folder (a second training on the same slices embeds nothing).
        resume: continue an interrupted training of this `outdir` from its checkpoint.

    Returns:
        `ScSAMTrainResult`.

    Raises:
        InputError: label maps of another shape than their image, labels outside 0..K, no slices.
    """
    import torch

    from ..scsam.loss import scsam_loss
    from ..scsam.model import build_head
    from ..train.curves import plot_curves
    from ..train.data import batch_indices, check_labels, slices_from_volumes, split
    from ..train.folder import save_model_folder
    from ..train.loop import fit

    outdir = Path(outdir)
    seconds: dict[str, float] = {}
    slices = slices_from_volumes(images, labels, axis=settings.axis)
    k = len(settings.class_names)
    pixels = check_labels(slices.labels, k)
    for name, count in zip(settings.class_names, pixels[1:]):
        if count == 0:
            logger.warning("class '%s' has no pixels in the training labels: the model cannot learn it", name)
    if len(slices) < 2:
        raise InputError(f"ScSAM needs at least 2 labelled slices (one to validate on), got {len(slices)}")
    train_idx, val_idx = split(len(slices), settings.val_fraction, settings.train.seed)

    start = time.perf_counter()
    encoders = FrozenEncoders(settings.encoders, device=device, cache_dir=cache_dir)
    emb = encoders.embed(slices.images, use_sam=settings.use_sam, use_mae=settings.use_mae)
    seconds["embed"] = time.perf_counter() - start
    config = _scsam_config(settings, encoders, emb)
    torch.manual_seed(settings.train.seed)  # the head's initial weights too follow the seed: a run is repeatable
    head = build_head(config, encoders.sam_model)
    dev = next(head.parameters()).device
    labels_t = torch.from_numpy(slices.labels)
    shape = emb.image_shape
    square = shape[0] == shape[1]
    if settings.augment and not square:
        logger.info("slices of %s pixels are not square: training without dihedral augmentation", shape)

    def inputs(idx: np.ndarray) -> tuple[Any, Any]:
        sam = emb.sam[idx].to(dev) if emb.sam is not None else None
        mae = emb.mae[idx].to(dev) if emb.mae is not None else None
        return sam, mae

    def batches(epoch: int) -> list[tuple[np.ndarray, int]]:
        rng = np.random.default_rng([settings.train.seed, epoch, 1])
        return [(train_idx[b], int(rng.integers(8))) for b in
                batch_indices(len(train_idx), settings.train.batch_size, settings.train.seed, epoch)]

    def step(model: Any, batch: tuple[np.ndarray, int]) -> tuple[Any, dict[str, float]]:
        from ..train.augment import all_dihedral

        idx, which = batch
        sam, mae = inputs(idx)
        truth = labels_t[idx].to(dev)
        if settings.augment and square:
            turn = all_dihedral()[which]
            sam, mae, truth = (turn.apply(x) if x is not None else None for x in (sam, mae, truth))
        out = model(sam, mae)
        out = dataclasses.replace(out, logits=encoders.to_slice(out.logits, shape))
        return scsam_loss(out, truth, config)

    def predict_labels(model: Any, idx: np.ndarray) -> np.ndarray:
        parts = []
        with torch.no_grad():
            for start_i in range(0, len(idx), PREDICT_BATCH):
                out = model(*inputs(idx[start_i:start_i + PREDICT_BATCH]))
                parts.append(encoders.to_slice(out.logits, shape).argmax(dim=1).cpu().numpy())
        return np.concatenate(parts)

    def validate(model: Any) -> float:
        return miou(predict_labels(model, val_idx), slices.labels[val_idx], k)

    checkpoint = outdir.parent / f".{outdir.name}.training-checkpoint.pt"
    outdir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    history = fit(head, batches, step, validate, settings.train, checkpoint=checkpoint, resume=resume)
    seconds["train"] = time.perf_counter() - start
    val = history.best_value  # the kept epoch's validation mIoU (its state is the one restored)
    meta = {"class_names": list(settings.class_names), "encoders": encoders.signature(),
            "history": history.to_dict(), "val_miou": val, "class_pixels": pixels.tolist(),
            "slices": {"train": len(train_idx), "val": len(val_idx), "shape": list(shape)},
            "augment": bool(settings.augment and square), "seconds": seconds}
    save_model_folder(outdir, head.state_dict(),
                      {"scsam": config.to_dict(), "encoders": settings.encoders.to_dict()}, meta, kind=MODEL_KIND)
    plot_curves(history, outdir / "curves.png")
    checkpoint.unlink(missing_ok=True)
    logger.info("ScSAM trained: validation mIoU %.3f (best epoch %d); model in %s", val, history.best_epoch + 1,
                outdir)
    return ScSAMTrainResult(outdir, history, val, pixels, seconds)


@dataclass
class ScSAMPrediction:
    """ScSAM's segmentation of one volume.

    Attributes:
        labels: (Z, Y, X) label volume (0 background, k = class k), the input's voxel size kept.
        probabilities: (K + 1, Z, Y, X) float32 class probabilities (averaged over the views used), or None.
        class_names: the K foreground classes.
        views: the views whose slice-wise predictions were fused.
        seconds: wall-clock seconds per stage.
        volume: the segmented volume (for previews; not copied).
    """

    labels: Volume
    probabilities: np.ndarray | None
    class_names: tuple[str, ...]
    views: tuple[str, ...]
    seconds: dict[str, float]
    volume: Volume | None = field(default=None, repr=False, compare=False)

    def save(self, outdir: str | Path, inputs: Sequence[str | Path] = ()) -> dict[str, Path]:
        """Write labels.mrc, probabilities_<class>.mrc (when kept), preview.png and report.json (last) into
        `outdir`; returns {name: path}."""
        from ..io.atomic import staged_folder
        from ..io.volumes import write_volume
        from ..viz import save_preview
        from .output import write_probabilities

        outdir = Path(outdir)
        inputs = [*inputs, *([self.volume.source] if self.volume is not None and self.volume.source else [])]
        with staged_folder(outdir, REPORT, inputs) as stage:
            files = {"labels": write_volume(self.labels, stage / "labels.mrc", inputs=inputs)}
            if self.probabilities is not None:
                files.update(write_probabilities(stage, self.probabilities, self.class_names, self.labels, inputs))
            if self.volume is not None:
                files["preview"] = save_preview(self.volume, stage / "preview.png", labels=self.labels.data,
                                                title=f"ScSAM: {', '.join(self.class_names)}")
            counts = {name: int(np.count_nonzero(self.labels.data == k))
                      for k, name in enumerate(self.class_names, 1)}
            files["report"] = write_report(stage / REPORT, kind="scsam-prediction", class_names=self.class_names,
                                           views=self.views, voxels_per_class=counts, seconds=self.seconds,
                                           files={k: p.name for k, p in files.items()})
        return {k: outdir / p.name for k, p in files.items()}


def load_model(model_dir: str | Path, device: Any = None, cache_dir: str | Path | None = None
               ) -> tuple[Any, Any, FrozenEncoders]:
    """The head, its config and its encoders from a model folder; refuses encoders other than those it was
    trained with (another architecture or other weights)."""
    import torch

    from ..scsam.config import ScSAMConfig
    from ..scsam.model import build_head
    from ..train.folder import load_model_folder

    folder = load_model_folder(model_dir, MODEL_KIND)
    try:
        config = ScSAMConfig.from_dict(folder.config["scsam"])
        choice = EncoderChoice(**folder.config["encoders"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"{model_dir}: not an ScSAM model configuration ({exc})") from None
    encoders = FrozenEncoders(choice, device=device, cache_dir=cache_dir)
    saved = folder.meta.get("encoders")
    if saved is not None and saved != as_json(encoders.signature()):
        raise InputError(f"{model_dir}: the encoders found now ({choice.sam}, {choice.mae}) are not those the model "
                         "was trained with (other weights or preprocessing); give the same weights")
    head = build_head(config, encoders.sam_model)
    missing, unexpected = head.load_state_dict({k: torch.as_tensor(v) for k, v in folder.state_dict.items()},
                                               strict=False)
    if missing or unexpected:
        raise InputError(f"{model_dir}: weights do not fit the model ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys)")
    return head.eval(), config, encoders


def predict(model_dir: str | Path, volume: Volume | np.ndarray, views: Sequence[str] = ("z",),
            probabilities: bool = False, device: Any = None, cache_dir: str | Path | None = None,
            loaded: tuple[Any, Any, FrozenEncoders] | None = None) -> ScSAMPrediction:
    """Segment every slice of `volume` into the model's classes.

    Args:
        model_dir: a folder written by `train`.
        volume: (Z, Y, X) `Volume` or array.
        views: the views to segment slice by slice; with several, their class probabilities are averaged.
        probabilities: keep the (K + 1, Z, Y, X) probabilities in the result.
        device, cache_dir: as for `train`.
        loaded: `load_model(model_dir, ...)` done before (a process that predicts many volumes loads once).

    Returns:
        `ScSAMPrediction`.
    """
    import torch

    from ..geometry import AXIS, check_views

    views = check_views(views)
    vol = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
    start = time.perf_counter()
    head, config, encoders = loaded or load_model(model_dir, device=device, cache_dir=cache_dir)
    seconds = {"load": time.perf_counter() - start}
    total = None
    for view in views:
        start = time.perf_counter()
        stack = np.moveaxis(np.asarray(vol.data, dtype=np.float32), AXIS[view], 0)
        emb = encoders.embed(stack, use_sam=config.use_sam, use_mae=config.use_mae)
        seconds[f"embed_{view}"] = time.perf_counter() - start
        start = time.perf_counter()
        parts = []
        with torch.no_grad():
            for i in range(0, len(stack), PREDICT_BATCH):
                sam = emb.sam[i:i + PREDICT_BATCH] if emb.sam is not None else None
                mae = emb.mae[i:i + PREDICT_BATCH] if emb.mae is not None else None
                logits = encoders.to_slice(head(sam, mae).logits, emb.image_shape)
                parts.append(torch.softmax(logits, dim=1).cpu().numpy())
        prob = np.moveaxis(np.concatenate(parts), 0, AXIS[view] + 1)  # (K+1, Z, Y, X)
        total = prob if total is None else total + prob
        seconds[f"head_{view}"] = time.perf_counter() - start
    prob = (total / len(views)).astype(np.float32)
    labels = prob.argmax(axis=0).astype(np.uint8 if config.num_classes < 255 else np.int16)
    return ScSAMPrediction(Volume(labels, vol.voxel_size, vol.origin), prob if probabilities else None,
                           tuple(config.class_names), views, seconds, volume=vol)
