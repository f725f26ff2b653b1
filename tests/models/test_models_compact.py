"""cryoseg's own compact segmenter: it learns from simulated prompts, its training writes a folder that loads as
`compact-sam` and resumes, and shipped weights are checked against their recorded hashes at every load."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import CorruptFileError, WeightsNotFoundError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_training_step_learns_a_fixed_batch():
    import torch

    from cryoseg.models.compact import compact_sam_config
    from cryoseg.models.tiny import build_from_config
    from cryoseg.pipelines.compact import _Trainer
    from cryoseg.train.prompted import prompted_samples
    from cryoseg.train.scenes import simulate_scene

    sim = simulate_scene(1, (48, 48, 48))
    batch = prompted_samples(np.asarray(sim.tomogram.data), np.asarray(sim.instances.data),
                             np.random.default_rng(1), 4, with_prior=False)
    model = build_from_config("SamModel", compact_sam_config(), seed=0)
    trainer = _Trainer(model, 48)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, ious = [], []
    for _ in range(25):
        optimizer.zero_grad()
        loss, metrics = trainer.step(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        ious.append(metrics["iou"])
    assert losses[-1] < 0.6 * losses[0] and ious[-1] > ious[0] + 0.2, (losses, ious)


def test_training_writes_a_loadable_model_and_resumes(tmp_path):
    from cryoseg.models.loaders import load_segmenter
    from cryoseg.pipelines.compact import CompactTrainConfig, train_segmenter

    config = CompactTrainConfig(epochs=1, scenes=1, batches_per_scene=2, batch_size=2, shape=(48, 48, 48))
    first = train_segmenter(tmp_path / "run", config)
    assert len(first["history"]["train_loss"]) == 1 and (tmp_path / "run" / "curves.png").is_file()
    more = train_segmenter(tmp_path / "run", CompactTrainConfig(**{**config.__dict__, "epochs": 2}), resume=True)
    assert len(more["history"]["train_loss"]) == 2
    assert more["history"]["train_loss"][0] == first["history"]["train_loss"][0]  # the first epoch was kept
    segmenter = load_segmenter("compact-sam", weights=tmp_path / "run" / "model", device="cpu")
    image = np.random.default_rng(0).normal(size=(40, 56)).astype(np.float32)
    prediction = segmenter.predict(segmenter.embed(image), np.array([[[20.0, 28.0]]]), np.array([[1]]))
    assert prediction.masks.shape == (1, 1, 40, 56) and prediction.logits.shape == (1, 1, 128, 128)


def test_validation_scores_single_prompt_3d_segmentations_of_the_prompted_instances(two_dark_spheres):
    """The training's validation metric: each prompt row (z, y, x, instance id) is scored against that instance
    alone; zero when the ids are another instance's."""
    from cryoseg.models.loaders import load_segmenter
    from cryoseg.pipelines.compact import validation_iou

    tomogram, instances = two_dark_spheres
    prompts = np.array([[14, 20, 14, 1], [26, 20, 26, 2]], float)
    segmenter = load_segmenter("classical")
    assert validation_iou(segmenter, tomogram, instances, prompts) > 0.7
    swapped = np.column_stack([prompts[:, :3], [2, 1]])
    assert validation_iou(segmenter, tomogram, instances, swapped) == 0.0


def test_shipped_weights_are_checked_against_their_hashes(tmp_path, monkeypatch):
    import cryoseg.models.compact as compact

    monkeypatch.setattr(compact, "PACKAGED", tmp_path)
    assert compact.packaged_folder("compact-sam") is None  # nothing shipped here
    folder = tmp_path / "compact-sam"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    compact.write_checksums(folder)
    assert compact.packaged_folder("compact-sam") == folder
    (folder / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(CorruptFileError, match="sha256"):
        compact.packaged_folder("compact-sam")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        compact.packaged_folder("compact-sam")


def test_without_shipped_weights_the_message_says_how_to_train_them(tmp_path, monkeypatch):
    import cryoseg.models.compact as compact
    from cryoseg.models.loaders import load_segmenter

    monkeypatch.setattr(compact, "PACKAGED", tmp_path)
    with pytest.raises(WeightsNotFoundError, match="cryoseg train segmenter"):
        load_segmenter("compact-sam")


def test_the_shipped_compact_models_load_offline_within_the_size_budget():
    from cryoseg.models.compact import PACKAGED, packaged_folder
    from cryoseg.models.loaders import load_feature_extractor, load_segmenter

    folders = [packaged_folder(name) for name in ("compact-sam", "compact-features")]
    assert all(folders), folders  # shipped, and every file matches its recorded sha256
    assert sum(p.stat().st_size for p in PACKAGED.rglob("*") if p.is_file()) <= 25 * 2**20
    segmenter = load_segmenter("compact-sam", device="cpu")
    image = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    assert segmenter.predict(segmenter.embed(image), np.array([[[32.0, 32.0]]]), np.array([[1]])).masks.shape == (
        1, 1, 64, 64)
    assert load_feature_extractor("compact-features").extract(image[None]).features.shape == (1, 32, 16, 16)


def test_compact_sam_sees_low_passed_slices_in_training_and_use(tmp_path):
    from scipy import ndimage

    from cryoseg.models.compact import LOW_PASS_SIGMA, compact_sam_config
    from cryoseg.models.compact_sam import CompactSamSegmenter
    from cryoseg.models.hf_segmenters import HFPromptableSegmenter
    from cryoseg.models.loaders import load_segmenter
    from cryoseg.models.preprocess import to_sam_input
    from cryoseg.models.tiny import build_from_config
    from cryoseg.pipelines.compact import _Trainer

    model = build_from_config("SamModel", compact_sam_config(), seed=0)
    model.save_pretrained(tmp_path / "model")
    segmenter = load_segmenter("compact-sam", weights=tmp_path / "model", device="cpu")
    assert isinstance(segmenter, CompactSamSegmenter) and segmenter.signature()["low_pass_sigma"] == LOW_PASS_SIGMA
    assert isinstance(_Trainer(model, 64).wrapper, CompactSamSegmenter)  # training feeds the model the same way
    plain = HFPromptableSegmenter(model, "sam", "compact-sam", "x")
    image = np.random.default_rng(0).normal(size=(2, 64, 64)).astype(np.float32)
    geometry = segmenter.geometry((64, 64))
    smoothed = ndimage.gaussian_filter(image, (0, LOW_PASS_SIGMA, LOW_PASS_SIGMA))
    assert np.array_equal(segmenter.model_input(image, geometry, to_sam_input).numpy(),
                          plain.model_input(smoothed, geometry, to_sam_input).numpy())
    assert not np.array_equal(segmenter.model_input(image, geometry, to_sam_input).numpy(),
                              plain.model_input(image, geometry, to_sam_input).numpy())
