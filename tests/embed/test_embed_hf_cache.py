"""The signed cache with transformers backends (tiny configs): patch resolution, reuse without model work,
and invalidation when the weights or the preprocessing change."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import zarr

from cryoseg.embed import SliceEmbedder, extract_view_features
from cryoseg.models import load_feature_extractor, load_segmenter
from cryoseg.models.tiny import build_tiny_model

SHAPE = (5, 40, 28)  # z, y, x


pytestmark = pytest.mark.usefixtures("one_torch_thread", "isolated_home")


def _volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


def _count_calls(monkeypatch, obj, attr: str) -> list[int]:
    calls: list[int] = []
    inner = getattr(obj, attr)
    monkeypatch.setattr(obj, attr, lambda *a, **k: calls.append(1) or inner(*a, **k))
    return calls



def _only_store(cache_dir, prefix):
    """The one store of this kind and model in `cache_dir` (its name ends in the volume's hash)."""
    (store,) = cache_dir.glob(f"{prefix}-*.zarr")
    return store

def test_sam2_embeddings_are_reused_from_disk_without_running_the_encoder(tmp_path, monkeypatch):
    vol = _volume()
    first = SliceEmbedder(load_segmenter("tiny-sam2"), vol, cache_dir=tmp_path)
    a = first.get("x", 3)  # an x slice: (Z, Y) = (5, 40)
    pts, labels = np.array([[[2.0, 20.0]]]), np.array([[1]])
    expected = first.segmenter.predict(a, pts, labels, multimask=True)

    seg = load_segmenter("tiny-sam2")
    encoder = _count_calls(monkeypatch, seg.model, "get_image_embeddings")
    second = SliceEmbedder(seg, vol, cache_dir=tmp_path)
    b = second.get("x", 3)
    assert encoder == [] and second.n_computed == 0 and second.n_loaded == 1
    got = seg.predict(b, pts, labels, multimask=True)
    np.testing.assert_array_equal(got.logits, expected.logits)  # the first run handed out what was stored
    np.testing.assert_array_equal(got.masks, expected.masks)

    group = zarr.open_group(str(_only_store(tmp_path, "embeddings-tiny-sam2")), mode="r")
    data = group["x"]["data"]
    assert sorted(data.array_keys()) == ["feat_s0", "feat_s1", "image_embeddings"]
    emb = data["image_embeddings"]
    # SAM 2 embeds at stride 16 of its 64-pixel input: 4 x 4 cells, one chunk per slice, float16
    assert emb.shape == (28, 1, 16, 4, 4) and emb.chunks == (1, 1, 16, 4, 4) and emb.dtype == np.float16
    assert np.nonzero(group["x"]["done"][:])[0].tolist() == [3]
    sig = group.attrs["signature"]["model"]
    assert sig["name"] == "tiny-sam2" and sig["weights"].startswith("builtin:tiny-sam2:")
    assert sig["preprocess"]["input_size"] == 64 and sig["preprocess"]["percentiles"] == [0.5, 99.5]


def test_other_weights_rebuild_the_embedding_cache_and_say_so(tmp_path, caplog):
    vol = _volume()
    SliceEmbedder(load_segmenter("tiny-sam"), vol, cache_dir=tmp_path / "cache").get("z", 0)
    folder = tmp_path / "retrained"
    build_tiny_model("tiny-sam", seed=9).save_pretrained(folder)
    other = SliceEmbedder(load_segmenter("tiny-sam", weights=folder), vol, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="cryoseg.embed"):
        other.get("z", 0)
    assert other.n_computed == 1
    assert "rebuilding" in caplog.text and "'weights' differs" in caplog.text


def test_features_are_cached_at_patch_resolution_and_reused(tmp_path, monkeypatch, caplog):
    vol = _volume()
    ext = load_feature_extractor("tiny-dinov2", batch_size=2)
    first = extract_view_features(vol, ext, views=("z", "y"), cache_dir=tmp_path, slices={"z": [1, 4], "y": [0]})
    # z slices (40, 28): longest side 64 -> 8 x round(44.8 / 8) = 8 x 6 patches of 8 pixels
    assert first["z"].features.shape == (2, 32, 8, 6) and first["z"].stride == pytest.approx((5.0, 28 / 6))
    arr = zarr.open_group(str(_only_store(tmp_path, "features-tiny-dinov2")), mode="r")["z"]["data"]["features"]
    assert arr.shape == (5, 32, 8, 6) and arr.chunks == (1, 32, 8, 6) and arr.dtype == np.float16

    again = load_feature_extractor("tiny-dinov2", batch_size=2)
    forward = _count_calls(monkeypatch, again.model, "forward")
    second = extract_view_features(vol, again, views=("z", "y"), cache_dir=tmp_path, slices={"z": [1, 4], "y": [0]})
    assert forward == [] and all(s.n_computed == 0 for s in second.values())
    np.testing.assert_array_equal(second["z"].features, first["z"].features)

    bigger = load_feature_extractor("tiny-dinov2", input_size=128)
    with caplog.at_level(logging.WARNING, logger="cryoseg.embed"):
        third = extract_view_features(vol, bigger, views=("z",), cache_dir=tmp_path, slices=[1])
    assert third["z"].n_computed == 1 and third["z"].features.shape == (1, 32, 16, 11)
    assert "'preprocess' differs" in caplog.text
