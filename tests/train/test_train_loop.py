"""The training loop: a tiny conv net overfits a tiny segmentation set; early stopping; the best state comes back;
frozen parameters stay frozen; resume equals an uninterrupted run; settings and bad steps are refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryoseg.errors import CorruptFileError, InputError
from cryoseg.train import History, TrainConfig, TrainingError, batch_indices, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dataset(n: int = 12, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images (n, 1, size, size) with one bright square each, and its mask (n, size, size) as class 1."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        r, c = rng.integers(0, size - 6, 2)
        images[i, 0, r:r + 6, c:c + 6] += 1.0
        labels[i, r:r + 6, c:c + 6] = 1
    return torch.from_numpy(images), torch.from_numpy(labels)


def _net(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Dropout2d(dropout),
                               torch.nn.Conv2d(8, 2, 1))


IMAGES, LABELS = _dataset()


def _batches(config: TrainConfig, n: int = 8):
    return lambda epoch: [(IMAGES[i], LABELS[i]) for i in batch_indices(n, config.batch_size, config.seed, epoch)]


def _step(model, batch):
    x, y = batch
    logits = model(x)
    accuracy = float((logits.argmax(1) == y).float().mean())
    return F.cross_entropy(logits, y), {"accuracy": accuracy}


def _dice(model) -> float:
    pred = model(IMAGES[8:]).argmax(1)
    truth = LABELS[8:]
    return float(2 * ((pred == 1) & (truth == 1)).sum() / ((pred == 1).sum() + (truth == 1).sum()))


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_seconds(history: History) -> dict:
    d = history.to_dict()
    d.pop("seconds")
    return d


def test_tiny_net_overfits_tiny_segmentation_set():
    config = TrainConfig(epochs=25, batch_size=4, lr=0.02, patience=25)
    model = _net()
    history = fit(model, _batches(config), _step, validate=_dice, config=config)
    assert history.epochs == 25 and not history.stopped_early
    assert history.train_loss[-1] < 0.15 * history.train_loss[0], history.train_loss
    assert history.train_metrics[-1]["accuracy"] > 0.97
    assert history.val_metric[history.best_epoch] == max(history.val_metric) > 0.9
    assert len(history.seconds) == 25 and all(s > 0 for s in history.seconds)
    assert _dice(model) == pytest.approx(max(history.val_metric))  # the best state is back
    assert not model.training


def test_without_validation_the_lowest_loss_state_is_kept():
    config = TrainConfig(epochs=8, batch_size=4, lr=0.05, patience=8)
    model = _net()
    states = []
    history = fit(model, _batches(config), _step, config=config, on_epoch=lambda e, h: states.append(_state(model)))
    assert history.val_metric == []
    assert history.best_epoch == int(np.argmin(history.train_loss))
    assert _same_state(_state(model), states[history.best_epoch])


def test_early_stopping_stops_and_restores_the_best_epoch():
    metrics = iter([0.1, 0.5, 0.5, 0.45, 0.3, 0.9, 0.95])  # a tie is no improvement
    config = TrainConfig(epochs=20, batch_size=4, patience=3)
    model = _net()
    states = []
    history = fit(model, _batches(config), _step, validate=lambda m: next(metrics), config=config,
                  on_epoch=lambda e, h: states.append(_state(model)))
    assert history.stopped_early
    assert history.epochs == 5  # best at epoch 1; epochs 2, 3, 4 bring nothing
    assert history.best_epoch == 1 and history.val_metric == [0.1, 0.5, 0.5, 0.45, 0.3]
    assert _same_state(_state(model), states[1])
    assert not _same_state(states[1], states[4])


def test_no_early_stop_flag_when_the_last_epoch_is_reached():
    config = TrainConfig(epochs=4, batch_size=4, patience=1)
    metrics = iter([0.5, 0.6, 0.7, 0.1])
    history = fit(_net(), _batches(config), _step, validate=lambda m: next(metrics), config=config)
    assert history.epochs == 4 and not history.stopped_early and history.best_epoch == 2


def test_lr_weight_decay_and_gradient_clipping_are_applied():
    # one batch of a loss with zero gradient: AdamW's decoupled decay alone moves the weights, by (1 - lr * wd)
    config = TrainConfig(epochs=1, lr=0.1, weight_decay=0.5)
    model = _net()
    before = _state(model)
    fit(model, lambda epoch: [None], lambda m, b: (sum(p.sum() for p in m.parameters()) * 0.0, {}), config=config)
    torch.testing.assert_close(model[0].weight, before["0.weight"] * (1 - 0.1 * 0.5))

    def moved(clip):
        model = _net()
        before = _state(model)
        config = TrainConfig(epochs=1, batch_size=4, lr=0.01, weight_decay=0.0, clip_grad=clip)
        fit(model, _batches(config, n=4), _step, config=config)
        return float((model[0].weight.detach() - before["0.weight"]).abs().max())

    # Adam's first step is lr * g / (|g| + eps): a gradient clipped to norm 1e-12 is far below eps and barely moves
    assert moved(None) == pytest.approx(0.01, rel=0.05)
    assert moved(1e-12) < 1e-5


def test_frozen_parameters_stay_and_only_trained_ones_are_checkpointed(tmp_path):
    config = TrainConfig(epochs=2, batch_size=4)
    model = _net()
    for p in model[0].parameters():
        p.requires_grad_(False)
    before = _state(model)
    fit(model, _batches(config), _step, config=config, checkpoint=tmp_path / "ck.pt")
    after = _state(model)
    assert torch.equal(before["0.weight"], after["0.weight"]) and torch.equal(before["0.bias"], after["0.bias"])
    assert not torch.equal(before["3.weight"], after["3.weight"])
    saved = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert sorted(saved["model"]) == ["3.bias", "3.weight"]
    assert saved["epochs_done"] == 2


def test_frozen_modules_stay_in_eval_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),  # frozen encoder
                                torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    model[:2].requires_grad_(False)
    before = _state(model)
    config = TrainConfig(epochs=2, batch_size=4)
    fit(model, _batches(config), _step, config=config)
    after = _state(model)
    assert torch.equal(before["1.running_mean"], after["1.running_mean"])  # the frozen statistics did not drift
    assert not torch.equal(before["3.running_mean"], after["3.running_mean"])  # the trained ones did
    assert not model.training


class _Killed(Exception):
    pass


def _kill_after(epochs: int):
    def on_epoch(epoch, history):
        if epoch + 1 == epochs:
            raise _Killed

    return on_epoch


@pytest.mark.parametrize("how", ["killed", "shorter run"])
def test_resume_equals_an_uninterrupted_run(tmp_path, how):
    # dropout and shuffled batches: the run draws random numbers every epoch, and the optimizer has momentum
    config = TrainConfig(epochs=6, batch_size=3, lr=0.01, patience=10, seed=4)
    whole = _net(dropout=0.3)
    expected = fit(whole, _batches(config), _step, validate=_dice, config=config)

    path = tmp_path / "ck.pt"
    first = _net(dropout=0.3)
    if how == "killed":
        with pytest.raises(_Killed):
            fit(first, _batches(config), _step, validate=_dice, config=config, checkpoint=path,
                on_epoch=_kill_after(2))
    else:
        short = TrainConfig(epochs=2, batch_size=3, lr=0.01, patience=10, seed=4)
        fit(first, _batches(short), _step, validate=_dice, config=short, checkpoint=path)
    assert torch.load(path, weights_only=True)["epochs_done"] == 2

    resumed_model = _net(seed=123, dropout=0.3)  # another start: everything must come from the checkpoint
    resumed = fit(resumed_model, _batches(config), _step, validate=_dice, config=config, checkpoint=path,
                  resume=True)
    assert _without_seconds(resumed) == _without_seconds(expected)
    assert len(resumed.seconds) == 6
    assert _same_state(_state(resumed_model), _state(whole))


def test_resume_keeps_the_best_state_from_before_the_interruption(tmp_path):
    # the metric is scripted by epoch: best at epoch 1, killed after epoch 2 (the third), no improvement after it
    script = [0.1, 0.5, 0.3, 0.2, 0.4, 0.45]
    config = TrainConfig(epochs=6, batch_size=4, lr=0.01, patience=10)
    epoch_now = {}

    def batches(epoch):
        epoch_now["epoch"] = epoch
        return _batches(config)(epoch)

    def validate(model):
        return script[epoch_now["epoch"]]

    states = []
    whole = _net()
    fit(whole, batches, _step, validate=validate, config=config, on_epoch=lambda e, h: states.append(_state(whole)))
    path = tmp_path / "ck.pt"
    with pytest.raises(_Killed):
        fit(_net(), batches, _step, validate=validate, config=config, checkpoint=path, on_epoch=_kill_after(3))
    resumed_model = _net(seed=5)
    resumed = fit(resumed_model, batches, _step, validate=validate, config=config, checkpoint=path, resume=True)
    assert resumed.best_epoch == 1 and resumed.val_metric == script
    assert _same_state(_state(resumed_model), states[1])
    assert _same_state(_state(whole), states[1])


def test_resume_without_a_checkpoint_file_starts_afresh(tmp_path):
    config = TrainConfig(epochs=3, batch_size=4)
    fresh = fit(_net(), _batches(config), _step, config=config)
    resumed = fit(_net(), _batches(config), _step, config=config, checkpoint=tmp_path / "none.pt", resume=True)
    assert _without_seconds(resumed) == _without_seconds(fresh)
    assert (tmp_path / "none.pt").is_file()


def test_resume_refuses_changed_settings_and_corrupt_checkpoints(tmp_path):
    config = TrainConfig(epochs=2, batch_size=4)
    path = tmp_path / "ck.pt"
    fit(_net(), _batches(config), _step, config=config, checkpoint=path)
    with pytest.raises(InputError, match="lr 0.001 -> 0.01"):
        fit(_net(), _batches(config), _step, config=TrainConfig(epochs=2, batch_size=4, lr=0.01), checkpoint=path,
            resume=True)
    with pytest.raises(InputError, match="without validation"):
        fit(_net(), _batches(config), _step, validate=_dice, config=config, checkpoint=path, resume=True)
    bigger = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Identity(),
                                 torch.nn.Conv2d(4, 2, 1))
    with pytest.raises(InputError, match="shape"):
        fit(bigger, _batches(config), _step, config=config, checkpoint=path, resume=True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFileError, match="cannot read training checkpoint"):
        fit(_net(), _batches(config), _step, config=config, checkpoint=path, resume=True)
    with pytest.raises(InputError, match="resume needs a checkpoint"):
        fit(_net(), _batches(config), _step, config=config, resume=True)


def test_nan_loss_and_bad_metric_stop_with_a_clear_error():
    config = TrainConfig(epochs=3, batch_size=4)

    def nan_step(model, batch):
        loss, metrics = _step(model, batch)
        return loss * float("nan"), metrics

    with pytest.raises(TrainingError, match="loss became nan at epoch 0, batch 0"):
        fit(_net(), _batches(config), nan_step, config=config)
    with pytest.raises(TrainingError, match="validation metric is nan"):
        fit(_net(), _batches(config), _step, validate=lambda m: float("nan"), config=config)
    with pytest.raises(TrainingError, match="scalar loss"):
        fit(_net(), _batches(config), lambda m, b: (m(b[0]).mean(1), {}), config=config)
    with pytest.raises(InputError, match="no batch"):
        fit(_net(), lambda epoch: [], _step, config=config)
    frozen = _net().requires_grad_(False)
    with pytest.raises(InputError, match="no parameters with requires_grad"):
        fit(frozen, _batches(config), _step, config=config)


def test_one_info_line_per_epoch(caplog):
    config = TrainConfig(epochs=3, batch_size=4)
    with caplog.at_level(logging.INFO, logger="cryoseg.train.loop"):
        fit(_net(), _batches(config), _step, validate=_dice, config=config)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3: loss ") and ", val " in lines[0]


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("batch_size", 2.5), ("lr", 0.0),
                                          ("lr", float("nan")), ("weight_decay", -1e-3), ("patience", 0),
                                          ("seed", -1), ("clip_grad", 0.0), ("epochs", True)])
def test_config_refuses_bad_values(field, value):
    with pytest.raises(InputError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_config_defaults():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.weight_decay, config.patience, config.seed,
            config.clip_grad) == (50, 8, 1e-3, 1e-4, 10, 0, 1.0)
    assert TrainConfig(clip_grad=None).clip_grad is None
    with pytest.raises(AttributeError):
        config.epochs = 3  # frozen


def test_history_round_trips_through_a_dict():
    h = History([1.0, 0.5], [0.2, 0.3], [0.1, 0.1], [{"a": 1.0}, {"a": 2.0}], best_epoch=1, stopped_early=True)
    assert History.from_dict(h.to_dict()) == h
    assert h.best_value == 0.3 and h.epochs == 2
    with pytest.raises(InputError, match="not a training history"):
        History.from_dict({"val_metric": []})


@pytest.mark.parametrize("schedule, steps", [("constant", [1.0, 1.0, 1.0]), ("cosine", [1.0, 0.75, 0.25])])
def test_the_learning_rate_follows_its_schedule(schedule, steps):
    """One AdamW step per epoch on a constant gradient moves the parameter by exactly that epoch's rate."""
    weight = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        weight.weight.fill_(0.0)
    config = TrainConfig(epochs=3, lr=0.1, weight_decay=0.0, clip_grad=None, patience=3, lr_schedule=schedule)
    positions = []
    fit(weight, lambda epoch: [None], lambda model, batch: (model.weight.sum(), {}), config=config,
        on_epoch=lambda epoch, history: positions.append(float(weight.weight.detach())))
    moves = -np.diff([0.0, *positions])
    assert moves == pytest.approx(0.1 * np.array(steps), rel=1e-4)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(InputError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="linear")
