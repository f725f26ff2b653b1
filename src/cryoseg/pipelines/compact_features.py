"""Training cryoseg's compact feature extractor on the simulator (`cryoseg train features`).

Metric learning in the manner of TomoTwin, but dense: every epoch simulates fresh tomograms
(`cryoseg.train.scenes.scene_config`, seeds from the run's seed and the epoch) and takes whole slices in every
view; each feature cell is labelled by the simulator's class under its centre (a template's name, "membrane",
"filament" or background), and a supervised contrastive loss pulls cells of one class together across slices, views
and tomograms and pushes other classes (and the background) away. Kinds of one size but another shape are
different classes, which is what picking needs to tell apart.
Real unlabelled slices (`real`: e.g. the ISBI EM images) add a self-supervised term: a slice and a noisier, flipped
and turned copy must give each cell the same vector and others different ones (InfoNCE), so the features hold on
real contrast too.
Validation: mean average precision of retrieving a class's cells in one held-out tomogram by the class's mean
vector in another, as picking retrieves particles like the prompted one.
The result is a folder loadable as `--features compact-features --feature-weights FOLDER` (or shipped).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import VIEWS, view_length, view_slice
from ..models.compact_features import CompactFeaturesConfig
from ..train.scenes import VALIDATION_SEED, SceneTrainConfig

logger = logging.getLogger(__name__)

TEMPERATURE = 0.1
CELLS_PER_BATCH = 1024  # cells drawn per batch for the contrastive loss (all pairs among them are compared)


@dataclass(frozen=True)
class FeatureTrainConfig(SceneTrainConfig):
    """Settings of `train_features` (the shared ones: `SceneTrainConfig`; batch_size counts slices).

    Attributes:
        real: image files (MRC, TIFF; 2D stacks or volumes) of real unlabelled slices for the self-supervised term.
        real_weight: weight of that term.
    """

    batches_per_scene: int = 6
    real: tuple[str, ...] = ()
    real_weight: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.real_weight < 0:
            raise InputError("FeatureTrainConfig.real_weight must be >= 0")


@dataclass(frozen=True)
class FeatureBatch:
    """Slices of one shape with a class name id per pixel.

    Attributes:
        images: (B, H, W) float32 normalised slices.
        classes: (B, H, W) int64 class ids, equal ids for equal class names across the run (0 background).
        real: (R, H, W) float32 normalised real slices for the self-supervised term (R may be 0).
    """

    images: np.ndarray
    classes: np.ndarray
    real: np.ndarray


class ClassIds:
    """Class names -> stable ids for a run (0 is the background)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"background": 0}

    def map(self, labels: np.ndarray, names: dict[int, str]) -> np.ndarray:
        """(…) label ids of one simulation -> the run's class ids, by name."""
        lookup = np.zeros(max(names) + 1, np.int64)
        for label, name in names.items():
            lookup[label] = self.ids.setdefault(name, len(self.ids))
        return lookup[labels]


def _slices(volume: np.ndarray, labels: np.ndarray, rng: np.random.Generator, count: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """`count` random slices of any view holding some foreground, with their labels."""
    images, classes = [], []
    while len(images) < count:
        view = VIEWS[int(rng.integers(3))]
        index = int(rng.integers(view_length(volume.shape, view)))
        lab = view_slice(labels, view, index)
        if (lab > 0).mean() < 0.005 and rng.random() < 0.9:
            continue
        images.append(view_slice(volume, view, index))
        classes.append(lab)
    return np.stack(images), np.stack(classes)


def read_real_slices(paths: tuple[str, ...], side: int) -> list[np.ndarray]:
    """Every slice (along the first axis) of the given images, each normalised; refused when smaller than `side`.

    Returns:
        one (N_i, H_i, W_i) float32 stack per file.
    """
    from ..io.volumes import read_volume
    from ..models.filterbank import robust_normalize

    out = []
    for path in paths:
        data = np.asarray(read_volume(path).data, np.float32)
        data = data[None] if data.ndim == 2 else data
        if min(data.shape[1:]) < side:
            raise InputError(f"{path}: slices of {data.shape[1]}x{data.shape[2]} are smaller than the {side}-pixel "
                             "training slices")
        out.append(robust_normalize(data))
    return out


def random_crops(stacks: list[np.ndarray], count: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """(count, side, side) crops at random places of random slices of `stacks`."""
    out = np.empty((count, side, side), np.float32)
    for i in range(count):
        stack = stacks[int(rng.integers(len(stacks)))]
        k = int(rng.integers(len(stack)))
        y, x = (int(rng.integers(n - side + 1)) for n in stack.shape[1:])
        out[i] = stack[k, y:y + side, x:x + side]
    return out


def supervised_contrastive(cells: Any, classes: Any) -> Any:
    """SupCon loss over `CELLS_PER_BATCH` cells drawn half from the foreground (as far as there is some).

    Args:
        cells: (N, D) unit vectors.
        classes: (N,) class ids.
    Draws with torch's global generator (`fit` seeds it every epoch).
    """
    import torch

    fg = torch.nonzero(classes > 0)[:, 0]
    bg = torch.nonzero(classes == 0)[:, 0]
    take_fg = fg[torch.randperm(len(fg), device=cells.device)[:CELLS_PER_BATCH // 2]]
    take_bg = bg[torch.randperm(len(bg), device=cells.device)[:CELLS_PER_BATCH - len(take_fg)]]
    index = torch.cat([take_fg, take_bg])
    z, y = cells[index], classes[index]
    logits = z @ z.T / TEMPERATURE
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (y[:, None] == y[None]) & ~self_mask
    has = positive.any(dim=1)
    return -((log_prob * positive).sum(1)[has] / positive.sum(1)[has]).mean()


def _augment(images: Any) -> tuple[Any, int, bool]:
    """A noisier, turned and flipped copy: (images', k quarter turns, flipped)."""
    import torch

    k = int(torch.randint(4, (1,)))
    flip = bool(torch.randint(2, (1,)))
    out = torch.rot90(images + 0.5 * torch.randn(images.shape, device=images.device), k, dims=(-2, -1))
    return (torch.flip(out, dims=(-1,)) if flip else out), k, flip


def view_consistency(a: Any, b: Any, k: int, flip: bool) -> Any:
    """InfoNCE between each cell of a slice and the same cell of its augmented copy.

    Args:
        a: (R, D, h, w) cell vectors of the real slices; b: those of their copies made by `_augment` with (k, flip).
    """
    import torch
    import torch.nn.functional as F

    b = torch.flip(b, dims=(-1,)) if flip else b
    b = torch.rot90(b, -k, dims=(-2, -1))  # back onto a's grid (the crops are square)
    za = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
    zb = b.permute(0, 2, 3, 1).reshape(-1, b.shape[1])
    take = torch.randperm(len(za), device=za.device)[:CELLS_PER_BATCH // 2]
    logits = za[take] @ zb[take].T / TEMPERATURE
    return F.cross_entropy(logits, torch.arange(len(take), device=logits.device))


def cell_classes(classes: np.ndarray, stride: int) -> np.ndarray:
    """(B, H, W) pixel classes -> (B, ceil(H / s), ceil(W / s)) the class under each cell's centre pixel."""
    H, W = classes.shape[1:]
    rows = np.minimum(np.arange(0, H, stride) + stride // 2, H - 1)
    cols = np.minimum(np.arange(0, W, stride) + stride // 2, W - 1)
    return classes[:, rows][:, :, cols]


def retrieval_map(query: np.ndarray, query_classes: np.ndarray, target: np.ndarray, target_classes: np.ndarray
                  ) -> float:
    """Mean over foreground classes present in both of the average precision of ranking `target`'s cells by
    cosine to the mean vector of the class's cells in `query`.

    Args:
        query, target: (N, D) unit vectors of cells; query_classes, target_classes: (N,) their class ids.
    """
    scores = []
    for c in np.intersect1d(np.unique(query_classes[query_classes > 0]), np.unique(target_classes)):
        prototype = query[query_classes == c].mean(0)
        order = np.argsort(-(target @ prototype))
        hits = target_classes[order] == c
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        scores.append(float(precision[hits].mean()))
    return float(np.mean(scores)) if scores else 0.0


def feature_loss(network: Any, batch: FeatureBatch, net_config: CompactFeaturesConfig, real_weight: float
                 ) -> tuple[Any, dict[str, float]]:
    """The training loss of one batch: supervised contrastive over its cells, plus `real_weight` times the
    augmentation-consistency term on its real slices (when it has some)."""
    import torch

    from ..models.compact_features import cell_embeddings

    device = next(network.parameters()).device
    images = torch.from_numpy(batch.images).to(device)
    n, r = len(images), len(batch.real)
    if r:  # one pass for simulated, real and augmented slices (all of one side): one set of batch-norm statistics
        real = torch.from_numpy(batch.real).to(device)
        augmented, k, flip = _augment(real)
        images = torch.cat([images, real, augmented])
    cells = cell_embeddings(network, images, net_config)
    classes = torch.from_numpy(cell_classes(batch.classes, net_config.stride)).to(device)
    simulated = cells[:n]
    loss = supervised_contrastive(simulated.permute(0, 2, 3, 1).reshape(-1, cells.shape[1]), classes.reshape(-1))
    metrics = {"supcon": float(loss.detach())}
    if r:
        consistency = view_consistency(cells[n:n + r], cells[n + r:], k, flip)
        loss = loss + real_weight * consistency
        metrics["real"] = float(consistency.detach())
    return loss, metrics


class _Run:
    """Batches, step and validation of one `train_features` run."""

    def __init__(self, config: FeatureTrainConfig, net_config: CompactFeaturesConfig) -> None:
        self.config = config
        self.net_config = net_config
        self.names = ClassIds()
        self.real = read_real_slices(config.real, config.shape[1])
        self.validation = [self._scene_slices(VALIDATION_SEED + config.seed + k, 16) for k in range(2)]

    def _scene_slices(self, seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        from ..models.filterbank import robust_normalize

        sim = self.config.scene(seed)
        classes = self.names.map(np.asarray(sim.labels.data), sim.label_names)
        images, labels = _slices(np.asarray(sim.tomogram.data, np.float32), classes, np.random.default_rng(seed),
                                 count)
        return robust_normalize(images), labels

    def batches(self, epoch: int) -> list[FeatureBatch]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch])
        out = []
        for k in range(cfg.scenes):
            images, classes = self._scene_slices(cfg.training_seed(epoch, k),
                                                cfg.batches_per_scene * cfg.batch_size)
            for b in range(cfg.batches_per_scene):
                part = slice(b * cfg.batch_size, (b + 1) * cfg.batch_size)
                real = (random_crops(self.real, cfg.batch_size // 2, cfg.shape[1], rng) if self.real
                        else np.zeros((0, *cfg.shape[1:]), np.float32))
                out.append(FeatureBatch(images[part], classes[part], real))
        return out

    def step(self, network: Any, batch: FeatureBatch) -> tuple[Any, dict[str, float]]:
        return feature_loss(network, batch, self.net_config, self.config.real_weight)

    def validate(self, network: Any) -> float:
        import torch

        from ..models.compact_features import cell_embeddings

        flat = []
        with torch.no_grad():
            for images, classes in self.validation:
                device = next(network.parameters()).device
                cells = cell_embeddings(network, torch.from_numpy(images).to(device), self.net_config)
                flat.append((cells.permute(0, 2, 3, 1).reshape(-1, cells.shape[1]).cpu().numpy(),
                             cell_classes(classes, self.net_config.stride).reshape(-1)))
        (qa, ca), (qb, cb) = flat
        return 0.5 * (retrieval_map(qa, ca, qb, cb) + retrieval_map(qb, cb, qa, ca))


def train_features(outdir: str | Path, config: FeatureTrainConfig = FeatureTrainConfig(),
                   net_config: CompactFeaturesConfig = CompactFeaturesConfig(), resume: bool = False
                   ) -> dict[str, Any]:
    """Train compact-features on simulated tomograms (and `config.real` slices); write OUT/model (config.json,
    model.safetensors, training.json), OUT/curves.png and OUT/checkpoint.pt (for `resume`). Returns the training
    record."""
    import torch

    from ..io.atomic import atomic_path
    from ..models.compact_features import build_network, save_folder
    from ..models.device import resolve_device
    from ..train import fit, plot_curves

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    network = build_network(net_config).to(resolve_device(config.device))
    run = _Run(config, net_config)
    history = fit(network, run.batches, run.step, run.validate, config.fit_settings(), checkpoint=outdir / "checkpoint.pt",
                  resume=resume)
    plot_curves(history, outdir / "curves.png")
    record = {"model": "compact-features", "config": asdict(config), "network": asdict(net_config),
              "history": history.to_dict(), "class_names": run.names.ids,
              "validation_map": max(history.val_metric) if history.val_metric else None}
    with atomic_path(outdir / "model", is_dir=True) as tmp:
        save_folder(network.cpu(), net_config, tmp, json.loads(json.dumps(record, default=str)))
    return record
