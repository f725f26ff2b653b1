"""`cryoseg batch scsam`'s job: a trained ScSAM model segments each volume, loaded once per worker process."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.batch import ScsamJob, Tomogram
from cryoseg.cli.main import main
from cryoseg.errors import InputError
from cryoseg.io import Volume, write_volume
from cryoseg.io.volumes import read_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_job_segments_each_volume_with_one_model_load(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.normal(0, 0.3, (6, 48, 48)).astype(np.float32)
    lab = np.zeros(img.shape, np.int8)
    img[:, 10:26, 12:28] += 2.0
    lab[:, 10:26, 12:28] = 1
    a = write_volume(Volume(img, voxel_size=8.0), tmp_path / "a.mrc")
    b = write_volume(Volume(img[::-1].copy(), voxel_size=8.0), tmp_path / "b.mrc")
    labels = write_volume(Volume(lab, voxel_size=8.0), tmp_path / "lab.mrc")
    model = tmp_path / "model"
    assert main(["scsam", "train", str(a), "--labels", str(labels), "--classes", "blob", "-o", str(model),
                 "--sam", "tiny-sam", "--mae", "tiny-mae", "--epochs", "2", "--no-augment"]) == 0
    job = ScsamJob(str(model))
    job.check()
    first = job.run(Tomogram("a", a), tmp_path / "batch" / "a")
    second = job.run(Tomogram("b", b), tmp_path / "batch" / "b")
    assert first["models_loaded"] and not second["models_loaded"] and first["classes"] == 1
    predicted = read_volume(tmp_path / "batch" / "b" / "labels.mrc")
    assert predicted.shape == img.shape and predicted.voxel_size == (8.0, 8.0, 8.0)
    with pytest.raises(InputError, match="is incomplete: missing model.safetensors"):
        ScsamJob(str(tmp_path)).check()  # refused before a batch starts
