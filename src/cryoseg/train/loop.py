"""`fit`: the one training loop of cryoseg's trained models (ScSAM's light modules, the unsupervised student
network, compact models). The model, the batches, the loss and the metric come from the caller; the loop owns the
optimizer, gradient clipping, seeding, early stopping, keeping the best state, progress and checkpoints.

Only parameters with `requires_grad` are trained, and only they (with the model's buffers) are kept as the best
state and written to checkpoints: frozen encoders inside the model (a SAM image encoder is GBs) are rebuilt by the
caller and never copied.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CorruptFileError, CryosegError, InputError
from ..io.atomic import atomic_path
from ..progress import track
from .config import TrainConfig, epoch_lr
from .history import History

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cryoseg-checkpoint"
CHECKPOINT_VERSION = 1

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "History", "TrainConfig", "TrainingError", "fit"]


class TrainingError(CryosegError, RuntimeError):
    """Training cannot go on: the loss became NaN/inf, or the metric is not a finite number."""


def _trained_keys(model: torch.nn.Module) -> list[str]:
    """state_dict keys that training changes: parameters with requires_grad, and persistent buffers (e.g. batch
    norm statistics)."""
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    return [k for k in model.state_dict() if k in trained or k in buffers]


def _trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trained part of the model's state (see `_trained_keys`)."""
    state = model.state_dict()
    return {k: state[k].detach().clone() for k in _trained_keys(model)}


def _load_trained_state(model: torch.nn.Module, saved: dict[str, torch.Tensor], where: str) -> None:
    """Copy `saved` into the model in place; its keys and shapes must be exactly the model's trained part."""
    state = model.state_dict()
    expected = _trained_keys(model)
    if set(saved) != set(expected):
        missing, extra = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        raise InputError(f"{where} does not fit this model's trained parameters: missing {missing[:3]}, "
                         f"unexpected {extra[:3]} (was another model, or other parameters frozen?)")
    with torch.no_grad():
        for key, value in saved.items():
            if tuple(value.shape) != tuple(state[key].shape):
                raise InputError(f"{where}: {key} has shape {tuple(value.shape)}, the model's is "
                                 f"{tuple(state[key].shape)}")
            state[key].copy_(value)


def _train_mode(model: torch.nn.Module) -> None:
    """Train mode, except for submodules whose parameters are all frozen: a frozen encoder stays a fixed function
    (its batch-norm statistics do not drift, its dropout stays off)."""
    model.train()
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()


def _epoch_seed(seed: int, epoch: int) -> int:
    """A seed for torch in epoch `epoch`, from the run's seed only: a resumed run draws what the uninterrupted one
    drew (dropout masks, random augmentations inside `step`)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _improved(value: float, best: float | None, higher_is_better: bool) -> bool:
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def _save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                     history: History, best_state: dict[str, torch.Tensor] | None) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epochs_done": history.epochs,
               "config": dataclasses.asdict(config), "model": _trained_state(model), "best": best_state,
               "optimizer": optimizer.state_dict(), "history": history.to_dict()}
    with atomic_path(path) as tmp:  # a kill mid-write leaves the previous epoch's checkpoint intact
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, config: TrainConfig) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types on truncated or foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot read training checkpoint {path}: {first}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CorruptFileError(f"{path} is not a cryoseg training checkpoint")
    if not isinstance(payload.get("version"), int) or payload["version"] > CHECKPOINT_VERSION:
        raise InputError(f"checkpoint {path} has format version {payload.get('version')!r}; this cryoseg reads up "
                         f"to {CHECKPOINT_VERSION}: upgrade cryoseg")
    # only the number of epochs may change on resume (to train longer); anything else would mix two runs
    # a setting added since the checkpoint was written had its default then (new settings keep old behaviour)
    saved = {k: v for k, v in {**dataclasses.asdict(TrainConfig()), **payload["config"]}.items() if k != "epochs"}
    now = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        pairs = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
        raise InputError(f"cannot resume from {path}: the training settings changed ({pairs}); use the saved "
                         "settings, or start afresh without resume")
    return payload


def _describe(epoch: int, config: TrainConfig, history: History) -> str:
    text = f"epoch {epoch + 1}/{config.epochs}"
    if history.train_loss:
        text += f" loss {history.train_loss[-1]:.4g}"
    if history.val_metric:
        text += f" val {history.val_metric[-1]:.4g}"
    return text


def fit(model: torch.nn.Module, batches: Callable[[int], Iterable[Any]],
        step: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, float]]],
        validate: Callable[[torch.nn.Module], float] | None = None, config: TrainConfig = TrainConfig(),
        checkpoint: str | Path | None = None, resume: bool = False,
        on_epoch: Callable[[int, History], None] | None = None) -> History:
    """Train the parameters of `model` that have `requires_grad`, with AdamW, early stopping and checkpoints.

    Each epoch: seed torch from (config.seed, epoch); for each batch of `batches(epoch)`, `loss, metrics =
    step(model, batch)`, backpropagate, clip the gradient norm, step the optimizer; then `validate(model)` (in eval
    mode, without gradients). The best state (highest validation metric; lowest mean loss without validation) is
    kept and put back into the model at the end. Training stops early after `config.patience` epochs without
    improvement. Submodules whose parameters are all frozen stay in eval mode throughout; the model is left in
    eval mode.

    Args:
        model: the model; its frozen parts (requires_grad False) are left untouched.
        batches: epoch number (from 0) -> the batches of that epoch, in any form `step` takes. For reproducible
            and resumable runs the batches must depend only on the epoch and the seed (see `batch_indices`).
        step: (model, batch) -> (scalar loss tensor, extra numbers to record, e.g. {"dice": 0.8}). Moving the
            batch to the model's device is the step's job.
        validate: model -> metric, higher is better (e.g. mean Dice on held-out slices); None trains on the loss.
        config: optimizer, schedule and stopping settings.
        checkpoint: file written atomically after every epoch with the trained state, the optimizer, the best
            state and the history; None writes none.
        resume: continue from `checkpoint` if it exists (from scratch if it does not). Its settings must equal
            `config` except `epochs`, which may grow to train longer.
        on_epoch: called as on_epoch(epoch, history) after each epoch (and its checkpoint); it may raise to stop.

    Returns:
        History of the run (including epochs done before a resume).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no parameters with requires_grad: nothing to train")
    if resume and checkpoint is None:
        raise InputError("resume needs a checkpoint path")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    higher_is_better = validate is not None

    history = History()
    best_state: dict[str, torch.Tensor] | None = None
    if resume and checkpoint is not None and checkpoint.is_file():
        payload = _load_checkpoint(checkpoint, config)
        _load_trained_state(model, payload["model"], f"checkpoint {checkpoint}")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise InputError(f"checkpoint {checkpoint}: optimizer state does not fit this model: {exc}") from exc
        history = History.from_dict(payload["history"])
        best_state = payload["best"]
        if bool(history.val_metric) != higher_is_better and history.epochs:
            raise InputError(f"checkpoint {checkpoint} was trained {'with' if history.val_metric else 'without'} "
                             "validation; resume it the same way")
        logger.info("resuming from %s after epoch %d", checkpoint, history.epochs)
    elif resume:
        logger.info("no checkpoint at %s; training from the start", checkpoint)

    _train_mode(model)
    for epoch in range(history.epochs, config.epochs):
        if history.stopped_early:
            break
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(config, epoch)
        start = time.perf_counter()
        epoch_batches = batches(epoch)
        total = len(epoch_batches) if hasattr(epoch_batches, "__len__") else None
        loss_sum, count, sums = 0.0, 0, {}
        for batch in track(epoch_batches, _describe(epoch, config, history), total=total):
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = step(model, batch)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TrainingError(f"step must return a scalar loss tensor, got {type(loss).__name__} "
                                    f"{tuple(getattr(loss, 'shape', ()))}")
            if not torch.isfinite(loss.detach()).all():
                raise TrainingError(f"the loss became {loss.item()} at epoch {epoch}, batch {count}; lower the "
                                    f"learning rate (lr={config.lr}) or check the inputs")
            if not loss.requires_grad:
                raise TrainingError("the step's loss does not depend on any trained parameter")
            loss.backward()
            if config.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
            optimizer.step()
            loss_sum += float(loss.detach())
            count += 1
            for name, value in (metrics or {}).items():
                value = value.detach() if isinstance(value, torch.Tensor) else value
                sums[name] = sums.get(name, 0.0) + float(value)
        if count == 0:
            raise InputError(f"batches({epoch}) gave no batch: nothing to train on")
        history.train_loss.append(loss_sum / count)
        history.train_metrics.append({name: total_ / count for name, total_ in sums.items()})

        if validate is not None:
            model.eval()
            with torch.no_grad():
                value = float(validate(model))
            _train_mode(model)
            if not np.isfinite(value):
                raise TrainingError(f"the validation metric is {value} after epoch {epoch}; validate must return a "
                                    "finite number")
            history.val_metric.append(value)
        current = history.val_metric[-1] if validate is not None else history.train_loss[-1]
        if _improved(current, history.best_value, higher_is_better):
            history.best_epoch = epoch
            best_state = _trained_state(model)
        history.seconds.append(time.perf_counter() - start)
        if epoch - history.best_epoch >= config.patience and epoch + 1 < config.epochs:
            history.stopped_early = True
        logger.info("%s: loss %.4g%s, best epoch %d, %.1f s", f"epoch {epoch + 1}/{config.epochs}",
                    history.train_loss[-1], f", val {history.val_metric[-1]:.4g}" if history.val_metric else "",
                    history.best_epoch + 1, history.seconds[-1])
        if checkpoint is not None:
            _save_checkpoint(checkpoint, model, optimizer, config, history, best_state)
        if on_epoch is not None:
            on_epoch(epoch, history)

    if history.stopped_early:
        logger.info("stopped early: no improvement for %d epochs; keeping epoch %d", config.patience,
                    history.best_epoch + 1)
    if best_state is not None:
        _load_trained_state(model, best_state, "the best state")
    model.eval()
    return history
