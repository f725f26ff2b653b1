"""`cryoseg scsam train` / `predict` end to end with tiny encoders, then `cryoseg evaluate`; bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Volume, write_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def stack(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.normal(0, 0.3, (8, 48, 48)).astype(np.float32)
    lab = np.zeros(img.shape, np.int8)
    for z in range(len(img)):
        y, x = rng.integers(2, 30, 2)
        img[z, y:y + 16, x:x + 16] += 2.0
        lab[z, y:y + 16, x:x + 16] = 1
    return (write_volume(Volume(img, voxel_size=8.0), tmp_path / "img.mrc"),
            write_volume(Volume(lab, voxel_size=8.0), tmp_path / "lab.mrc"))


def test_train_predict_evaluate(tmp_path, stack, capsys):
    img, lab = stack
    model, pred = tmp_path / "model", tmp_path / "pred"
    assert main(["scsam", "train", str(img), "--labels", str(lab), "--classes", "blob", "-o", str(model),
                 "--sam", "tiny-sam", "--mae", "tiny-mae", "--epochs", "40", "--patience", "40", "--lr", "0.01",
                 "--no-augment", "--slices", "0:6"]) == 0
    assert "validation mIoU" in capsys.readouterr().out
    report = json.loads((model / "report.json").read_text())
    assert report["slices"] == {"train": 5, "val": 1, "shape": [48, 48]} and report["class_names"] == ["blob"]
    assert main(["scsam", "predict", str(model), str(img), "-o", str(pred)]) == 0
    assert main(["evaluate", str(pred / "labels.mrc"), str(lab), "-o", str(tmp_path / "e.json")]) == 0
    scores = json.loads((tmp_path / "e.json").read_text())["scores"]
    assert scores["mean_iou"] > 0.5
    from cryoseg.io import read_volume

    assert read_volume(pred / "labels.mrc").voxel_size == (8.0, 8.0, 8.0)
    # the views fused: the y slices (Z, X) of this thin stack run through the same model
    assert main(["scsam", "predict", str(model), str(img), "-o", str(tmp_path / "zy"), "--views", "z,y",
                 "--probabilities"]) == 0
    assert json.loads((tmp_path / "zy" / "report.json").read_text())["views"] == ["z", "y"]
    assert (tmp_path / "zy" / "probability_blob.mrc").is_file()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, stack, cli_refuses):
    img, lab = stack
    base = ["scsam", "train", img, "-o", tmp_path / "m", "--sam", "tiny-sam", "--mae", "tiny-mae"]
    cli_refuses(base + ["--classes", "blob"], "Missing option '--labels'", tmp_path)
    cli_refuses(base + ["--labels", lab, "--labels", lab, "--classes", "blob"], "give one --labels volume per image",
                tmp_path)
    cli_refuses(base + ["--labels", lab, "--classes", "blob", "--slices", "3"], "--slices must be START:STOP",
                tmp_path)
    cli_refuses(base + ["--labels", lab, "--classes", "background"], "reserved", tmp_path)
    cli_refuses(base + ["--labels", lab, "--classes", "blob", "--no-sam-features", "--no-mae-features"],
                "at least one encoder", tmp_path)
    cli_refuses(["scsam", "train", img, "--labels", lab, "--classes", "blob", "-o", tmp_path / "m", "--sam",
                 "tiny-dinov2"], "ScSAM needs a SAM", tmp_path)
    cli_refuses(["scsam", "predict", tmp_path, img, "-o", tmp_path / "p"], "", tmp_path)
