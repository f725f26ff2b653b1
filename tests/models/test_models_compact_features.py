"""compact-features: a U-Net feature extractor at the slice's own pixel size (unit vectors on the filter bank's
4-pixel grid, shifted with the image), saved and loaded as a checked folder, trained by metric learning on simulated
classes; its loss and validation score behave as their definitions say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.errors import CorruptFileError, WeightsNotFoundError

torch = pytest.importorskip("torch")
pytest.importorskip("monai")


def _saved(tmp_path, seed: int = 0):
    from cryoseg.models.compact_features import CompactFeaturesConfig, build_network, save_folder

    torch.manual_seed(seed)
    config = CompactFeaturesConfig()
    folder = tmp_path / "model"
    save_folder(build_network(config), config, folder)
    return folder


def test_features_are_unit_cells_on_the_slice_grid_and_move_with_the_image(tmp_path):
    from cryoseg.models.loaders import load_feature_extractor

    extractor = load_feature_extractor("compact-features", weights=_saved(tmp_path), device="cpu")
    image = np.random.default_rng(0).normal(size=(96, 104)).astype(np.float32)
    fmap = extractor.extract(np.stack([image, image[::-1]]))
    assert fmap.features.shape == (2, 32, 24, 26) and fmap.stride == (4.0, 4.0) and fmap.image_shape == (96, 104)
    assert np.allclose(np.linalg.norm(fmap.features, axis=1), 1.0, atol=1e-5)
    single = extractor.extract(image).features[0]
    assert np.allclose(single, fmap.features[0], atol=1e-5)  # a batch equals one image at a time
    # fully convolutional at the slice's own size: shifting by two cells shifts the features by two cells (away
    # from the edges, which the shift wraps)
    shifted = extractor.extract(np.roll(image, (8, 8), axis=(0, 1))).features[0]
    assert np.abs(shifted[:, 10:16, 10:18] - single[:, 8:14, 8:16]).max() < 1e-4
    # a larger slice (the same grey levels twice): the features of its first half do not change away from the seam
    wide = extractor.extract(np.concatenate([image, image], axis=1)).features[0]
    assert np.abs(wide[:, 8:16, 4:16] - single[:, 8:16, 4:16]).max() < 1e-4


def test_a_saved_model_reloads_identically_and_bad_folders_are_refused(tmp_path):
    from cryoseg.models.compact_features import CompactFeatureExtractor
    from cryoseg.models.loaders import load_feature_extractor

    folder = _saved(tmp_path)
    image = np.random.default_rng(2).normal(size=(1, 40, 40)).astype(np.float32)
    a = load_feature_extractor("compact-features", weights=folder, device="cpu")
    b = CompactFeatureExtractor.from_folder(folder, "x")
    assert np.array_equal(a.extract(image).features, b.extract(image).features)
    assert a.signature()["weights"].startswith("sha256:")
    other = _saved(tmp_path / "other", seed=1)
    assert load_feature_extractor("compact-features", weights=other).signature() != a.signature()
    (folder / "config.json").write_text('{"model": "compact-sam"}')
    with pytest.raises(CorruptFileError, match="not a compact-features"):
        load_feature_extractor("compact-features", weights=folder)
    (folder / "config.json").write_text('{"model": "compact-features", "dim": 16}')
    with pytest.raises(CorruptFileError, match="does not hold compact-features weights"):
        load_feature_extractor("compact-features", weights=folder)


def test_without_shipped_weights_the_message_says_how_to_train_them(tmp_path, monkeypatch):
    import cryoseg.models.compact as compact
    from cryoseg.models.loaders import load_feature_extractor

    monkeypatch.setattr(compact, "PACKAGED", tmp_path)
    with pytest.raises(WeightsNotFoundError, match="cryoseg train features"):
        load_feature_extractor("compact-features")


def test_supervised_contrastive_loss_is_low_for_separated_classes():
    from cryoseg.pipelines.compact_features import supervised_contrastive

    torch.manual_seed(0)
    classes = torch.arange(400) % 4
    centres = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    clustered = torch.nn.functional.normalize(centres[classes] + 0.05 * torch.randn(400, 16), dim=1)
    scattered = torch.nn.functional.normalize(torch.randn(400, 16), dim=1)
    assert supervised_contrastive(clustered, classes) < supervised_contrastive(scattered, classes) - 1.0


def test_retrieval_map_scores_ranking_by_the_class_prototype():
    from cryoseg.pipelines.compact_features import cell_classes, retrieval_map

    rng = np.random.default_rng(0)
    classes = np.repeat([0, 1, 2], 50)
    centres = np.eye(3)
    good = centres[classes] + 0.01 * rng.normal(size=(150, 3))
    assert retrieval_map(good, classes, good, classes) == pytest.approx(1.0)
    confused = centres[np.where(classes == 2, 1, classes)] + 0.01 * rng.normal(size=(150, 3))
    assert retrieval_map(confused, classes, confused, classes) < 0.8  # classes 1 and 2 look alike
    pixels = np.zeros((1, 8, 8), int)
    pixels[0, 2, 6] = 5  # the centre pixel of cell (0, 1) with stride 4
    assert cell_classes(pixels, 4).tolist() == [[[0, 5], [0, 0]]]


def test_training_writes_a_loadable_model_and_resumes(tmp_path, shared_data):
    from cryoseg.models.loaders import load_feature_extractor
    from cryoseg.pipelines.compact_features import FeatureTrainConfig, train_features

    config = FeatureTrainConfig(epochs=1, scenes=1, batches_per_scene=2, batch_size=2, shape=(48, 48, 48),
                                real=(str(shared_data / "isbi2012" / "raw_00-19.tif"),))
    first = train_features(tmp_path / "run", config)
    assert set(first["history"]["train_metrics"][0]) == {"supcon", "real"}
    assert 0 <= first["validation_map"] <= 1 and (tmp_path / "run" / "curves.png").is_file()
    more = train_features(tmp_path / "run", FeatureTrainConfig(**{**config.__dict__, "epochs": 2}), resume=True)
    assert len(more["history"]["train_loss"]) == 2
    assert more["history"]["train_loss"][0] == first["history"]["train_loss"][0]
    extractor = load_feature_extractor("compact-features", weights=tmp_path / "run" / "model")
    assert extractor.extract(np.zeros((1, 48, 48), np.float32)).features.shape == (1, 32, 12, 12)


def test_a_training_step_learns_a_fixed_batch():
    from cryoseg.models.compact_features import CompactFeaturesConfig, build_network
    from cryoseg.pipelines.compact_features import FeatureBatch, feature_loss

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 32, 32)).astype(np.float32)
    classes = np.zeros((4, 32, 32), np.int64)
    images[:, 8:16, 8:16] -= 2.0  # a dark square of class 1
    classes[:, 8:16, 8:16] = 1
    images[:, 20:28, 20:28] += 2.0  # a bright one of class 2
    classes[:, 20:28, 20:28] = 2
    batch = FeatureBatch(images, classes, np.zeros((0, 32, 32), np.float32))
    net_config = CompactFeaturesConfig()
    network = build_network(net_config)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3)

    def separation() -> float:
        """Mean cosine of cells within class 1 minus that between classes 1 and 2 (eval mode)."""
        from cryoseg.models.compact_features import cell_embeddings
        from cryoseg.pipelines.compact_features import cell_classes

        network.eval()
        with torch.no_grad():
            cells = cell_embeddings(network, torch.from_numpy(images), net_config).permute(0, 2, 3, 1)
        network.train()
        labels = torch.from_numpy(cell_classes(classes, net_config.stride))
        one, two = cells[labels == 1], cells[labels == 2]
        return float((one @ one.T).mean() - (one @ two.T).mean())

    before, losses = separation(), []
    for _ in range(20):
        optimizer.zero_grad()
        loss, _ = feature_loss(network, batch, net_config, 0.5)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    # SupCon's floor is about log(positives per anchor), so the loss falls by little; what it learns is separation
    assert losses[-1] < losses[0] - 0.3 and separation() > before + 0.2, (losses, before, separation())


def test_cli_trains_features_and_refuses_a_missing_real_file(tmp_path, shared_data, cli_refuses, monkeypatch):
    import cryoseg.cli.train as command
    from cryoseg.cli.main import main
    from cryoseg.pipelines.compact_features import FeatureTrainConfig

    small = FeatureTrainConfig(scenes=1, batches_per_scene=1, batch_size=2, shape=(48, 48, 48))  # a quick run
    monkeypatch.setattr(command, "FeatureTrainConfig", lambda **kw: FeatureTrainConfig(**{**small.__dict__, **kw}))
    real = shared_data / "isbi2012" / "raw_00-19.tif"
    assert main(["train", "features", "-o", str(tmp_path / "run"), "--epochs", "1", "--real", str(real)]) == 0
    record = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert record["config"]["real"] == [str(real)] and record["config"]["epochs"] == 1
    assert record["config"]["shape"] == [48, 48, 48]
    cli_refuses(["train", "features", "-o", tmp_path / "other", "--real", tmp_path / "absent.tif"], "absent.tif",
                tmp_path)
