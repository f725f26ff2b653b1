"""Self-supervised MAE pretraining (`cryoseg.scsam.pretrain`) and `cryoseg scsam pretrain-mae`, on the tiny MAE
(64-pixel input, 8-pixel patches: 64 patches, 48 of them masked at ratio 0.75) and small synthetic stacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.io import Volume
from cryoseg.models.registry import REGISTRY
from cryoseg.scsam import pretrain as P
from cryoseg.scsam.pretrain import MAEPretrainConfig, pretrain_mae

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (12, 48, 56)
# settings under which the tiny MAE learns visibly in a few epochs (the library's defaults are for real runs)
FAST = dict(base="tiny-mae", batch_size=4, lr=1e-2, warmup_epochs=0)


def blobs(seed: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """(Z, Y, X) float32: a few small bright Gaussian blobs on a dark background, faint noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    volume = np.zeros(shape, np.float32)
    for _ in range(8):
        c = rng.uniform((0, 0, 0), shape)
        r = rng.uniform(2, 4)
        volume += np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * r * r))
    return volume + 0.01 * rng.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def stack() -> list[np.ndarray]:
    return [blobs(1), blobs(2), blobs(3)]


@pytest.fixture(scope="module")
def trained(stack, tmp_path_factory, one_torch_thread):
    """One 6-epoch run from scratch on 3 volumes x 8 slices: (result, output folder)."""
    out = tmp_path_factory.mktemp("mae") / "run"
    result = pretrain_mae(stack, MAEPretrainConfig(**FAST, epochs=6, slices=8), out)
    return result, out


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _encoder_state(folder: Path) -> dict:
    from transformers import ViTMAEModel

    return ViTMAEModel.from_pretrained(str(folder), local_files_only=True).state_dict()


# --- training ----------------------------------------------------------------------------------------------------

def test_the_reconstruction_loss_falls(trained):
    result, out = trained
    history = result.history
    assert len(history) == 6 and all(np.isfinite(history))
    # the tiny MAE starts near the loss of predicting zeros (about 4 on these mostly dark slices)
    assert history[0] > 1.5
    assert max(history[-2:]) < 0.6 * history[0], history
    report = _report(out)
    assert report["history"] == history and report["epochs"] == 6 and report["start_epoch"] == 0
    assert len(report["data"]["slices"]) == 24 and report["data"]["slices"][0] == "volume1:z0"


def test_the_slices_are_the_centres_of_equal_bins_along_z():
    assert P._slice_indices(12, 4).tolist() == [1, 4, 7, 10]
    assert P._slice_indices(12, 8).tolist() == [0, 2, 3, 5, 6, 8, 9, 11]
    assert P._slice_indices(3, 8).tolist() == [0, 1, 2]


def test_large_slices_are_stored_only_as_fine_as_the_smallest_crop_needs():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(3, 300, 400)).astype(np.float32)
    config = MAEPretrainConfig(**FAST, slices=2)
    images, sources = P._prepare_slices([(volume, None)], config, 64, 8)
    # the smallest crop covers 0.2 of the largest square by area: 64 / sqrt(0.2) = 143.1 -> a 144-pixel short side
    assert [im.shape for im in images] == [(144, 192), (144, 192)] and sources == ["volume1:z0", "volume1:z2"]
    assert all(im.dtype == np.float32 and im.min() >= 0.0 and im.max() <= 1.0 for im in images)
    small = P._prepare_slices([(volume[:, :100, :120], None)], config, 64, 8)[0]
    assert small[0].shape == (100, 120)  # small enough already: kept as it is


def test_the_saved_encoder_loads_as_a_feature_extractor_and_is_the_trained_one(trained, stack):
    from transformers import ViTMAEForPreTraining

    from cryoseg.models import load_feature_extractor

    result, out = trained
    assert result.feature_extractor == "tiny-mae" and result.input_size == 64
    assert result.files["encoder"] == out / "encoder"
    config = json.loads((out / "encoder" / "config.json").read_text())
    assert config["model_type"] == "vit_mae" and config["mask_ratio"] == 0.0
    assert config["architectures"] == ["ViTMAEModel"]

    mine = load_feature_extractor("tiny-mae", weights=out / "encoder")
    builtin = load_feature_extractor("tiny-mae")
    image = stack[0][6]
    ours, theirs = mine.extract(image).features, builtin.extract(image).features
    assert ours.shape == theirs.shape == (1, 32, 7, 8)  # 48 x 56 at 64 px longest side: 7 x 8 patches
    assert np.all(np.isfinite(ours)) and not np.allclose(ours, theirs, atol=1e-2)

    # the encoder is exactly the trained model's (the one saved whole for continuing)
    whole = ViTMAEForPreTraining.from_pretrained(str(out / "model"), local_files_only=True)
    trained_encoder = whole.vit.state_dict()
    loaded = mine.model.state_dict()
    assert set(loaded) == set(trained_encoder)
    assert all(np.array_equal(loaded[k].numpy(), trained_encoder[k].numpy()) for k in loaded)
    assert whole.config.mask_ratio == 0.75  # the whole model keeps its training mask ratio


def test_the_preview_shows_input_masked_input_and_reconstruction(trained):
    from PIL import Image

    _, out = trained
    layout = _report(out)["preview"]
    rows, tile, gap, header = 4, 128, 4, 18  # 4 preview slices; 64-pixel input scaled by 2
    assert (layout["rows"], layout["tile"], layout["gap"], layout["header"]) == (rows, tile, gap, header)
    assert layout["columns"] == ["input", "masked input", "reconstruction"]
    picture = np.asarray(Image.open(out / "preview.png").convert("RGB"))
    assert picture.shape == (header + gap + rows * (tile + gap), gap + 3 * (tile + gap), 3)
    cell = 16  # an 8-pixel patch at scale 2
    colour = np.array(P.PREVIEW_MASK_COLOUR)
    for r in range(rows):
        top = header + gap + r * (tile + gap)
        tiles = [picture[top:top + tile, gap + c * (tile + gap):gap + c * (tile + gap) + tile].astype(int)
                 for c in range(3)]
        grey, masked, recon = tiles
        assert np.all(grey[..., 0] == grey[..., 1]) and np.all(recon[..., 0] == recon[..., 2])  # grey images
        assert grey.std() > 10  # real content
        hidden = np.zeros((8, 8), bool)
        for i in range(8):
            for j in range(8):
                block = (slice(i * cell, (i + 1) * cell), slice(j * cell, (j + 1) * cell))
                if np.all(masked[block] == colour):
                    hidden[i, j] = True
                else:  # a visible patch is the input, in the masked input and pasted into the reconstruction
                    assert np.array_equal(masked[block], grey[block]) and np.array_equal(recon[block], grey[block])
        assert hidden.sum() == 48 == layout["masked_patches"]
        # the masked patches are the model's prediction: not the input, not the mask colour
        predicted = np.repeat(np.repeat(hidden, cell, 0), cell, 1)
        assert not np.array_equal(recon[predicted], grey[predicted])


def test_progress_shows_the_previous_epochs_loss(stack, tmp_path, monkeypatch):
    seen = []

    def recording(items, description, total=None):
        seen.append((description, total))
        yield from items

    monkeypatch.setattr(P, "track", recording)
    result = pretrain_mae(stack[:1], MAEPretrainConfig(**FAST, epochs=2, slices=6), tmp_path / "run")
    assert seen[0] == ("MAE epoch 1/2", 2)
    assert seen[1] == (f"MAE epoch 2/2, loss {result.history[0]:.4f}", 2)


# --- resuming --------------------------------------------------------------------------------------------------

def _interrupt_in_epoch(epoch: int):
    """A `track` that raises KeyboardInterrupt after the first batch of the given (1-based) epoch."""
    calls = []

    def interrupting(items, description, total=None):
        calls.append(description)
        for i, item in enumerate(items):
            if len(calls) == epoch and i == 1:
                raise KeyboardInterrupt
            yield item

    return interrupting


def test_an_interrupted_then_resumed_run_equals_an_uninterrupted_one(stack, tmp_path, monkeypatch):
    config = MAEPretrainConfig(**FAST, epochs=4, slices=4)  # 2 volumes x 4 slices: 2 batches per epoch
    whole = pretrain_mae(stack[:2], config, tmp_path / "whole")

    with monkeypatch.context() as patch:
        patch.setattr(P, "track", _interrupt_in_epoch(3))
        with pytest.raises(KeyboardInterrupt):
            pretrain_mae(stack[:2], config, tmp_path / "cut")
    cut = tmp_path / "cut"
    assert not (cut / "report.json").exists() and not (cut / "encoder").exists()
    state = json.loads((cut / P.CHECKPOINT_DIR / "state.json").read_text())
    assert state["epoch"] == 2 and state["history"] == whole.history[:2]

    resumed = pretrain_mae(stack[:2], config, cut, resume=True)
    assert resumed.start_epoch == 2 and len(resumed.history) == 4
    assert resumed.history == whole.history
    a, b = _encoder_state(tmp_path / "whole" / "encoder"), _encoder_state(cut / "encoder")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert _report(cut)["start_epoch"] == 2 and _report(cut)["history"] == whole.history


def test_resume_extends_a_finished_run_and_refuses_other_settings(stack, tmp_path):
    out = tmp_path / "run"
    first = pretrain_mae(stack[:1], MAEPretrainConfig(**FAST, epochs=2, slices=4), out)
    more = pretrain_mae(stack[:1], MAEPretrainConfig(**FAST, epochs=3, slices=4), out, resume=True)
    assert more.start_epoch == 2 and len(more.history) == 3 and more.history[:2] == first.history
    assert _report(out)["epochs"] == 3

    before = (out / "report.json").read_bytes()
    with pytest.raises(InputError, match=r"other settings \(lr=0.01 then, 0.005 now\)"):
        pretrain_mae(stack[:1], MAEPretrainConfig(**{**FAST, "lr": 5e-3}, epochs=4, slices=4), out, resume=True)
    with pytest.raises(InputError, match="made on other slices"):
        pretrain_mae(stack[1:2], MAEPretrainConfig(**FAST, epochs=4, slices=4), out, resume=True)
    with pytest.raises(InputError, match="at epoch 3, beyond epochs=2"):
        pretrain_mae(stack[:1], MAEPretrainConfig(**FAST, epochs=2, slices=4), out, resume=True)
    assert (out / "report.json").read_bytes() == before

    # without resume the run starts afresh (and replaces the checkpoint)
    again = pretrain_mae(stack[:1], MAEPretrainConfig(**FAST, epochs=1, slices=4), out)
    assert again.start_epoch == 0 and again.history == first.history[:1]
    assert json.loads((out / P.CHECKPOINT_DIR / "state.json").read_text())["epoch"] == 1


# --- continuing from a folder ----------------------------------------------------------------------------------

def test_continue_from_a_previous_runs_model_or_encoder(trained, stack, tmp_path):
    _, out = trained
    start = _encoder_state(out / "encoder")
    for base, name in ((out, "whole"), (out / "model", "model"), (out / "encoder", "encoder")):
        result = pretrain_mae(stack[:1], MAEPretrainConfig(**{**FAST, "base": str(base)}, epochs=1, slices=4),
                              tmp_path / name)
        report = _report(tmp_path / name)
        assert report["base"]["from"] == "folder" and result.feature_extractor == "tiny-mae"
        assert report["base"]["folder"] == str(out / "encoder" if name == "encoder" else out / "model")
        after = _encoder_state(tmp_path / name / "encoder")
        # trained on from the saved weights: close to them after one epoch, but changed
        assert not all(np.array_equal(after[k].numpy(), start[k].numpy()) for k in start)
        proj = "embeddings.patch_embeddings.projection.weight"
        assert np.abs(after[proj].numpy() - start[proj].numpy()).max() < 0.2
        # MAE's sin-cos positions stay fixed, also when the weights come from a folder
        positions = "embeddings.position_embeddings"
        assert np.array_equal(after[positions].numpy(), start[positions].numpy())
    with pytest.raises(InputError, match="trained at input size 64"):
        pretrain_mae(stack[:1], MAEPretrainConfig(**{**FAST, "base": str(out / "model")}, input_size=128),
                     tmp_path / "bigger")
    assert not (tmp_path / "bigger").exists()


def test_the_built_in_architectures_match_the_registry():
    for name in P.mae_names():
        spec = REGISTRY[name]
        config = P._architecture_config(name)
        assert config.model_type == "vit_mae"
        assert (config.hidden_size, P._patch(config), P._image_size(config)) == (
            spec.feature_dim, spec.patch_size, spec.input_size), name
    assert set(P.mae_names()) >= {"tiny-mae", "mae-vit-base", "mae-vit-large", "mae-vit-huge"}


# --- bad input ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": -1}, "batch_size must be a positive integer"),
    ({"slices": 2.5}, "slices must be a positive integer"),
    ({"mask_ratio": 1.0}, "mask_ratio must be between 0 and 1"),
    ({"mask_ratio": 0.0}, "mask_ratio must be between 0 and 1"),
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"lr": float("nan")}, "lr must be a positive number"),
    ({"warmup_epochs": -1}, "warmup_epochs must be a non-negative integer"),
    ({"seed": -3}, "seed must be a non-negative integer"),
    ({"crop_scale": (0.0, 1.0)}, "crop_scale must satisfy"),
    ({"input_size": 0}, "input_size must be a positive integer"),
    ({"base": "sam-vit-b"}, "base model 'sam-vit-b' is not an MAE"),
    ({"base": "no-such-mae"}, "unknown base 'no-such-mae'"),
])
def test_the_config_refuses_bad_settings(changes, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        MAEPretrainConfig(**{**FAST, **changes})


def test_the_run_refuses_bad_input_before_writing(stack, tmp_path):
    out = tmp_path / "out"
    not_mae = tmp_path / "dino"
    not_mae.mkdir()
    (not_mae / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    nan = stack[0].copy()
    nan[4, 5, 5] = np.nan  # z = 4 is one of the 4 slices taken (1, 4, 7, 10)
    cases = [
        ([], {}, "no volumes given"),
        ([stack[0][0]], {}, "volume 1: expected a 3D volume"),
        ([stack[0], nan], {}, "volume2, slice z="),
        ([np.zeros((4, 6, 40), np.float32)], {}, "smaller than one 8-pixel patch"),
        (stack[:1], {"input_size": 60}, "input size 60 is not a multiple of the patch size 8"),
        (stack[:1], {"mask_ratio": 0.99}, "leaves no visible patch"),
        (stack[:1], {"base": str(not_mae)}, "holds a 'dinov2' model, not an MAE"),
        (stack[:1], {"base": str(empty)}, "not a transformers model folder"),
    ]
    for volumes, changes, message in cases:
        with pytest.raises(InputError, match=message):
            pretrain_mae(volumes, MAEPretrainConfig(**{**FAST, **changes}, epochs=1, slices=4), out)
        assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["dino", "empty"], message
    with pytest.raises(InputError, match="is a file"):
        MAEPretrainConfig(base=str(not_mae / "config.json"))


def test_a_volume_keeps_its_name_in_the_report(stack, tmp_path):
    volume = Volume(stack[0], 10.0, source=tmp_path / "tomo.mrc")
    pretrain_mae([volume], MAEPretrainConfig(**FAST, epochs=1, slices=2), tmp_path / "run")
    data = _report(tmp_path / "run")["data"]
    assert data["slices"] == ["tomo.mrc:z3", "tomo.mrc:z9"]
    assert data["volumes"][0]["voxel_size"] == [10.0, 10.0, 10.0]


# --- the command ---------------------------------------------------------------------------------------------------

@pytest.fixture
def tomograms(stack, tmp_path) -> list[Path]:
    from cryoseg.io.volumes import write_volume

    return [write_volume(Volume(v, 10.0), tmp_path / f"tomo{i}.mrc") for i, v in enumerate(stack[:2])]


CLI_FAST = ["--base", "tiny-mae", "--batch-size", "4", "--lr", "0.01", "--warmup-epochs", "0", "--slices", "3"]


def test_cli_pretrains_resumes_and_reports(tomograms, tmp_path, capsys):
    from cryoseg.cli.main import main

    out = tmp_path / "mae"
    assert main(["scsam", "pretrain-mae", *map(str, tomograms), "-o", str(out), "--epochs", "2", *CLI_FAST]) == 0
    said = capsys.readouterr().out
    assert "2 epoch(s), loss" in said and f"--features tiny-mae --feature-weights {out / 'encoder'}" in said
    report = _report(out)
    assert report["parameters"]["epochs"] == 2 and report["parameters"]["base"] == "tiny-mae"
    assert report["parameters"]["lr"] == 0.01 and report["parameters"]["mask_ratio"] == 0.75  # the default
    assert [v["source"] for v in report["data"]["volumes"]] == [str(p) for p in tomograms]
    assert {p.name for p in out.iterdir()} == {".checkpoint", "encoder", "model", "preview.png", "report.json"}

    assert main(["scsam", "pretrain-mae", *map(str, tomograms), "-o", str(out), "--epochs", "3", "--resume",
                 *CLI_FAST]) == 0
    assert "3 epoch(s) (resumed at epoch 2)" in capsys.readouterr().out
    assert _report(out)["epochs"] == 3 and _report(out)["history"][:2] == report["history"]


def test_cli_help_quotes_the_library_defaults():
    from typer.main import get_command

    from cryoseg.cli.main import app

    command = get_command(app).commands["scsam"].commands["pretrain-mae"]
    helps = {p.opts[0]: p.help for p in command.params if p.opts}
    defaults = MAEPretrainConfig()
    assert f"default {defaults.epochs})" in helps["--epochs"]
    assert f"default {defaults.mask_ratio:g})" in helps["--mask-ratio"]
    assert f"default {defaults.base})" in helps["--base"] and "tiny-mae" in helps["--base"]
    assert f"default {defaults.slices})" in helps["--slices"]


def test_cli_refuses_bad_input(tomograms, tmp_path, cli_refuses):
    out = str(tmp_path / "mae")
    good = [str(p) for p in tomograms]
    garbage = tmp_path / "garbage.mrc"
    garbage.write_text("not an MRC file")
    dino = tmp_path / "dino"
    dino.mkdir()
    (dino / "config.json").write_text(json.dumps({"model_type": "dinov2"}))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    run = ["scsam", "pretrain-mae"]
    cases = [
        ([*run, "-o", out], "Missing argument"),
        ([*run, str(garbage), "-o", out], "garbage.mrc"),
        ([*run, str(tmp_path / "missing.mrc"), "-o", out], "missing.mrc"),
        ([*run, *good, "-o", out, "--base", "no-such-mae"], "unknown base 'no-such-mae'"),
        ([*run, *good, "-o", out, "--base", "tiny-dinov2"], "base model 'tiny-dinov2' is not an MAE"),
        ([*run, *good, "-o", out, "--base", str(dino)], "holds a 'dinov2' model, not an MAE"),
        ([*run, *good, "-o", out, "--epochs", "0"], "epochs must be a positive integer"),
        ([*run, *good, "-o", out, "--mask-ratio", "1"], "mask_ratio must be between 0 and 1"),
        ([*run, *good, "-o", out, *CLI_FAST, "--input-size", "60"], "not a multiple of the patch size 8"),
        ([*run, *good, "-o", out, "--voxel-size", "1,2"], "--voxel-size must be one or three"),
        ([*run, *good, "-o", out, "--nan-policy", "ignore"], "nan_policy must be 'raise' or 'clean'"),
        ([*run, *good, "-o", str(full), *CLI_FAST], "is not empty; pass --overwrite"),
        ([*run, *good, "-o", str(full), *CLI_FAST, "--resume"], "is not empty; pass --overwrite"),
        ([*run, *good, "-o", str(tomograms[0]), *CLI_FAST], "is a file, not a folder"),
    ]
    for argv, message in cases:
        cli_refuses(argv, message, tmp_path)
