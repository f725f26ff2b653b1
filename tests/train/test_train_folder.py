"""A trained model's folder: round trip, staging, and a one-line error for each kind of bad folder."""

from __future__ import annotations

import json

import pytest
import torch

from cryoseg.errors import CorruptFileError, InputError
from cryoseg.train import History, ModelFolder, load_model_folder, save_model_folder

CONFIG = {"channels": 8, "classes": ["membrane", "ribosome"], "encoders": {"sam": "sam-vit-b"}}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 3, 1))


@pytest.fixture
def saved(tmp_path):
    model = _model()
    history = History([1.0, 0.4], [0.5, 0.7], [0.1, 0.1], [{}, {}], best_epoch=1)
    folder = save_model_folder(tmp_path / "model", model.state_dict(), CONFIG,
                               {"class_names": ["membrane", "ribosome"], "history": history}, kind="scsam")
    return folder, model


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def test_round_trip(saved, tmp_path):
    folder, model = saved
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "report.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging debris
    config_file = json.loads((folder / "config.json").read_text())
    assert config_file == {"format": "cryoseg-model", "version": 1, "kind": "scsam", "config": CONFIG}

    loaded = load_model_folder(folder, "scsam")
    assert isinstance(loaded, ModelFolder)
    state, config, meta = loaded
    assert config == CONFIG
    assert meta["class_names"] == ["membrane", "ribosome"] and meta["kind"] == "scsam"
    assert History.from_dict(meta["history"]).val_metric == [0.5, 0.7]
    assert "versions" in meta and "created" in meta
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 3, 1))
    fresh.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_views_and_tied_weights_are_saved(tmp_path):
    weight = torch.randn(4, 6)
    state = {"a": weight, "tied": weight, "view": weight.t()}  # shared memory and a non-contiguous view
    folder = save_model_folder(tmp_path / "m", state, {}, {}, kind="tiny")
    loaded = load_model_folder(folder, "tiny").state_dict
    assert torch.equal(loaded["tied"], weight) and torch.equal(loaded["view"], weight.t())


def test_saving_over_a_model_replaces_it(saved):
    folder, _ = saved
    save_model_folder(folder, {"w": torch.ones(2)}, {"channels": 1}, {}, kind="scsam")
    state, config, _ = load_model_folder(folder, "scsam")
    assert list(state) == ["w"] and config == {"channels": 1}


def test_a_failed_save_leaves_the_old_model_complete(saved, monkeypatch, tmp_path):
    folder, model = saved

    def broken_report(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cryoseg.train.folder.write_report", broken_report)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(folder, {"w": torch.ones(2)}, {"channels": 1}, {}, kind="scsam")
    state, config, _ = load_model_folder(folder, "scsam")  # the old model, whole
    assert config == CONFIG and torch.equal(state["0.weight"], model.state_dict()["0.weight"])
    with pytest.raises(OSError):
        save_model_folder(tmp_path / "new", {"w": torch.ones(2)}, {}, {}, kind="scsam")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_refuses_bad_config_and_meta(tmp_path):
    with pytest.raises(InputError, match="JSON"):
        save_model_folder(tmp_path / "m", {}, {"x": object()}, {}, kind="scsam")
    with pytest.raises(InputError, match="created"):
        save_model_folder(tmp_path / "m", {}, {}, {"created": "yesterday"}, kind="scsam")
    with pytest.raises(InputError, match="not a tensor"):
        save_model_folder(tmp_path / "m", {"w": [1.0]}, {}, {}, kind="scsam")
    with pytest.raises(InputError, match="kind"):
        save_model_folder(tmp_path / "m", {}, {}, {}, kind="")
    assert not (tmp_path / "m").exists()


def test_not_a_folder(tmp_path):
    with pytest.raises(InputError) as err:
        load_model_folder(tmp_path / "nowhere", "scsam")
    assert "does not exist" in _one_line(err)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError) as err:
        load_model_folder(tmp_path / "file", "scsam")
    assert "is not a folder" in _one_line(err)


def test_missing_files_are_named(saved):
    folder, _ = saved
    (folder / "report.json").unlink()
    with pytest.raises(InputError) as err:
        load_model_folder(folder, "scsam")
    msg = _one_line(err)
    assert "missing report.json" in msg and "interrupted" in msg
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError) as err:
        load_model_folder(folder, "scsam")
    msg = _one_line(err)
    assert "model.safetensors" in msg and "report.json" in msg and "config.json" not in msg


def test_another_format_is_named(saved):
    folder, _ = saved
    (folder / "config.json").write_text(json.dumps({"model_type": "sam"}))  # a Hugging Face folder
    with pytest.raises(InputError) as err:
        load_model_folder(folder, "scsam")
    assert "not a cryoseg model folder" in _one_line(err) and "no 'format'" in str(err.value)
    (folder / "config.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(InputError, match="format 'other'"):
        load_model_folder(folder, "scsam")


def test_another_kind(saved):
    folder, _ = saved
    with pytest.raises(InputError) as err:
        load_model_folder(folder, "unet-student")
    assert "holds a 'scsam' model, not 'unet-student'" in _one_line(err)


def test_newer_version(saved):
    folder, _ = saved
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "version": 2}))
    with pytest.raises(InputError) as err:
        load_model_folder(folder, "scsam")
    msg = _one_line(err)
    assert "version 2" in msg and "newer cryoseg" in msg and "upgrade" in msg
    (folder / "config.json").write_text(json.dumps({**data, "version": "one"}))
    with pytest.raises(CorruptFileError, match="invalid version"):
        load_model_folder(folder, "scsam")


def test_unreadable_files(saved):
    folder, _ = saved
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptFileError) as err:
        load_model_folder(folder, "scsam")
    assert "cannot read" in _one_line(err) and "model.safetensors" in str(err.value)
    weights.write_bytes(good)
    (folder / "report.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="report.json"):
        load_model_folder(folder, "scsam")
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(CorruptFileError, match="JSON object"):
        load_model_folder(folder, "scsam")
