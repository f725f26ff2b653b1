"""Attention-affinity sources: the weight-free filter-bank affinity, the diffusion self-attention (tiny-sd), the
factory's checks, pipeline folders (user folder and hub cache), and the empty prompt's token ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cryoseg.errors import InputError, MissingDependencyError, UnknownModelError, WeightsNotFoundError
from cryoseg.models.diffusion_configs import TINY_SD_UNET, build_random_diffusion, save_pipeline_folder
from cryoseg.models.registry import get_spec, list_models
from cryoseg.unsup import diffusion as diffusion_mod
from cryoseg.unsup.affinity import (
    AffinitySource,
    DiffusionAttentionConfig,
    FeatureAffinity,
    FeatureAffinityConfig,
    affinity_source,
    affinity_source_names,
    check_affinity,
)
from cryoseg.unsup.diffusion import empty_prompt_ids, resample_attention, self_attention_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SD = "stable-diffusion-v1-4"


def _two_textures(size: int = 128, seed: int = 0) -> np.ndarray:
    """Left half flat grey, right half fine vertical stripes (period 4 px), light noise; in [0, 1]."""
    rng = np.random.default_rng(seed)
    x = np.arange(size)
    tile = np.full((size, size), 0.5, np.float32)
    tile[:, size // 2:] += 0.4 * np.sin(x[size // 2:] * np.pi / 2).astype(np.float32)
    tile += rng.normal(0, 0.02, tile.shape).astype(np.float32)
    return np.clip(tile, 0, 1)


def _disc(size: int = 128, radius: float = 32, seed: int = 0) -> np.ndarray:
    """A bright disc on a dark background, light noise; in [0, 1]."""
    yy, xx = np.mgrid[:size, :size]
    tile = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2, 0.85, 0.15).astype(np.float32)
    tile += np.random.default_rng(seed).normal(0, 0.02, tile.shape).astype(np.float32)
    return np.clip(tile, 0, 1)


def _ratio(affinity: np.ndarray, region: np.ndarray, other: np.ndarray) -> float:
    """Mean affinity within `region` over mean affinity from `region` to `other` (boolean cell masks)."""
    return float(affinity[np.ix_(region, region)].mean() / affinity[np.ix_(region, other)].mean())


def _rows_stochastic(affinity: np.ndarray, n: int) -> None:
    assert affinity.shape == (n, n) and affinity.dtype == np.float32
    assert np.all(np.isfinite(affinity)) and affinity.min() >= 0
    np.testing.assert_allclose(affinity.sum(axis=1), 1.0, atol=1e-5)
    check_affinity(affinity, (int(np.sqrt(n)), int(np.sqrt(n))))


@pytest.fixture(scope="module")
def tiny_sd():
    return affinity_source("tiny-sd")


@pytest.fixture()
def env(isolated_home: Path, monkeypatch) -> Path:
    """Empty cryoseg home and hub cache; offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (isolated_home / "hub").mkdir()
    return isolated_home


# --- the weight-free source -----------------------------------------------------------------------------------------


def test_filterbank_separates_two_textures():
    source = affinity_source()
    assert isinstance(source, FeatureAffinity) and isinstance(source, AffinitySource)
    assert source.name == "filterbank" and source.grid(512) == (64, 64) and source.grid(128) == (16, 16)
    affinity = source.affinity(_two_textures())
    _rows_stochastic(affinity, 16 * 16)
    right = np.zeros((16, 16), bool)
    right[:, 8:] = True  # the boundary (x = 64) falls between cells
    right = right.ravel()
    assert _ratio(affinity, right, ~right) > 100  # measured ~7e4
    assert _ratio(affinity, ~right, right) > 100

    affinity = source.affinity(_disc())
    gy, gx = np.mgrid[:16, :16]
    dist = np.hypot(gy + 0.5 - 8, gx + 0.5 - 8) * 8  # cell centre to disc centre, in pixels
    inside, outside = (dist < 24).ravel(), (dist > 40).ravel()  # cells clear of the rim
    assert _ratio(affinity, inside, outside) > 100 and _ratio(affinity, outside, inside) > 100
    json.dumps(source.signature())
    assert source.signature()["weights"] == "built-in" and source.signature()["kernel"] == "cosine"


def test_filterbank_gaussian_kernel_also_separates():
    affinity = FeatureAffinity(FeatureAffinityConfig(kernel="gaussian")).affinity(_two_textures())
    _rows_stochastic(affinity, 256)
    right = np.zeros((16, 16), bool)
    right[:, 8:] = True
    assert _ratio(affinity, right.ravel(), ~right.ravel()) > 2  # separates, much less sharply than cosine (~7e4)


def test_filterbank_spatial_term_favours_near_cells_but_keeps_far_same_texture_linked():
    rng = np.random.default_rng(1)
    noise = np.clip(0.5 + 0.15 * rng.normal(size=(128, 128)), 0, 1).astype(np.float32)
    gy, gx = np.divmod(np.arange(256), 16)
    dist = np.hypot(gy[:, None] - gy[None], gx[:, None] - gx[None])
    near, far = (dist > 0) & (dist <= 1.5), dist >= 10
    with_term = FeatureAffinity().affinity(noise)
    without = FeatureAffinity(FeatureAffinityConfig(spatial_weight=0)).affinity(noise)
    gain = lambda a: a[near].mean() / a[far].mean()  # noqa: E731
    assert gain(with_term) > 2 * gain(without)

    # stripes at both edges, flat in the middle: an edge cell's row reaches the far edge more than the middle
    tile = _two_textures()
    tile[:, :32] = tile[:, 96:][:, ::-1]
    affinity = FeatureAffinity().affinity(tile)
    cols = np.tile(np.arange(16), 16)
    left, middle, right = cols < 3, (cols >= 6) & (cols < 10), cols >= 13
    assert affinity[np.ix_(left, right)].mean() > 5 * affinity[np.ix_(left, middle)].mean()


def test_zoom_scales_the_filters_to_the_enlarged_slice():
    # a pattern enlarged 4x and described with zoom 4 looks like the original to the filter bank: the same
    # cells link (compare on the 4x coarser grid of the enlarged tile, where both have 8 x 8 cells)
    rng = np.random.default_rng(2)
    small = np.clip(0.5 + 0.2 * rng.normal(size=(64, 64)), 0, 1).astype(np.float32)
    from scipy import ndimage
    small = np.clip(ndimage.gaussian_filter(small, 2) * 3 - 1, 0, 1).astype(np.float32)
    big = np.kron(small, np.ones((4, 4), np.float32))
    source = FeatureAffinity()
    assert source._extractor(4.0).config.sigmas == tuple(4 * s for s in source.config.filterbank.sigmas)
    plain = source.features(small)
    zoomed = source.features(big, zoom=4.0).reshape(32, 32, -1)[::4, ::4].reshape(64, -1)
    unzoomed = source.features(big).reshape(32, 32, -1)[::4, ::4].reshape(64, -1)
    corr = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    assert corr(zoomed, plain) > corr(unzoomed, plain) + 0.2
    with pytest.raises(InputError, match="zoom"):
        source.affinity(big, zoom=0.0)


@pytest.mark.parametrize("tile", [np.zeros((32, 48)), np.zeros((2, 32, 32)), np.full((32, 32), np.nan),
                                  np.full((32, 32), 2.0), np.zeros((32, 32), complex)])
def test_bad_tiles_are_refused(tile, tiny_sd):
    with pytest.raises(InputError):
        FeatureAffinity().affinity(tile)
    with pytest.raises(InputError):
        tiny_sd.affinity(tile)


# --- the diffusion source (tiny-sd) ---------------------------------------------------------------------------------


def test_tiny_sd_shape_rows_and_determinism(tiny_sd):
    spec = get_spec("tiny-sd")
    side = spec.input_size // spec.patch_size
    assert tiny_sd.grid(spec.input_size) == (side, side) and side * side == spec.feature_dim
    tile = _disc(64, 20)
    first = tiny_sd.affinity(tile)
    _rows_stochastic(first, 64)
    assert np.array_equal(tiny_sd.affinity(tile), first)  # the noise is reseeded per tile
    assert np.array_equal(affinity_source("tiny-sd").affinity(tile), first)  # a fresh build: same weights, noise
    other_seed = affinity_source("tiny-sd", seed=1).affinity(tile)
    assert not np.allclose(other_seed, first, atol=1e-6)  # the seed reaches the noise
    assert tiny_sd.grid(128) == (16, 16)
    _rows_stochastic(tiny_sd.affinity(_two_textures(128)), 256)
    with pytest.raises(InputError, match="multiple of 32"):
        tiny_sd.affinity(np.zeros((48, 48), np.float32))
    json.dumps(tiny_sd.signature())


def test_tiny_sd_hooks_catch_only_decoder_self_attention_and_are_removed(tiny_sd):
    unet = tiny_sd.unet
    n_attention_up_blocks = sum(kind.startswith("CrossAttn") for kind in TINY_SD_UNET["up_block_types"])
    expected = n_attention_up_blocks * (TINY_SD_UNET["layers_per_block"] + 1)  # one transformer block each
    tile = _disc(64, 20)
    first = tiny_sd.affinity(tile)
    names = [name for name, _ in tiny_sd.last_caught]
    assert len(names) == expected == 4
    assert all(n.startswith("up_blocks.") and n.endswith(".attn1") for n in names)
    assert {grid for _, grid in tiny_sd.last_caught} == {(8, 8), (4, 4)}
    assert set(names) == set(tiny_sd.layers) == {n for n, _ in self_attention_layers(unet)}
    # the UNet has self-attention outside the decoder too (down and mid blocks), which is not caught
    all_self = [n for n, m in unet.named_modules() if n.endswith("attn1")]
    assert len(all_self) > expected
    for module in unet.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not getattr(module, "_forward_hooks_with_kwargs", {})
    assert np.array_equal(tiny_sd.affinity(tile), first) and len(tiny_sd.last_caught) == expected


def test_tiny_sd_affinity_is_the_weighted_mean_of_diffusers_own_attention_maps():
    """Recompute the expected affinity from the probabilities diffusers' classic AttnProcessor computes itself."""
    from diffusers.models.attention_processor import AttnProcessor

    source = affinity_source("tiny-sd", voxel_size_nm=0.5)
    assert source.timestep == 136
    source.unet.set_attn_processor(AttnProcessor())
    recorded: list[tuple[str, torch.Tensor]] = []
    for name, module in self_attention_layers(source.unet):
        def scores(query, key, attention_mask=None, _m=module, _n=name):
            probs = type(_m).get_attention_scores(_m, query, key, attention_mask)
            recorded.append((_n, probs.detach().clone()))
            return probs
        module.get_attention_scores = scores
    tile = _two_textures(64)
    got = source.affinity(tile)
    assert [n for n, _ in recorded] == [n for n, _ in source.last_caught]
    total, weight = torch.zeros(64, 64), 0.0
    for (_, probs), (_, grid) in zip(recorded, source.last_caught):
        w = grid[0] / 8  # layer weighting "resolution": the grid's side relative to the finest (8)
        total += w * resample_attention(probs.mean(dim=0), grid, (8, 8))
        weight += w
    np.testing.assert_allclose(got, (total / weight).numpy(), atol=1e-6)
    # with equal weights the result differs (the two resolutions do not agree)
    equal = affinity_source("tiny-sd", voxel_size_nm=0.5, config=DiffusionAttentionConfig(layer_weighting="equal"))
    assert not np.allclose(equal.affinity(tile), got, atol=1e-5)


def test_resample_attention():
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.random((16, 16)).astype(np.float32))
    probs /= probs.sum(dim=1, keepdim=True)
    same = resample_attention(probs, (4, 4), (4, 4))
    assert torch.equal(same, probs)
    up = resample_attention(probs, (4, 4), (8, 8))
    assert up.shape == (64, 64) and torch.allclose(up.sum(dim=1), torch.ones(64), atol=1e-5)
    uniform = resample_attention(torch.full((16, 16), 1 / 16), (4, 4), (8, 8))
    assert torch.allclose(uniform, torch.full((64, 64), 1 / 64), atol=1e-6)
    # a query attending to one coarse cell (1, 2) only: its fine queries put most mass on that cell's 2 x 2 block
    delta = torch.zeros(16, 16)
    delta[:, 1 * 4 + 2] = 1
    fine = resample_attention(delta, (4, 4), (8, 8)).reshape(64, 8, 8)
    assert float(fine[:, 2:4, 4:6].sum(dim=(1, 2)).min()) > 0.5


def test_timestep_from_the_voxel_size():
    cfg = DiffusionAttentionConfig()
    assert cfg.timestep_for(None) == 50 and cfg.timestep_for(1.36) == 50 and cfg.timestep_for(0.5) == 136
    assert cfg.timestep_for(0.01) == 999 and cfg.timestep_for(100.0) == 1  # clamped to [1, 999]
    assert DiffusionAttentionConfig(timestep=7).timestep_for(0.5) == 7
    for bad in (dict(timestep=0), dict(layer_weighting="max"), dict(noise_nm=-1.0)):
        with pytest.raises(InputError):
            DiffusionAttentionConfig(**bad)
    for voxel in (0, -1.0, float("nan"), "big"):
        with pytest.raises(InputError, match="voxel_size_nm"):
            affinity_source("tiny-sd", voxel_size_nm=voxel)


def test_empty_prompt_ids_match_the_clip_tokenizer(tmp_path):
    from transformers import CLIPTextConfig, CLIPTokenizer

    sd_legacy = CLIPTextConfig(vocab_size=49408, bos_token_id=0, eos_token_id=2)  # as SD v1.4's config.json
    assert empty_prompt_ids(sd_legacy) == [49406] + [49407] * 76
    assert empty_prompt_ids(CLIPTextConfig()) == [49406] + [49407] * 76
    tiny = build_random_diffusion().text_encoder.config
    ids = empty_prompt_ids(tiny)
    # a real CLIP tokenizer on a vocabulary whose last two ids are the special tokens, padding with <|endoftext|>
    vocab = {f"t{i}</w>": i for i in range(62)} | {"<|startoftext|>": 62, "<|endoftext|>": 63}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), pad_token="<|endoftext|>")
    assert tokenizer("", padding="max_length", max_length=77).input_ids == ids == [62] + [63] * 76
    # a pipeline's tokenizer folder wins, with its own pad token
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "t0</w>"}}))
    assert empty_prompt_ids(tiny, tmp_path) == [62, 63] + [0] * 75


# --- the factory ----------------------------------------------------------------------------------------------------


def test_factory_checks_before_loading(env, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("loaded a model before the checks failed")

    monkeypatch.setattr(diffusion_mod, "load_diffusion_attention", no_loading)
    assert affinity_source_names() == ["filterbank", SD, "tiny-sd"]
    with pytest.raises(UnknownModelError, match="cryoseg models"):
        affinity_source("stable-diffusion-v9")
    with pytest.raises(InputError, match="'sam-vit-b' is a promptable segmenter, not an affinity source"):
        affinity_source("sam-vit-b")
    with pytest.raises(InputError, match="'tiny-dinov2' is a feature extractor, not an affinity source"):
        affinity_source("tiny-dinov2")
    with pytest.raises(InputError, match="weight-free"):
        affinity_source("filterbank", weights=env / "somewhere")
    with pytest.raises(InputError, match="needs a GPU"):
        affinity_source("tiny-sd", dtype="fp16")
    with pytest.raises(InputError, match="unknown device"):
        affinity_source("tiny-sd", device="tpu")
    with pytest.raises(InputError, match="DiffusionAttentionConfig"):
        affinity_source("tiny-sd", config=FeatureAffinityConfig())
    with pytest.raises(WeightsNotFoundError) as info:
        affinity_source(SD)
    message = str(info.value)
    assert "\n" not in message
    for part in (f"model '{SD}'", str(env / "hub" / "models--CompVis--stable-diffusion-v1-4"),
                 "hf download CompVis/stable-diffusion-v1-4", "model_index.json", "weights=<diffusers pipeline"):
        assert part in message, part
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as where diffusers is not installed
    with pytest.raises(MissingDependencyError) as info:
        affinity_source("tiny-sd")
    assert "diffusers" in str(info.value) and "cryoseg[diffusion]" in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(affinity_source("filterbank"), FeatureAffinity)  # the weight-free default needs none of it


def test_pipeline_folder_and_hub_cache_give_the_built_in_affinity(env, tiny_sd):
    folder = save_pipeline_folder(build_random_diffusion(), env / "sd")
    tile = _disc(64, 20)
    expected = tiny_sd.affinity(tile)
    from_folder = affinity_source(SD, weights=folder)
    assert np.array_equal(from_folder.affinity(tile), expected)
    signature = from_folder.signature()
    assert signature["weights"].startswith("sha256:") and signature["weights_path"] == str(folder)
    assert signature["name"] == SD and tiny_sd.signature()["weights"].startswith("builtin:tiny-sd:seed0:")
    # the same pipeline as a hub-cache snapshot of CompVis/stable-diffusion-v1-4, found without `weights`
    repo = env / "hub" / "models--CompVis--stable-diffusion-v1-4"
    save_pipeline_folder(build_random_diffusion(), repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    cached = affinity_source(SD)
    assert np.array_equal(cached.affinity(tile), expected)
    assert str(repo / "snapshots" / COMMIT) in cached.signature()["weights_path"]
    status = {s.spec.name: s for s in list_models()}
    assert status[SD].present and status[SD].source == "hub cache"
    assert status["tiny-sd"].source == "built-in"


def _drop(folder: Path, what: str) -> None:
    import shutil

    target = folder / what
    shutil.rmtree(target) if target.is_dir() else target.unlink()


@pytest.mark.parametrize(("missing", "message"), [
    ("unet", "has no unet/ subfolder"),
    ("model_index.json", "has no model_index.json"),
    ("vae/config.json", "vae has no config.json"),
    ("text_encoder/model.safetensors", "text_encoder has no weights"),
])
def test_incomplete_pipeline_folders_are_one_clear_error(env, missing, message):
    folder = save_pipeline_folder(build_random_diffusion(), env / "sd")
    _drop(folder, missing)
    with pytest.raises(WeightsNotFoundError, match=message) as info:
        affinity_source(SD, weights=folder)
    assert "\n" not in str(info.value) and f"model '{SD}'" in str(info.value)


def test_wrong_architecture_in_a_pipeline_folder(env):
    folder = save_pipeline_folder(build_random_diffusion(), env / "sd")
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps(config | {"_class_name": "UNet2DModel"}))
    with pytest.raises(InputError, match="holds a 'UNet2DModel' but model 'stable-diffusion-v1-4' needs"):
        affinity_source(SD, weights=folder)


def test_importing_the_factory_loads_no_torch():
    code = ("import sys; import cryoseg.unsup.affinity as a; a.DiffusionAttentionConfig(); a.FeatureAffinityConfig(); "
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_requested_pipeline_download_fetches_only_the_files_loaded():
    from fnmatch import fnmatch

    from cryoseg.models.weights import _download_patterns

    repo = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "sd-v1-4.ckpt",
            "safety_checker/config.json", "safety_checker/model.safetensors", "text_encoder/config.json",
            "text_encoder/model.safetensors", "text_encoder/pytorch_model.bin", "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_pytorch_model.bin",
            "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"]
    safetensors, binaries = _download_patterns(get_spec(SD))  # huggingface_hub matches allow_patterns with fnmatch
    fetched = {f for f in repo if any(fnmatch(f, pattern) for pattern in safetensors)}
    assert fetched == {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                       "text_encoder/config.json", "text_encoder/model.safetensors", "unet/config.json",
                       "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                       "vae/diffusion_pytorch_model.safetensors"}
    assert {f for f in repo if any(fnmatch(f, pattern) for pattern in binaries)} >= {
        "text_encoder/pytorch_model.bin", "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin"}
