"""`SliceEmbedder`: each slice embedded once, reused from memory and from the signed on-disk cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import zarr

from cryoseg.embed import SliceEmbedder
from cryoseg.errors import InputError
from cryoseg.models.classical import ClassicalConfig, ClassicalSegmenter

SHAPE = (6, 20, 16)


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)



def _only_store(cache_dir, prefix):
    """The one store of this kind and model in `cache_dir` (its name ends in the volume's hash)."""
    (store,) = cache_dir.glob(f"{prefix}-*.zarr")
    return store

def test_each_slice_is_embedded_once_in_memory():
    vol = _volume()
    emb = SliceEmbedder(ClassicalSegmenter(), vol)
    a = emb.get("z", 2)
    assert emb.get("z", 2) is a and emb.n_computed == 1
    assert a.image_shape == (20, 16)
    assert emb.get("y", 2).image_shape == (6, 16) and emb.get("x", 2).image_shape == (6, 20)
    assert emb.n_computed == 3
    direct = ClassicalSegmenter().embed(vol[:, :, 2])
    np.testing.assert_array_equal(emb.get("x", 2).data["smooth"], direct.data["smooth"])


def test_second_embedder_reads_the_disk_cache_and_computes_nothing(tmp_path):
    vol = _volume()
    first = SliceEmbedder(ClassicalSegmenter(), vol, cache_dir=tmp_path)
    a = first.get("y", 5)
    second = SliceEmbedder(ClassicalSegmenter(), vol, cache_dir=tmp_path)
    b = second.get("y", 5)
    assert first.n_computed == 1 and second.n_computed == 0 and second.n_loaded == 1
    np.testing.assert_array_equal(a.data["smooth"], b.data["smooth"])  # fresh results are float16-rounded too
    assert b.image_shape == (6, 16)
    second.get("y", 4)
    assert second.n_computed == 1
    arr = zarr.open_group(str(_only_store(tmp_path, "embeddings-classical")), mode="r")["y"]["data"]["smooth"]
    assert arr.dtype == np.float16 and arr.chunks == (1, 6, 16) and arr.shape == (20, 6, 16)


def test_changed_segmenter_settings_rebuild_the_cache_and_say_why(tmp_path, caplog):
    vol = _volume()
    SliceEmbedder(ClassicalSegmenter(), vol, cache_dir=tmp_path).get("z", 0)
    other = SliceEmbedder(ClassicalSegmenter(ClassicalConfig(smoothing_sigma=2.5)), vol, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="cryoseg.embed"):
        other.get("z", 0)
    assert other.n_computed == 1 and "'smoothing_sigma' differs" in caplog.text


def test_prediction_only_settings_keep_the_cache(tmp_path):
    vol = _volume()
    SliceEmbedder(ClassicalSegmenter(), vol, cache_dir=tmp_path).get("z", 0)
    again = SliceEmbedder(ClassicalSegmenter(ClassicalConfig(min_contrast=5.0)), vol, cache_dir=tmp_path)
    again.get("z", 0)
    assert again.n_computed == 0


def test_another_volume_gets_its_own_store_and_evicts_nothing(tmp_path):
    SliceEmbedder(ClassicalSegmenter(), _volume(0), cache_dir=tmp_path).get("z", 0)
    other = SliceEmbedder(ClassicalSegmenter(), _volume(1), cache_dir=tmp_path)
    other.get("z", 0)
    assert other.n_computed == 1
    again = SliceEmbedder(ClassicalSegmenter(), _volume(0), cache_dir=tmp_path)
    again.get("z", 0)
    assert again.n_computed == 0 and again.n_loaded == 1
    assert len(list(tmp_path.glob("embeddings-classical-*.zarr"))) == 2


def test_memory_limit_drops_old_slices_but_never_embeds_twice(tmp_path):
    emb = SliceEmbedder(ClassicalSegmenter(), _volume(), cache_dir=tmp_path, max_in_memory=2)
    for i in range(4):
        emb.get("z", i)
    emb.get("z", 0)  # dropped from memory, read back from disk
    assert emb.n_computed == 4 and emb.n_loaded == 1


def test_a_byte_budget_spills_to_a_temporary_cache_and_never_embeds_twice():
    volume = _volume()
    one = SliceEmbedder(ClassicalSegmenter(), volume).get("z", 0)
    per_slice = sum(v.nbytes for v in ClassicalSegmenter().embedding_arrays(one).values())
    emb = SliceEmbedder(ClassicalSegmenter(), volume, max_bytes=3 * per_slice)
    for i in range(3):
        emb.get("z", i)
    assert emb.cache_dir is None  # within the budget: memory only
    for i in range(3, 6):
        emb.get("z", i)
    spill = emb.cache_dir
    assert spill is not None and spill.is_dir() and len(emb._memory) <= 3
    first = emb.get("z", 0)  # dropped from memory, read back from the temporary cache
    assert emb.n_computed == 6 and emb.n_loaded == 1
    for name, value in ClassicalSegmenter().embedding_arrays(first).items():  # float16 as stored
        assert np.allclose(value, ClassicalSegmenter().embedding_arrays(one)[name], rtol=1e-2, atol=1e-2)
    del emb
    import gc

    gc.collect()
    assert not spill.exists()


def test_bad_requests_are_rejected(tmp_path):
    emb = SliceEmbedder(ClassicalSegmenter(), _volume(), cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="outside view 'y'"):
        emb.get("y", 20)
    with pytest.raises(InputError, match="views"):
        emb.get("q", 0)
    assert emb.n_computed == 0 and not (tmp_path / "cache").exists()
    with pytest.raises(InputError, match="max_in_memory"):
        SliceEmbedder(ClassicalSegmenter(), _volume(), max_in_memory=3)
    with pytest.raises(InputError, match="3D"):
        SliceEmbedder(ClassicalSegmenter(), np.zeros((3, 3)))
    with pytest.raises(InputError, match="NaN"):
        SliceEmbedder(ClassicalSegmenter(), np.full((2, 4, 4), np.nan), cache_dir=tmp_path / "c2").get("z", 0)
    assert not (tmp_path / "c2").exists()
