"""Per-view feature extraction and its signed zarr cache: reuse, partial extraction, invalidation, storage."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import zarr

from cryoseg.embed import ViewFeatureStack, extract_view_features
from cryoseg.embed.store import store_path, volume_hash
from cryoseg.errors import InputError
from cryoseg.geometry import view_slice
from cryoseg.io.volume import Volume
from cryoseg.models.base import FeatureExtractor, FeatureMap
from cryoseg.models.filterbank import FilterBankConfig, FilterBankExtractor

SMALL = FilterBankConfig(sigmas=(1.0, 2.0), stride=4, features=("gaussian", "log", "hessian"))
SHAPE = (10, 24, 20)  # z, y, x: every view has its own slice shape


class Counting(FeatureExtractor):
    """Wraps an extractor and counts the images it is asked to process."""

    def __init__(self, inner: FeatureExtractor, fail_after: int | None = None) -> None:
        self.inner, self.name, self.n_images, self.fail_after = inner, inner.name, 0, fail_after

    def extract(self, images: np.ndarray) -> FeatureMap:
        if self.fail_after is not None and self.n_images >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.n_images += len(images)
        return self.inner.extract(images)

    def signature(self):
        return self.inner.signature()


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


def _counting(config: FilterBankConfig = SMALL, **kw) -> Counting:
    return Counting(FilterBankExtractor(config), **kw)



def _store(cache_dir, vol, kind="features", name="filterbank"):
    return store_path(cache_dir, kind, name, volume_hash(vol))

def test_views_slice_the_volume_as_documented():
    vol = _volume()
    np.testing.assert_array_equal(view_slice(vol, "z", 3), vol[3])
    np.testing.assert_array_equal(view_slice(vol, "y", 5), vol[:, 5])
    np.testing.assert_array_equal(view_slice(vol, "x", 7), vol[:, :, 7])


def test_features_of_every_view_without_a_cache():
    vol = _volume()
    ex = _counting()
    out = extract_view_features(vol, ex, batch_size=4)
    assert list(out) == ["z", "y", "x"]
    c = SMALL.n_channels
    assert out["z"].features.shape == (10, c, 6, 5)   # slices (24, 20)
    assert out["y"].features.shape == (24, c, 3, 5)   # slices (10, 20)
    assert out["x"].features.shape == (20, c, 3, 6)   # slices (10, 24)
    assert isinstance(out["y"], ViewFeatureStack) and out["y"].image_shape == (10, 20)
    assert out["x"].stride == (4.0, 4.0) and out["z"].features.dtype == np.float32
    assert ex.n_images == 10 + 24 + 20
    direct = FilterBankExtractor(SMALL).extract(vol[:, 7][None]).features[0]
    np.testing.assert_allclose(out["y"].features[out["y"].position(7)], direct, atol=1e-5)
    np.testing.assert_allclose(out["y"].feature_map(7).features[0], direct, atol=1e-5)


def test_volume_objects_and_a_view_subset_are_accepted():
    vol = _volume()
    out = extract_view_features(Volume(vol, voxel_size=10.0), _counting(), views=("x",), slices=[0, 19])
    assert list(out) == ["x"]
    np.testing.assert_array_equal(out["x"].indices, [0, 19])


def test_second_run_does_no_model_work_and_gives_identical_features(tmp_path):
    vol = _volume()
    first_ex, second_ex = _counting(), _counting()
    first = extract_view_features(vol, first_ex, cache_dir=tmp_path, batch_size=3)
    second = extract_view_features(vol, second_ex, cache_dir=tmp_path, batch_size=3)
    assert first_ex.n_images == 54 and second_ex.n_images == 0
    assert all(s.n_computed == 0 for s in second.values())
    for v in "zyx":
        np.testing.assert_array_equal(first[v].features, second[v].features)
        # Cached values are float16-rounded float32, close to the uncached ones.
        np.testing.assert_allclose(first[v].features, extract_view_features(vol, _counting(), views=(v,))[v].features,
                                   atol=2e-2)


def test_only_requested_slices_are_computed_then_the_rest(tmp_path):
    vol = _volume()
    ex = _counting()
    part = extract_view_features(vol, ex, views=("z", "y"), cache_dir=tmp_path, slices={"z": [2, 5], "y": [1]})
    assert ex.n_images == 3
    np.testing.assert_array_equal(part["z"].indices, [2, 5])
    assert part["z"].features.shape[0] == 2
    ex2 = _counting()
    full = extract_view_features(vol, ex2, views=("z", "y"), cache_dir=tmp_path)
    assert ex2.n_images == (10 - 2) + (24 - 1)
    assert full["z"].n_computed == 8
    np.testing.assert_array_equal(full["z"].features[[2, 5]], part["z"].features)


def test_store_is_float16_with_one_chunk_per_slice_at_patch_resolution(tmp_path):
    vol = _volume()
    extract_view_features(vol, _counting(), views=("z",), cache_dir=tmp_path, slices=[1, 4])
    group = zarr.open_group(str(_store(tmp_path, vol)), mode="r")
    arr = group["z"]["data"]["features"]
    assert arr.dtype == np.float16
    assert arr.shape == (10, SMALL.n_channels, 6, 5)
    assert arr.chunks == (1, SMALL.n_channels, 6, 5)
    np.testing.assert_array_equal(np.nonzero(group["z"]["done"][:])[0], [1, 4])
    sig = group.attrs["signature"]
    assert sig["model"]["sigmas"] == [1.0, 2.0] and sig["data"]["shape"] == list(SHAPE)
    assert len(sig["data"]["blake2b"]) == 32 and "cryoseg_version" in sig


def test_each_volume_keeps_its_own_store_in_a_shared_cache(tmp_path):
    first = _volume(0)
    changed = _volume(0)
    changed[4, 3, 2] += 1.0  # one voxel differs: another tomogram
    for vol in (first, changed):
        ex = _counting()
        extract_view_features(vol, ex, views=("z",), cache_dir=tmp_path)
        assert ex.n_images == 10
    assert len(list(tmp_path.glob("features-filterbank-*.zarr"))) == 2
    again = _counting()
    extract_view_features(first, again, views=("z",), cache_dir=tmp_path)
    assert again.n_images == 0  # the second tomogram did not evict the first


def test_changed_extractor_parameters_rebuild_and_say_which(tmp_path, caplog):
    vol = _volume()
    extract_view_features(vol, _counting(), views=("z",), cache_dir=tmp_path)
    other = FilterBankConfig(sigmas=(1.0, 3.0), stride=4, features=("gaussian", "log", "hessian"))
    ex = _counting(other)
    with caplog.at_level(logging.WARNING, logger="cryoseg.embed"):
        out = extract_view_features(vol, ex, views=("z",), cache_dir=tmp_path)
    assert ex.n_images == 10 and out["z"].n_computed == 10
    assert "'sigmas' differs" in caplog.text and "rebuilding" in caplog.text


def test_other_cryoseg_version_rebuilds(tmp_path, caplog, monkeypatch):
    vol = _volume()
    extract_view_features(vol, _counting(), views=("z",), cache_dir=tmp_path, slices=[0])
    monkeypatch.setattr("cryoseg.embed.store.__version__", "999.0")
    ex = _counting()
    with caplog.at_level(logging.WARNING, logger="cryoseg.embed"):
        extract_view_features(vol, ex, views=("z",), cache_dir=tmp_path, slices=[0])
    assert ex.n_images == 1 and "cryoseg version differs" in caplog.text


def test_interrupted_run_recomputes_only_unfinished_slices(tmp_path):
    vol = _volume()
    crashing = _counting(fail_after=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_view_features(vol, crashing, views=("z",), cache_dir=tmp_path, batch_size=2)
    assert crashing.n_images == 4
    ex = _counting()
    out = extract_view_features(vol, ex, views=("z",), cache_dir=tmp_path, batch_size=2)
    assert ex.n_images == 6
    np.testing.assert_allclose(out["z"].features, extract_view_features(vol, _counting(), views=("z",))["z"].features,
                               atol=2e-2)


def test_store_without_signature_is_rebuilt(tmp_path, caplog):
    vol = _volume()
    extract_view_features(vol, _counting(), views=("z",), cache_dir=tmp_path, slices=[0])
    group = zarr.open_group(str(_store(tmp_path, vol)), mode="r+")
    group.attrs.pop("signature")  # as if the process died right after creating the store
    ex = _counting()
    with caplog.at_level(logging.WARNING, logger="cryoseg.embed"):
        extract_view_features(vol, ex, views=("z",), cache_dir=tmp_path, slices=[0])
    assert ex.n_images == 1 and "no signature" in caplog.text


def test_a_foreign_folder_in_the_stores_place_is_never_deleted(tmp_path):
    vol = _volume()
    foreign = _store(tmp_path, vol)
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a cryoseg cache"):
        extract_view_features(vol, _counting(), views=("z",), cache_dir=tmp_path)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kwargs, match", [
    ({"views": ("z", "w")}, "views"),
    ({"views": ()}, "views"),
    ({"slices": [0, 10]}, "outside view 'z'"),
    ({"slices": [-1]}, "outside"),
    ({"slices": []}, "no slices"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments_are_rejected_and_nothing_is_written(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        extract_view_features(_volume(), _counting(), cache_dir=tmp_path / "cache", **kwargs)
    assert not (tmp_path / "cache").exists()


def test_bad_volumes_are_rejected(tmp_path):
    with pytest.raises(InputError, match="3D"):
        extract_view_features(np.zeros((4, 4)), _counting())
    with pytest.raises(InputError, match="NaN"):
        extract_view_features(np.full((2, 8, 8), np.nan, np.float32), _counting(), views=("z",))
