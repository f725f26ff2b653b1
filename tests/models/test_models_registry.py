"""Registry, weight lookup (folder / hub cache / original file), errors, devices, and `cryoseg models`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cryoseg.errors import CorruptFileError, InputError, UnknownModelError, WeightsNotFoundError
from cryoseg.models import REGISTRY, get_spec, list_models, load_feature_extractor, load_segmenter, model_names
from cryoseg.models import weights as weights_mod
from cryoseg.models.device import resolve_device, resolve_dtype
from cryoseg.models.tiny import TINY_CONFIGS, build_tiny_model
from cryoseg.models.weights import locate_weights

COMMIT = "0123456789abcdef0123456789abcdef01234567"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def env(isolated_home: Path, monkeypatch) -> Path:
    """Empty cryoseg home and hub cache; offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (isolated_home / "hub").mkdir()
    return isolated_home


def make_hub_snapshot(cache: Path, hub_id: str, model) -> Path:
    """Lay out a model the way huggingface_hub caches it: models--org--name/{refs/main, snapshots/<commit>/}."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    model.save_pretrained(snap)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snap


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- the registry itself ----------------------------------------------------------------------------------------


def test_registry_contents():
    names = set(REGISTRY)
    for expected in ["sam-vit-b", "sam-vit-l", "sam-vit-h", "sam-hq-vit-b", "sam-hq-vit-l", "sam-hq-vit-h",
                     "sam2-hiera-tiny", "sam2-hiera-small", "sam2-hiera-base-plus", "sam2-hiera-large",
                     "dinov2-vits14", "dinov2-vitb14", "dinov2-vitl14", "dinov2-vitg14", "dinov2-vitl14-reg",
                     "dinov3-vits16", "dinov3-vitl16", "mae-vit-base", "mae-vit-large", "mae-vit-huge",
                     "sam-vit-b-encoder", "classical", "filterbank", "stable-diffusion-v1-4", "tiny-sd",
                     *TINY_CONFIGS]:
        assert expected in names, expected
    spec = get_spec("sam-vit-h")
    assert (spec.hub_id, spec.original_checkpoint, spec.kind, spec.hf_class) == (
        "facebook/sam-vit-huge", "sam_vit_h_4b8939.pth", "segmenter", "SamModel")
    assert get_spec("dinov2-vitl14-reg").hub_id == "facebook/dinov2-with-registers-large"
    assert get_spec("dinov2-vitl14-reg").input_size % get_spec("dinov2-vitl14-reg").patch_size == 0
    assert get_spec("sam2-hiera-base-plus").hub_id == "facebook/sam2.1-hiera-base-plus"
    assert get_spec("mae-vit-huge").patch_size == 14
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    sd = get_spec("stable-diffusion-v1-4")
    assert (sd.kind, sd.hub_id, sd.licence, sd.weights_marker, sd.weights_parts) == (
        "diffusion", "CompVis/stable-diffusion-v1-4", "CreativeML OpenRAIL-M", "model_index.json",
        ("unet", "vae", "text_encoder"))
    assert get_spec("tiny-sd").builtin and not sd.builtin
    for s in REGISTRY.values():
        assert s.kind in ("segmenter", "features", "diffusion")  # diffusion: the attention-affinity sources
        assert s.builtin or s.hub_id or s.packaged, s.name  # every model says where its weights come from
        assert s.licence
    compact = get_spec("compact-sam")
    assert (compact.packaged, compact.kind, compact.hf_class, compact.input_size) == (True, "segmenter", "SamModel",
                                                                                       256)
    features = get_spec("compact-features")
    assert (features.packaged, features.kind, features.hf_class, features.patch_size, features.feature_dim) == (
        True, "features", None, 4, 32)
    assert set(model_names("segmenter")).isdisjoint(model_names("features"))
    assert model_names("diffusion") == ["stable-diffusion-v1-4", "tiny-sd"]


def test_spec_numbers_match_the_models_they_describe():
    """input size, patch size and feature dimension of the built-in specs are those of the models themselves."""
    from cryoseg.models.classical import ClassicalSegmenter
    from cryoseg.models.filterbank import FilterBankConfig

    default = FilterBankConfig()
    fb = get_spec("filterbank")
    assert (fb.patch_size, fb.feature_dim) == (default.stride, default.n_channels)
    emb = ClassicalSegmenter().embed(np.zeros((6, 9), np.float32))
    assert get_spec("classical").feature_dim == len(emb.data) and get_spec("classical").patch_size == 1
    from cryoseg.models.compact_features import CompactFeaturesConfig

    compact = get_spec("compact-features")
    assert (compact.patch_size, compact.feature_dim) == (CompactFeaturesConfig().stride, CompactFeaturesConfig().dim)
    image = np.random.default_rng(0).random((64, 64))
    for name in TINY_CONFIGS:
        spec = get_spec(name)
        if spec.kind == "features":
            fm = load_feature_extractor(name).extract(image)
            assert fm.features.shape[1:] == (spec.feature_dim, 64 // spec.patch_size, 64 // spec.patch_size), name
        else:
            seg = load_segmenter(name)
            assert seg.input_size == spec.input_size, name
            grid = seg.embedding_arrays(seg.embed(image))["image_embeddings"].shape
            assert grid == (1, spec.feature_dim, 64 // spec.patch_size, 64 // spec.patch_size), name
    # diffusion: patch = the VAE's downsampling, feature_dim = affinity row length of an input_size tile
    from cryoseg.models.diffusion_configs import SD_V14_VAE, TINY_SD_VAE
    from cryoseg.unsup.affinity import affinity_source

    for name, vae in (("stable-diffusion-v1-4", SD_V14_VAE), ("tiny-sd", TINY_SD_VAE)):
        spec = get_spec(name)
        assert (2 ** (len(vae["block_out_channels"]) - 1), vae["sample_size"]) == (spec.patch_size, spec.input_size)
        assert (spec.input_size // spec.patch_size) ** 2 == spec.feature_dim, name
    tiny_sd = get_spec("tiny-sd")
    h, w = affinity_source("tiny-sd").grid(tiny_sd.input_size)
    assert h * w == tiny_sd.feature_dim and h == tiny_sd.input_size // tiny_sd.patch_size


def test_unknown_name_lists_close_names():
    with pytest.raises(UnknownModelError) as info:
        get_spec("sam-vit-bb")
    message = str(info.value)
    assert "'sam-vit-bb'" in message and "sam-vit-b" in message and "\n" not in message
    with pytest.raises(UnknownModelError, match="cryoseg models"):
        load_segmenter("zzz")


def test_wrong_kind_is_refused():
    with pytest.raises(InputError, match="'tiny-dinov2' is a feature extractor"):
        load_segmenter("tiny-dinov2")
    with pytest.raises(InputError, match="'classical' is a promptable segmenter"):
        load_feature_extractor("classical")
    with pytest.raises(InputError, match="'tiny-sd' is a diffusion model, used as an attention-affinity source"):
        load_feature_extractor("tiny-sd")


def test_weight_free_defaults_are_registered_and_lazy():
    from cryoseg.models.classical import ClassicalSegmenter
    from cryoseg.models.filterbank import FilterBankExtractor

    assert isinstance(load_segmenter("classical"), ClassicalSegmenter)
    assert isinstance(load_feature_extractor("filterbank"), FilterBankExtractor)
    with pytest.raises(InputError, match="weight-free"):
        load_segmenter("classical", weights="/some/folder")


def test_import_does_not_pull_torch():
    code = ("import sys; import cryoseg.models, cryoseg.cli.models; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # the whole CLI, as `cryoseg --help` and `cryoseg models` run it
    code = ("import sys; from cryoseg.cli.main import main; rc = main(['--help']); rc |= main(['models']); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad or rc else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# --- finding weights --------------------------------------------------------------------------------------------


def test_missing_default_weights_say_where_and_how(env):
    with pytest.raises(WeightsNotFoundError) as info:
        load_segmenter("sam-vit-b")
    message = str(info.value)
    assert "\n" not in message
    for part in ["model 'sam-vit-b'", str(env / "hub" / "models--facebook--sam-vit-base"),
                 str(env / "home" / "checkpoints" / "sam_vit_b_01ec64.pth"), "hf download facebook/sam-vit-base",
                 "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"]:
        assert part in message, part


def test_hub_id_not_in_cache_offline_is_a_quick_clear_error(env, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(WeightsNotFoundError, match="someorg/tiny-sam is not in the local cache"):
        load_segmenter("tiny-sam", weights="someorg/tiny-sam")
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE is set"):
        load_segmenter("tiny-sam", weights="someorg/tiny-sam", download=True)
    with pytest.raises(WeightsNotFoundError, match="dinov2-vits14"):
        load_feature_extractor("dinov2-vits14")
    assert _files(env / "hub") == []  # nothing was created in the cache


def test_model_found_in_the_hub_cache_by_default(env):
    snap = make_hub_snapshot(env / "hub", "facebook/sam-vit-base", build_tiny_model("tiny-sam", seed=3))
    seg = load_segmenter("sam-vit-b")  # the registry's hub id, found in the cache (a tiny stand-in here)
    pred = seg.predict(seg.embed(np.random.default_rng(0).random((30, 40))), np.array([[[5.0, 5.0]]]),
                       np.array([[1]]))
    assert pred.masks.shape == (1, 1, 30, 40)
    sha = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
    assert seg.signature()["weights"] == f"sha256:{sha}" and seg.signature()["name"] == "sam-vit-b"
    status = {s.spec.name: s for s in list_models()}
    assert status["sam-vit-b"].present and str(snap) in status["sam-vit-b"].where
    assert not status["sam-vit-l"].present
    # the same snapshot by explicit hub id
    assert load_segmenter("tiny-sam", weights="facebook/sam-vit-base").signature()["weights"] == f"sha256:{sha}"


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_hub_cache_under_hf_home_is_found_and_absent_models_fail_fast(tmp_path, monkeypatch, no_network):
    """The standard cache layout under $HF_HOME/hub (no HF_HUB_CACHE set), offline or not, never the network."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("CRYOSEG_HOME", str(tmp_path / "home"))
    snap = make_hub_snapshot(tmp_path / "hf" / "hub", "facebook/dinov2-small", build_tiny_model("tiny-dinov2", seed=5))
    ext = load_feature_extractor("dinov2-vits14")
    # the registry's input size (518, rounded down to the stand-in's whole 8-pixel patches) and the folder's weights
    assert ext.extract(np.random.default_rng(0).random((40, 24))).features.shape == (1, 32, 64, 38)
    sha = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
    assert ext.signature()["weights"] == f"sha256:{sha}"
    status = {s.spec.name: s for s in list_models()}
    assert status["dinov2-vits14"].present and str(snap) in status["dinov2-vits14"].where
    assert not status["dinov2-vitb14"].present
    assert str(tmp_path / "hf" / "hub" / "models--facebook--dinov2-base") in status["dinov2-vitb14"].where
    for offline in ("0", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        with pytest.raises(WeightsNotFoundError, match="dinov2-vitb14.*models--facebook--dinov2-base.*hf download"):
            load_feature_extractor("dinov2-vitb14")
    # a refs/main pointing at a missing snapshot is not a model
    (snap.parent.parent / "refs" / "main").write_text("f" * 40)
    with pytest.raises(WeightsNotFoundError, match="dinov2-vits14"):
        load_feature_extractor("dinov2-vits14")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE is set"):
        load_feature_extractor("dinov2-vits14", download=True)


def test_messages_for_models_without_a_hub_id_read_well(env):
    with pytest.raises(WeightsNotFoundError) as info:
        load_segmenter("tiny-sam", weights=env / "nowhere")
    assert "to get them: pass weights=<folder|file.pth|hub id>" in str(info.value)


def test_original_checkpoint_in_the_default_folder(env):
    folder = env / "home" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "sam_vit_l_0b3195.pth").write_bytes(b"placeholder")
    loc = locate_weights(get_spec("sam-vit-l"))
    assert loc.kind == "original" and loc.path == folder / "sam_vit_l_0b3195.pth"
    # a bare file name is looked up in the same folder
    assert locate_weights(get_spec("sam-vit-l"), "sam_vit_l_0b3195.pth").path == folder / "sam_vit_l_0b3195.pth"
    status = {s.spec.name: s for s in list_models()}
    assert status["sam-vit-l"].present and "sam_vit_l_0b3195.pth" in status["sam-vit-l"].where


@pytest.mark.parametrize(("setup", "error", "message"), [
    (lambda d: None, WeightsNotFoundError, "no file or folder"),
    (lambda d: d.mkdir(), WeightsNotFoundError, "has no config.json"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"model_type": "sam"}')), WeightsNotFoundError,
     "no \\*.safetensors"),
    (lambda d: (d.mkdir(), (d / "weights.npz").write_bytes(b"x")), WeightsNotFoundError, "has no config.json"),
])
def test_bad_weight_folders(env, setup, error, message):
    target = env / "weights"
    setup(target)
    before = _files(env)
    with pytest.raises(error, match=message) as info:
        load_segmenter("tiny-sam", weights=target)
    assert "tiny-sam" in str(info.value) and "\n" not in str(info.value)
    assert _files(env) == before


def test_wrong_architecture_and_corrupt_weights(env):
    dino = env / "dino"
    build_tiny_model("tiny-dinov2").save_pretrained(dino)
    with pytest.raises(InputError, match="holds a 'dinov2' model but 'tiny-sam' needs 'sam'"):
        load_segmenter("tiny-sam", weights=dino)
    broken = env / "broken"
    build_tiny_model("tiny-sam").save_pretrained(broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])  # truncated download
    with pytest.raises(CorruptFileError, match="cannot load model 'tiny-sam' from .*broken"):
        load_segmenter("tiny-sam", weights=broken)
    other = env / "notes.txt"
    other.write_text("hello")
    with pytest.raises(InputError, match="not an original .pth checkpoint"):
        load_segmenter("tiny-sam", weights=other)


def test_incomplete_folder_weights_are_refused(env):
    """A folder whose weights miss parameters must not load with silently random ones."""
    from safetensors.torch import load_file, save_file

    folder = env / "partial"
    build_tiny_model("tiny-dinov2").save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    state.pop(next(k for k in state if "layernorm" in k))
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="do not fit model 'tiny-dinov2'.*missing"):
        load_feature_extractor("tiny-dinov2", weights=folder)


def test_weights_hash_is_cached_by_size_and_mtime(env):
    folder = env / "m"
    build_tiny_model("tiny-mae").save_pretrained(folder)
    weights_mod._memo.clear()
    first = load_feature_extractor("tiny-mae", weights=folder).signature()["weights"]
    cache = json.loads((env / "home" / "weights-sha256.json").read_text())
    key = str((folder / "model.safetensors").resolve())
    assert "sha256:" + cache[key]["sha256"] == first
    # a second process would trust the cache for an unchanged file: prove it is read
    cache[key]["sha256"] = "f" * 64
    (env / "home" / "weights-sha256.json").write_text(json.dumps(cache))
    weights_mod._memo.clear()
    assert load_feature_extractor("tiny-mae", weights=folder).signature()["weights"] == "sha256:" + "f" * 64


# --- device and precision ---------------------------------------------------------------------------------------


def test_device_and_precision_policy(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    auto = resolve_device(None)
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("fp32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cuda")) == torch.float16
    with pytest.raises(InputError, match="needs a GPU"):
        resolve_dtype("bf16", torch.device("cpu"))
    with pytest.raises(InputError, match="unknown precision"):
        resolve_dtype("fp8", torch.device("cpu"))
    with pytest.raises(InputError, match="unknown device|unsupported device"):
        resolve_device("tpu")
    with monkeypatch.context() as m:  # a machine without CUDA, whatever this one has
        m.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(InputError, match="CUDA is not available"):
            load_segmenter("tiny-sam", device="cuda")
    with pytest.raises(InputError, match="needs a GPU"):
        load_feature_extractor("tiny-dinov2", device="cpu", dtype="fp16")


# --- cryoseg models ---------------------------------------------------------------------------------------------


def test_cli_models_table_is_honest(env, capsys, monkeypatch):
    from cryoseg.cli.main import main

    monkeypatch.setenv("COLUMNS", "80")  # it must read well in an 80-column terminal: one row per model
    make_hub_snapshot(env / "hub", "facebook/dinov2-small", build_tiny_model("tiny-dinov2"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    found = [line for line in out.splitlines() if line.startswith("dinov2-vits14: ")]
    assert len(found) == 1 and "models--facebook--dinov2-small" in found[0]  # a path too long to wrap well
    assert max(len(line) for line in out.splitlines() if line not in found) <= 80
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()
            if line.split() and line.split()[0] in REGISTRY}
    assert set(rows) == set(REGISTRY)
    assert rows["tiny-sam"] == "segmenter sam built-in none"
    assert rows["classical"].startswith("segmenter classical built-in")
    assert rows["sam-vit-b"] == "segmenter sam missing apache-2.0"
    assert rows["dinov2-vits14"] == "features dinov2 hub cache apache-2.0"
    assert rows["tiny-sd"] == "diffusion stable-diffusion built-in none"
    assert rows["stable-diffusion-v1-4"] == "diffusion stable-diffusion missing CreativeML"  # licence wraps
    assert "sam_vit_b_01ec64.pth" not in out and str(env) in out  # the folders looked in, once, not per model
    assert main(["models", "--kind", "features"]) == 0
    out = capsys.readouterr().out
    assert "dinov2-vits14" in out and "sam-vit-h " not in out
    assert main(["models", "--kind", "diffusion"]) == 0
    out = capsys.readouterr().out
    assert "tiny-sd " in out and "stable-diffusion-v1-4 " in out and "dinov2-vits14" not in out
    assert main(["models", "--kind", "bogus"]) == 2
    assert "cryoseg: error: --kind must be" in capsys.readouterr().err
