"""`cryoseg segment`: outputs, forwarded options, and one-line errors that write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Particles, Volume


def ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2


@pytest.fixture(scope="module")
def tomo(tmp_path_factory):
    from cryoseg.io.volumes import write_volume

    folder = tmp_path_factory.mktemp("tomo")
    shape = (40, 40, 48)
    truth = ball(shape, (20, 18, 14), 7) | ball(shape, (20, 22, 34), 7)
    rng = np.random.default_rng(4)
    data = (np.where(truth, -1.0, 0.0) + rng.normal(0, 0.3, shape)).astype(np.float32)
    return write_volume(Volume(data, 8.0), folder / "tomo.mrc"), truth


def test_segment_writes_instances_with_voxel_size_and_forwards_only_set_options(tmp_path, tomo, capsys):
    from cryoseg.io.volumes import read_volume

    path, truth = tomo
    out = tmp_path / "out"
    code = main(["segment", str(path), "--prompt", "20,18,14", "-p", "20,22,34", "-o", str(out),
                 "--tau-iou", "0.6", "--polarity", "dark"])
    assert code == 0, capsys.readouterr().err
    assert "2 instance(s) from 2 prompt(s)" in capsys.readouterr().out
    labels = read_volume(out / "instances.mrc")
    assert labels.voxel_size == (8.0, 8.0, 8.0)
    assert set(np.unique(labels.data)) == {0, 1, 2}
    assert np.count_nonzero((labels.data > 0) & truth) > 0.85 * np.count_nonzero(truth)
    report = json.loads((out / "report.json").read_text())
    config = report["parameters"]["config"]
    assert config["tau_iou"] == 0.6 and config["polarity"] == "dark"  # the set ones forwarded
    assert config["min_area"] == 4  # the rest library defaults
    assert report["counts"]["instances"] == 2
    assert {"instances.mrc", "mask.mrc", "particles.star", "particles_relion5.star", "particles.csv",
            "particles_copick.json", "instances.csv", "preview.png", "report.json"} <= {p.name for p in out.iterdir()}
    # RELION 5 finds a particle's tomogram by rlnTomoName; copick by run_name: both name the input tomogram
    import starfile

    for star in ("particles.star", "particles_relion5.star"):
        assert starfile.read(out / star)["rlnTomoName"].tolist() == ["tomo", "tomo"]
    assert json.loads((out / "particles_copick.json").read_text())["run_name"] == "tomo"


def test_segment_reads_prompts_and_negatives_from_files_and_writes_zarr(tmp_path, tomo, capsys):
    from cryoseg.io.coords import write_particles
    from cryoseg.io.volumes import read_volume

    path, _ = tomo
    prompts = write_particles(Particles([(20, 18, 14)]), tmp_path / "prompts.star")
    negatives = write_particles(Particles([(20, 22, 34)]), tmp_path / "neg.csv")
    out = tmp_path / "out"
    assert main(["-q", "segment", str(path), "--prompts", str(prompts), "--negatives", str(negatives),
                 "-o", str(out), "--format", "zarr"]) == 0, capsys.readouterr().err
    labels = read_volume(out / "instances.ome.zarr")
    assert labels.voxel_size == (8.0, 8.0, 8.0)
    assert labels.data[20, 18, 14] == 1 and labels.data[20, 22, 34] == 0


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tomo, capsys, cli_refuses):
    from cryoseg.io.coords import write_particles

    path, _ = tomo
    out = tmp_path / "out"
    base = ["-q", "segment", str(path), "-o", str(out)]
    cli_refuses(base + ["--prompt", "20,18,60"],
                "prompt 1 at (z, y, x) = (20, 18, 60) voxels lies outside the volume of shape (40, 40, 48)", tmp_path)
    cli_refuses(base + ["--prompt", "35,4,4"], "gave an empty mask", tmp_path)
    cli_refuses(base + ["--prompt", "20,18"],
                "--prompt must be three comma-separated numbers z,y,x in voxels", tmp_path)
    cli_refuses(base + ["--prompt", "20,18,14", "--negative", "99,0,0"], "negative point 1", tmp_path)
    cli_refuses(base, "give at least one prompt", tmp_path)
    picked_at_4 = write_particles(Particles([(20, 18, 14)]), tmp_path / "p.json", fmt="copick", voxel_size=4.0)
    cli_refuses(base + ["--prompts", str(picked_at_4)], "voxel spacing of 4 Å but the tomogram", tmp_path)
    cli_refuses(base + ["--prompt", "20,18,14", "--segmenter", "no-such-model"],
                "unknown model 'no-such-model'", tmp_path)
    cli_refuses(base + ["--prompt", "20,18,14", "--format", "tiff"], "unknown volume format 'tiff'", tmp_path)
    cli_refuses(base + ["--prompt", "20,18,14", "--polarity", "grey"], "polarity must be one of", tmp_path)
    cli_refuses(["-q", "segment", str(tmp_path / "missing.mrc"), "--prompt", "1,1,1", "-o", str(out)],
                "missing.mrc", tmp_path)


def test_missing_weights_is_one_line(tmp_path, tomo, capsys, monkeypatch, cli_refuses):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path, _ = tomo
    out = tmp_path / "out"
    cli_refuses(["-q", "segment", str(path), "--prompt", "20,18,14", "-o", str(out), "--segmenter", "sam-vit-b"],
                "weights not found", tmp_path)
