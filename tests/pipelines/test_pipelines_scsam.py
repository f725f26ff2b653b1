"""ScSAM end to end with tiny random-weight encoders: training overfits a tiny set, a saved model reloads and
predicts as it validated, bad input is refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.pipelines.scsam import ScSAMTrainConfig, miou, predict, train
from cryoseg.scsam.encoders import EncoderChoice
from cryoseg.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = EncoderChoice("tiny-sam", "tiny-mae")


def _blobs(n: int = 8, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) noisy slices with one bright square each (class 1) and, in every other slice, a dark band
    (class 2): structures the tiny encoders' coarse grids can resolve."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 0.3, (n, size, size)).astype(np.float32)
    lab = np.zeros((n, size, size), np.int64)
    for z in range(n):
        y, x = rng.integers(2, size - 18, 2)
        img[z, y:y + 16, x:x + 16] += 2.0
        lab[z, y:y + 16, x:x + 16] = 1
        if z % 2:
            band = 30 if y < 16 else 2
            img[z, band:band + 14, :] -= 2.0
            lab[z, band:band + 14, :] = 2
    return img, lab


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    img, lab = _blobs()
    out = tmp_path_factory.mktemp("scsam") / "model"
    # no augmentation: this checks that the head can fit what it is shown
    settings = ScSAMTrainConfig(("blob", "bar"), TINY, augment=False,
                                train=TrainConfig(epochs=80, batch_size=4, lr=1e-2, patience=80))
    return img, lab, train([img], [lab], out, settings)


def test_training_overfits_a_tiny_set_and_writes_the_model_folder(trained):
    img, lab, res = trained
    loss = res.history.to_dict()["train_loss"]
    assert loss[-1] < 0.5 * loss[0]
    pred = predict(res.model_dir, img)
    assert miou(pred.labels.data, lab, 2) >= 0.9
    assert sorted(p.name for p in res.model_dir.iterdir()) == ["config.json", "curves.png", "model.safetensors",
                                                               "report.json"]
    report = json.loads((res.model_dir / "report.json").read_text())
    assert report["class_names"] == ["blob", "bar"] and report["class_pixels"] == res.class_pixels.tolist()


def test_a_saved_model_predicts_as_it_validated(trained):
    img, lab, res = trained
    report = json.loads((res.model_dir / "report.json").read_text())
    pred = predict(res.model_dir, img, probabilities=True)
    val = np.asarray(sorted(set(range(len(img))) - set(_train_indices(res, len(img)))))
    assert miou(pred.labels.data[val], lab[val], 2) == pytest.approx(report["val_miou"], abs=1e-9)
    assert pred.probabilities.shape == (3, *img.shape)
    np.testing.assert_allclose(pred.probabilities.sum(axis=0), 1.0, atol=1e-5)
    again = predict(res.model_dir, img)
    np.testing.assert_array_equal(again.labels.data, pred.labels.data)


def _train_indices(res, n):
    from cryoseg.train.data import split

    train_idx, _ = split(n, 0.2, 0)
    return train_idx


def test_prediction_folder(trained, tmp_path):
    img, _, res = trained
    pred = predict(res.model_dir, img, views=("z", "x"), probabilities=True)
    files = pred.save(tmp_path / "pred")
    assert sorted(files) == ["labels", "preview", "probability_background", "probability_bar", "probability_blob",
                             "report"]
    assert json.loads(files["report"].read_text())["views"] == ["z", "x"]


def test_bad_training_input_is_refused(tmp_path):
    img, lab = _blobs(4)
    settings = ScSAMTrainConfig(("blob",), TINY, train=TrainConfig(epochs=1))
    with pytest.raises(InputError, match="differ|shape"):
        train([img], [lab[:, :40]], tmp_path / "m", settings)
    with pytest.raises(InputError, match="2"):
        train([img], [lab], tmp_path / "m", settings)  # label 2 is not a class of a one-class model
    assert not (tmp_path / "m").exists()
    with pytest.raises(InputError, match="at least one encoder"):
        ScSAMTrainConfig(("blob",), TINY, use_sam=False, use_mae=False)
    with pytest.raises(InputError, match="ScSAM needs a SAM"):
        EncoderChoice("tiny-dinov2", "tiny-mae")


def test_a_model_is_refused_with_other_encoders_or_missing_files(trained, tmp_path):
    import shutil

    img, _, res = trained
    other = tmp_path / "other"
    shutil.copytree(res.model_dir, other)
    report = json.loads((other / "report.json").read_text())
    report["encoders"]["mae"]["weights"] = "sha256:0000"  # trained with other MAE weights
    (other / "report.json").write_text(json.dumps(report))
    with pytest.raises(InputError, match="not those the model was trained with"):
        predict(other, img)
    (other / "model.safetensors").unlink()
    with pytest.raises(InputError, match="model.safetensors"):
        predict(other, img)


def test_a_class_without_pixels_is_warned_and_training_resumes(tmp_path, caplog, monkeypatch):
    import logging

    import cryoseg.train.folder

    img, lab = _blobs(6)

    def settings(epochs: int) -> ScSAMTrainConfig:
        return ScSAMTrainConfig(("blob", "bar", "ghost"), TINY, augment=False,
                                train=TrainConfig(epochs=epochs, batch_size=4, patience=3))

    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        whole = train([img], [lab], tmp_path / "m", settings(3))
    assert "class 'ghost' has no pixels" in caplog.text and whole.class_pixels[3] == 0
    # a training killed after its second epoch (before the model folder is written) leaves its checkpoint...
    with monkeypatch.context() as m:
        m.setattr(cryoseg.train.folder, "save_model_folder", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            train([img], [lab], tmp_path / "r", settings(2))
    checkpoint = tmp_path / ".r.training-checkpoint.pt"
    assert checkpoint.is_file() and not (tmp_path / "r").exists()
    # ...from which --resume goes on to epoch 3, as if never stopped (training only epoch 3)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryoseg.train"):
        resumed = train([img], [lab], tmp_path / "r", settings(3), resume=True)
    trained = [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert trained == ["epoch 3/3"], trained
    assert resumed.history.to_dict()["train_loss"] == pytest.approx(whole.history.to_dict()["train_loss"])
    assert not checkpoint.exists() and (tmp_path / "r" / "model.safetensors").is_file()
