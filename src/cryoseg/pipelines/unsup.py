"""The unsupervised method end to end: pseudo-labels from attention features on a few slabs
(`pseudo_labels`), a student network trained on them (`train_student`), whole tomograms segmented by the student
(`segment`), and all three in one call (`run`).

Folders written (each through `staged_folder`, so a folder without report.json is incomplete):
    pseudo-labels:  slabs/<tomogram>_z<start>-<stop>/{image,maps,labels}.mrc, particles.csv, preview.png; report.json
    student model:  model.safetensors, config.json, report.json (`cryoseg.train.folder`), curves.png
    segmentation:   labels.mrc (0 background, 1 membrane, 2 particle), particles.{star,csv,...}, optional
                    probability_<class>.mrc, preview.png, report.json
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, InputError
from ..io.particles import Particles
from ..io.report import REPORT, StageTimer, as_json, write_report
from ..io.volume import Volume
from ..train.config import TrainConfig
from ..unsup.labels import CLASS_NAMES, MEMBRANE, PARTICLE, LabelConfig, label_counts
from ..unsup.maps import MapConfig
from ..unsup.slabs import Slab
from ..unsup.student import StudentConfig

logger = logging.getLogger(__name__)

MODEL_KIND = "unsup-student"
SLABS_DIR = "slabs"
DEFAULT_FEATURES = "filterbank"  # weight-free: does real work on a fresh machine


class NoStructureError(InputError):
    """The pseudo-labels found no membrane and no particle in any slab."""


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Settings of the pseudo-labels.

    Attributes:
        features: the affinity source: "filterbank" (weight-free), "tiny-sd" (tiny random diffusion UNet, for
            tests) or "stable-diffusion-v1-4".
        weights: the diffusion model's weights (a diffusers pipeline folder or hub id); None looks in the hub cache.
        maps: canvas, spectral maps, aggregation and z-smoothing.
        labels: thresholding, region splitting and the particle/membrane rules.
        n_slabs: slabs chosen automatically when none are given.
        slab_thickness: slices per automatically chosen slab.
        seed: seed of the diffusion noise.
    """

    features: str = DEFAULT_FEATURES
    weights: str | None = None
    maps: MapConfig = field(default_factory=MapConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    n_slabs: int = 2
    slab_thickness: int = 10
    seed: int = 0


@dataclass(frozen=True)
class StudentTrainConfig:
    """Settings of the student's training.

    Attributes:
        student: the network and its window.
        train: optimizer, epochs, early stopping (`cryoseg.train.fit`).
        crops_per_epoch: random crops drawn per epoch (half of them centred on pseudo-labelled pixels).
        val_fraction: share of the pseudo-labelled slices held out to stop early on (their Dice against the
            pseudo-labels).
        augment: random 90° turns and flips of the crops.
    """

    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=8, lr=2e-3, patience=10))
    crops_per_epoch: int = 64
    val_fraction: float = 0.2
    augment: bool = True

    def __post_init__(self) -> None:
        if self.crops_per_epoch < 1:
            raise InputError(f"crops_per_epoch must be >= 1, got {self.crops_per_epoch}")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")


@dataclass
class SlabPseudoLabels:
    """One slab and its pseudo-labels.

    Attributes:
        slab: which tomogram (index into `PseudoLabels.tomograms`) and z range.
        image: (Z, H, W) float32 slices of the tomogram.
        maps: (Z, H, W) float32 structure maps in [0, 1], or None when loaded without them.
        labels: (Z, H, W) uint8: 0 background, 1 membrane, 2 particle.
        centres: (N, 3) particle centres, z, y, x in voxels of the whole tomogram.
    """

    slab: Slab
    image: np.ndarray
    maps: np.ndarray | None
    labels: np.ndarray
    centres: np.ndarray

    def counts(self) -> dict[str, int]:
        return label_counts(self.labels, len(self.centres))


@dataclass
class PseudoLabels:
    """Pseudo-labels of every slab.

    Attributes:
        slabs: one entry per slab.
        tomograms: the tomograms' names (file names without extension).
        sources: their files (None for arrays).
        voxel_size: Å per voxel (z, y, x) of the tomograms.
        chosen: "user" or "auto" (how the slabs were chosen).
        record: the features' signature, the settings and the timings, for the report.
    """

    slabs: list[SlabPseudoLabels]
    tomograms: list[str]
    sources: list[Path | None]
    voxel_size: tuple[float, float, float]
    chosen: str
    record: dict[str, Any] = field(default_factory=dict)

    def slab_name(self, item: SlabPseudoLabels) -> str:
        return f"{self.tomograms[item.slab.volume]}_z{item.slab.start}-{item.slab.stop}"

    def save(self, outdir: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
        """Write the slabs and report.json (last) into `outdir`; returns it."""
        from ..io.atomic import staged_folder
        from ..io.volumes import write_volume
        from ..viz import save_preview
        from .output import write_particle_files

        outdir = Path(outdir)
        inputs = [*inputs, *(s for s in self.sources if s is not None)]
        entries = []
        with staged_folder(outdir, REPORT, inputs) as stage:
            for item in self.slabs:
                name = self.slab_name(item)
                folder = stage / SLABS_DIR / name
                folder.mkdir(parents=True)
                origin = (item.slab.start * self.voxel_size[0], 0.0, 0.0)
                write_volume(Volume(item.image, self.voxel_size, origin), folder / "image.mrc")
                if item.maps is not None:
                    write_volume(Volume(item.maps, self.voxel_size, origin), folder / "maps.mrc")
                write_volume(Volume(item.labels, self.voxel_size, origin), folder / "labels.mrc")
                local = Particles(item.centres - [item.slab.start, 0, 0])
                write_particle_files(folder, local, self.voxel_size, item.labels.shape,
                                     tomo_name=name)  # slab-local coordinates: they index image.mrc
                save_preview(Volume(item.image, self.voxel_size), folder / "preview.png", labels=item.labels,
                             picks=local.coords, title=f"pseudo-labels {name}: 1 membrane, 2 particle")
                source = self.sources[item.slab.volume]
                entries.append({"folder": f"{SLABS_DIR}/{name}", "tomogram": self.tomograms[item.slab.volume],
                                "source": str(source) if source else None, "start": item.slab.start,
                                "stop": item.slab.stop, "score": item.slab.score, **item.counts()})
            write_report(stage / REPORT, kind="unsup-pseudo-labels", chosen=self.chosen, slabs=entries,
                         voxel_size=list(self.voxel_size), class_names=list(CLASS_NAMES), **self.record)
        return outdir

    @classmethod
    def load(cls, folder: str | Path) -> PseudoLabels:
        """Read a folder written by `save` (without the structure maps)."""
        from ..io.coords import read_particles
        from ..io.volumes import read_volume

        folder = Path(folder)
        report = folder / REPORT
        if not report.is_file():
            raise InputError(f"{folder} is not a pseudo-label folder (no {REPORT}; an interrupted run?)")
        try:
            meta = json.loads(report.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot read {report}: {exc}") from exc
        if meta.get("kind") != "unsup-pseudo-labels":
            raise InputError(f"{folder} holds {meta.get('kind')!r}, not pseudo-labels (`cryoseg unsup pseudo-labels`)")
        tomograms: list[str] = []
        sources: list[Path | None] = []
        slabs = []
        for entry in meta["slabs"]:
            if entry["tomogram"] not in tomograms:
                tomograms.append(entry["tomogram"])
                sources.append(Path(entry["source"]) if entry.get("source") else None)
            sub = folder / entry["folder"]
            image = np.asarray(read_volume(sub / "image.mrc").data, dtype=np.float32)
            labels = np.asarray(read_volume(sub / "labels.mrc").data, dtype=np.uint8)
            centres = read_particles(sub / "particles.csv").coords + [entry["start"], 0, 0]
            slab = Slab(tomograms.index(entry["tomogram"]), int(entry["start"]), int(entry["stop"]), entry.get("score"))
            slabs.append(SlabPseudoLabels(slab, image, None, labels, centres))
        record = {k: meta[k] for k in ("features", "settings") if k in meta}
        return cls(slabs, tomograms, sources, tuple(meta["voxel_size"]), meta.get("chosen", "user"), record)


def require_student_packages() -> None:
    """Raise `MissingDependencyError` in one line when torch or MONAI, which the student network needs, is not
    installed (checked before any work: the pseudo-labels alone need neither)."""
    from ..errors import MissingDependencyError
    from ..models.registry import MODELS_EXTRA_HINT, is_installed

    missing = [name for name in ("torch", "monai") if not is_installed(name)]
    if missing:
        raise MissingDependencyError(f"the student network needs {', '.join(missing)}, not installed: "
                                     f"{MODELS_EXTRA_HINT}")


def _voxel_nm(volumes: Sequence[Volume]) -> float:
    """The tomograms' common in-plane voxel size in nm; refuses a missing one and tomograms of other sizes."""
    sizes = [v.require_voxel_size() for v in volumes]
    first = sizes[0]
    for vol, size in zip(volumes[1:], sizes[1:]):
        if not np.allclose(size, first, rtol=0.02):
            raise InputError(f"the tomograms have different voxel sizes ({first} and {size} Å, {vol.source}); "
                             "give tomograms of one voxel size (bin them alike)")
    return float(first[1]) / 10.0


def _voxel_volume(volume: Volume) -> float:
    """One voxel's volume in nm³."""
    return float(np.prod(volume.voxel_size)) / 1000.0


def _names(volumes: Sequence[Volume]) -> list[str]:
    from .output import tomogram_name

    names = []
    for i, vol in enumerate(volumes):
        name = tomogram_name(vol.source) if vol.source else f"volume{i}"
        while name in names:
            name += f"_{i}"
        names.append(name)
    return names


def pseudo_labels(volumes: Sequence[Volume], slabs: Sequence[Slab] | None = None,
                  config: PseudoLabelConfig = PseudoLabelConfig(), device: Any = None) -> PseudoLabels:
    """Make membrane and particle pseudo-labels on a few slabs of the tomograms.

    Args:
        volumes: tomograms (Z, Y, X) with their voxel size.
        slabs: the z ranges to label (each naming its tomogram by index); None chooses `config.n_slabs` of
            `config.slab_thickness` slices by structure content (`cryoseg.unsup.slabs.choose_slabs`).
        config: see `PseudoLabelConfig`.
        device: where the diffusion model runs ("cpu", "cuda", ...); the weight-free features ignore it.

    Returns:
        `PseudoLabels`.

    Raises:
        InputError: a slab outside its volume or too thin; a tomogram without voxel size.
        NoStructureError: nothing was found in any slab.
        WeightsNotFoundError, MissingDependencyError: the diffusion model cannot be loaded (before any work).
    """
    from ..unsup.affinity import affinity_source
    from ..unsup.labels import label_slab
    from ..unsup.maps import slab_maps
    from ..unsup.slabs import check_slab, choose_slabs

    if not volumes:
        raise InputError("give at least one tomogram")
    names = _names(volumes)
    voxel_nm = _voxel_nm(volumes)
    chosen = "user" if slabs else "auto"
    if slabs:
        for slab in slabs:
            if not 0 <= slab.volume < len(volumes):
                raise InputError(f"slab {slab} names tomogram {slab.volume}; there are {len(volumes)}")
            check_slab(slab, volumes[slab.volume].shape, names[slab.volume])
    # the slabs given, or every tomogram when they are to be chosen (the choice reads them all anyway)
    regions = [(s.volume, slice(s.start, s.stop)) for s in slabs] if slabs else [
        (i, slice(None)) for i in range(len(volumes))]
    for index, z in regions:
        if not np.all(np.isfinite(volumes[index].data[z])):
            raise InputError(f"tomogram {names[index]} contains NaN or infinite values where the slabs are; read it "
                             "with nan_policy 'clean'")
    timer = StageTimer()
    with timer("load_features"):  # loads (and checks) the model before any slab is touched
        source = affinity_source(config.features, weights=config.weights, voxel_size_nm=voxel_nm, seed=config.seed,
                                 **({"device": device} if device is not None else {}))
    if not slabs:
        with timer("choose_slabs"):
            slabs = choose_slabs([v.data for v in volumes], config.n_slabs, config.slab_thickness)
        logger.debug("chose slabs %s by structure content", ", ".join(s.label(names) for s in slabs))
    items = []
    for slab in slabs:
        image = np.asarray(volumes[slab.volume].data[slab.start:slab.stop], dtype=np.float32)
        with timer("maps"):
            maps = slab_maps(image, source, config.maps, description=f"maps of {slab.label(names)}")
        with timer("labels"):
            labelled = label_slab(maps, image, voxel_nm, config.labels, _voxel_volume(volumes[slab.volume]))
        centres = labelled.centres + [slab.start, 0, 0]
        items.append(SlabPseudoLabels(slab, image, maps, labelled.labels, centres))
        logger.debug("slab %s: %s", slab.label(names), items[-1].counts())
    if not any(item.counts()["membrane_voxels"] or item.counts()["particle_voxels"] for item in items):
        raise NoStructureError(f"no membrane or particle found in the slabs {', '.join(s.label(names) for s in slabs)}"
                               "; choose slabs with visible structure, or check the voxel size and particle sizes")
    record = {"features": source.signature(), "settings": as_json(config), "seconds": timer.seconds}
    return PseudoLabels(items, names, [v.source for v in volumes], volumes[0].voxel_size, chosen, record)


@dataclass
class StudentTrainResult:
    """What `train_student` did.

    Attributes:
        model_dir: the model folder written.
        history: the training history (`cryoseg.train.History`).
        val_dice: mean Dice (membrane, particle) of the kept epoch on the held-out pseudo-labelled slices.
        seconds: wall-clock seconds per stage.
    """

    model_dir: Path
    history: Any
    val_dice: float
    seconds: dict[str, float]


def _mean_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    from ..eval import segmentation_scores

    return float(segmentation_scores(pred, truth, classes=[MEMBRANE, PARTICLE]).mean_dice)


def train_student(pseudo: PseudoLabels, outdir: str | Path, config: StudentTrainConfig = StudentTrainConfig(),
                  resume: bool = False, device: Any = None) -> StudentTrainResult:
    """Train the student U-Net on the pseudo-labels and save its model folder.

    Args:
        pseudo: pseudo-labels (`pseudo_labels` or `PseudoLabels.load`).
        outdir: the model folder to write (complete or not at all).
        config: see `StudentTrainConfig`.
        resume: continue an interrupted training of this `outdir` from its checkpoint.
        device: "cpu", "cuda", ... (None: the GPU when there is one).

    Returns:
        `StudentTrainResult`.
    """
    require_student_packages()
    import torch
    from monai.losses import DiceCELoss

    from ..models.device import resolve_device
    from ..train.augment import random_dihedral
    from ..train.curves import plot_curves
    from ..train.data import split
    from ..train.folder import save_model_folder
    from ..train.loop import fit
    from ..unsup.student import build_student, normalise_slices, predict_slices, random_crops

    outdir = Path(outdir)
    images = np.concatenate([normalise_slices(item.image) for item in pseudo.slabs])
    labels = np.concatenate([item.labels.astype(np.int64) for item in pseudo.slabs])
    if len(images) < 2:
        raise InputError(f"the student needs at least 2 pseudo-labelled slices (one to validate on), got {len(images)}")
    train_idx, val_idx = split(len(images), config.val_fraction, config.train.seed)
    dev = resolve_device(device)
    torch.manual_seed(config.train.seed)
    model = build_student(config.student).to(dev)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    cfg = config.train
    timer = StageTimer()

    def batches(epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([cfg.seed, epoch])
        x, y = random_crops(images[train_idx], labels[train_idx], config.crops_per_epoch, config.student.patch, rng)
        out = []
        for start in range(0, len(x), cfg.batch_size):
            bx, by = x[start:start + cfg.batch_size], y[start:start + cfg.batch_size]
            if config.augment:
                bx, by = random_dihedral(rng).apply_all(bx, by)
            out.append((np.ascontiguousarray(bx), np.ascontiguousarray(by)))
        return out

    def step(net: Any, batch: tuple[np.ndarray, np.ndarray]) -> tuple[Any, dict[str, float]]:
        x = torch.from_numpy(batch[0])[:, None].to(dev)
        y = torch.from_numpy(batch[1])[:, None].to(dev)
        return loss_fn(net(x), y), {}

    def validate(net: Any) -> float:
        prob = predict_slices(net, images[val_idx], config.student, description="validating")
        return _mean_dice(prob.argmax(axis=0), labels[val_idx])

    checkpoint = outdir.parent / f".{outdir.name}.training-checkpoint.pt"
    outdir.parent.mkdir(parents=True, exist_ok=True)
    with timer("train"):
        history = fit(model, batches, step, validate, cfg, checkpoint=checkpoint, resume=resume)
    meta = {"class_names": list(CLASS_NAMES), "history": history.to_dict(), "val_dice": history.best_value,
            "voxel_size": list(pseudo.voxel_size), "slices": {"train": len(train_idx), "val": len(val_idx)},
            "pseudo_labels": {"tomograms": pseudo.tomograms, "chosen": pseudo.chosen,
                              "slabs": [[pseudo.tomograms[s.slab.volume], s.slab.start, s.slab.stop]
                                        for s in pseudo.slabs], **pseudo.record},
            "settings": as_json(config), "seconds": timer.seconds}
    save_model_folder(outdir, model.state_dict(), {"student": config.student.to_dict()}, meta, kind=MODEL_KIND)
    plot_curves(history, outdir / "curves.png")
    checkpoint.unlink(missing_ok=True)
    logger.info("student trained: validation Dice %.3f against the pseudo-labels (best epoch %d); model in %s",
                history.best_value, history.best_epoch + 1, outdir)
    return StudentTrainResult(outdir, history, float(history.best_value), timer.seconds)


def load_student(model_dir: str | Path, device: Any = None) -> tuple[Any, StudentConfig, dict[str, Any]]:
    """The student network (eval mode), its config and its report from a model folder."""
    require_student_packages()
    import torch

    from ..models.device import resolve_device
    from ..train.folder import load_model_folder
    from ..unsup.student import build_student

    folder = load_model_folder(model_dir, MODEL_KIND)
    config = StudentConfig.from_dict(folder.config.get("student", {}))
    model = build_student(config)
    try:
        model.load_state_dict({k: torch.as_tensor(v) for k, v in folder.state_dict.items()})
    except RuntimeError as exc:
        raise InputError(f"{model_dir}: the weights do not fit the student network ({str(exc).splitlines()[0]})"
                         ) from None
    return model.to(resolve_device(device)).eval(), config, folder.meta


@dataclass
class UnsupSegmentation:
    """The student's segmentation of one tomogram.

    Attributes:
        labels: (Z, Y, X) uint8 `Volume`: 0 background, 1 membrane, 2 particle; the tomogram's voxel size kept.
        particles: particle centres (z, y, x voxels).
        probabilities: (3, Z, Y, X) float32 class probabilities, or None.
        seconds: wall-clock seconds per stage.
        record: the model and the settings used, for the report.
        volume: the segmented tomogram (for the preview; not copied).
    """

    labels: Volume
    particles: Particles
    probabilities: np.ndarray | None
    seconds: dict[str, float]
    record: dict[str, Any] = field(default_factory=dict)
    volume: Volume | None = field(default=None, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        return label_counts(self.labels.data, len(self.particles))

    def save(self, outdir: str | Path, inputs: Sequence[str | Path] = ()) -> dict[str, Path]:
        """Write labels.mrc, the particle files, probability maps (when kept), preview.png and report.json (last)
        into `outdir`; returns {name: path}."""
        from ..io.atomic import staged_folder
        from ..io.volumes import write_volume
        from ..viz import save_preview
        from .output import tomogram_name, write_particle_files, write_probabilities

        outdir = Path(outdir)
        source = self.volume.source if self.volume is not None else None
        inputs = [*inputs, *([source] if source else [])]
        vs = self.labels.voxel_size
        with staged_folder(outdir, REPORT, inputs) as stage:
            files = {"labels": write_volume(self.labels, stage / "labels.mrc", inputs=inputs)}
            files.update(write_particle_files(stage, self.particles, vs, self.labels.shape, inputs,
                                              tomogram_name(source) if source else None))
            if self.probabilities is not None:
                files.update(write_probabilities(stage, self.probabilities, CLASS_NAMES, self.labels, inputs))
            if self.volume is not None:
                files["preview"] = save_preview(self.volume, stage / "preview.png",  # through the centre
                                                labels=self.labels.data, picks=self.particles.coords,
                                                title=f"unsupervised: 1 membrane, 2 particle; "
                                                      f"{self.counts()['particles']} particle(s)")
            files["report"] = write_report(stage / REPORT, kind="unsup-segmentation", class_names=list(CLASS_NAMES),
                                           voxel_size=list(vs), **self.counts(), seconds=self.seconds,
                                           files={k: p.name for k, p in files.items()}, **self.record)
        return {k: outdir / p.name for k, p in files.items()}


def segment(model_dir: str | Path, volume: Volume, labels: LabelConfig = LabelConfig(), probabilities: bool = False,
            batch_size: int = 4, device: Any = None,
            loaded: tuple[Any, StudentConfig, dict[str, Any]] | None = None) -> UnsupSegmentation:
    """Segment a whole tomogram with a trained student, slice by slice along z.

    Args:
        model_dir: a folder written by `train_student`.
        volume: (Z, Y, X) tomogram with its voxel size (it should match the training tomograms' within ~20 %).
        labels: the particle size and merge rules for the particle centres.
        probabilities: keep the (3, Z, Y, X) probabilities in the result.
        batch_size: slices per forward pass.
        device: as for `train_student`.
        loaded: `load_student(model_dir, device)` done before (a process that segments many tomograms loads once).

    Returns:
        `UnsupSegmentation`.
    """
    from ..unsup.labels import drop_small_membranes, particle_centres
    from ..unsup.student import normalise_slices, predict_slices

    timer = StageTimer()
    voxel_nm = _voxel_nm([volume])
    with timer("load"):
        model, config, meta = loaded or load_student(model_dir, device)
    trained = meta.get("voxel_size")
    if trained and not np.allclose(trained[1], volume.voxel_size[1], rtol=0.2):
        logger.warning("the student was trained on %.3g Å voxels, this tomogram has %.3g Å: bin it alike for "
                       "reliable results", trained[1], volume.voxel_size[1])
    with timer("predict"):
        prob = predict_slices(model, normalise_slices(volume.data), config, batch_size)
    with timer("particles"):
        classes = drop_small_membranes(prob.argmax(axis=0).astype(np.uint8), _voxel_volume(volume), labels)
        centres = particle_centres(classes, voxel_nm, labels)
    record = {"model": str(model_dir), "labels": as_json(labels), "batch_size": batch_size}
    return UnsupSegmentation(Volume(classes, volume.voxel_size, volume.origin), Particles(centres),
                             prob if probabilities else None, timer.seconds, record, volume=volume)


@dataclass
class UnsupRun:
    """What `run` wrote.

    Attributes:
        pseudo: the pseudo-labels (also in `outdir/pseudo-labels`).
        training: the student's training (model in `outdir/model`).
        segmentations: one folder per tomogram under `outdir/segment`.
    """

    pseudo: PseudoLabels
    training: StudentTrainResult
    segmentations: list[Path]


def run(volumes: Sequence[Volume], outdir: str | Path, slabs: Sequence[Slab] | None = None,
        pseudo_config: PseudoLabelConfig = PseudoLabelConfig(),
        train_config: StudentTrainConfig = StudentTrainConfig(), device: Any = None) -> UnsupRun:
    """Pseudo-labels, student training and segmentation of every tomogram, into `outdir`/{pseudo-labels, model,
    segment/<tomogram>}."""
    require_student_packages()
    outdir = Path(outdir)
    inputs = [v.source for v in volumes if v.source]
    pseudo = pseudo_labels(volumes, slabs, pseudo_config, device)
    pseudo.save(outdir / "pseudo-labels", inputs)
    training = train_student(pseudo, outdir / "model", train_config, device=device)
    folders = []
    for name, volume in zip(pseudo.tomograms, volumes):
        result = segment(training.model_dir, volume, pseudo_config.labels, device=device)
        folders.append(outdir / "segment" / name)
        result.save(folders[-1], inputs)
    return UnsupRun(pseudo, training, folders)
