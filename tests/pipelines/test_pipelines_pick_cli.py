"""`cryoseg pick`: a run on a simulated tomogram, option forwarding, and one-line errors that write nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Particles


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from cryoseg.synth import SimulationConfig, simulate

    sim = simulate(SimulationConfig(shape=(48, 64, 64), seed=2, templates=("ribosome",), particles=3, vesicles=0,
                                    filaments=0, threads=1))
    files = sim.save(tmp_path_factory.mktemp("sim"))
    return sim, files


def test_pick_command(tmp_path, saved, capsys):
    from cryoseg.io.coords import read_particles
    from cryoseg.io.volumes import read_volume

    sim, files = saved
    z, y, x = sim.particles.coords[0]
    out = tmp_path / "out"
    code = main(["pick", str(files["tomogram"]), "--prompt", f"{z:.1f},{y:.1f},{x:.1f}", "-o", str(out),
                 "--top-k", "20", "--tau-sim", "0.45", "--size-ratio", "0.4,2.5", "--polarity", "dark",
                 "--cache-dir", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "instance(s) from 1 prompt(s)" in captured.out
    # progress per stage, in order, on stderr
    stages = [captured.err.find(f"stage {k}/5") for k in range(1, 6)]
    assert -1 not in stages and stages == sorted(stages), captured.err
    report = json.loads((out / "report.json").read_text())
    config = report["parameters"]["config"]
    assert config["matching"]["top_k"] == 20 and config["matching"]["tau_sim"] == 0.45
    assert config["matching"]["levels"] == [16, 8, 4]  # not set: the library default
    assert config["size_ratio"] == [0.4, 2.5] and config["segment"]["tau_iou"] == 0.5
    assert config["segment"]["polarity"] == "dark"
    assert set(report["seconds"]) >= {"segment_prompts", "features", "matching", "verify", "segment_proposals"}
    cut = report["verification"]["cut"]
    assert f"score cut {cut:.3f} ({report['verification']['cut_chosen_by']})" in captured.out
    assert config["verify"]["cut"] is None  # chosen from the data
    assert read_volume(out / "instances.mrc").voxel_size == sim.tomogram.voxel_size
    picks = read_particles(out / "particles.star")
    assert len(picks) == report["counts"]["instances"] >= 2
    dist = np.linalg.norm(picks.coords[:, None] - sim.particles.coords[None], axis=2).min(axis=1)
    assert np.mean(dist < 4) >= 0.5
    assert list(tmp_path.joinpath("c").iterdir())  # embeddings and features were cached
    # a cut given by the user is used as it is: at 1.0 nothing but the prompt passes
    strict = tmp_path / "strict"
    assert main(["-q", "pick", str(files["tomogram"]), "--prompt", f"{z:.1f},{y:.1f},{x:.1f}", "-o", str(strict),
                 "--cut", "1", "--cache-dir", str(tmp_path / "c")]) == 0
    report = json.loads((strict / "report.json").read_text())
    assert report["verification"]["cut_chosen_by"] == "given" and report["counts"]["instances"] == 1


def test_pick_bad_input_is_one_line_and_writes_nothing(tmp_path, saved, capsys, cli_refuses):
    from cryoseg.io.coords import write_particles

    sim, files = saved
    z, y, x = sim.particles.coords[0]
    out = tmp_path / "out"
    good = f"{z:.1f},{y:.1f},{x:.1f}"
    base = ["-q", "pick", str(files["tomogram"]), "-o", str(out)]
    cli_refuses(base + ["--prompt", "10,10,99"], "lies outside the volume of shape (48, 64, 64)", tmp_path)
    cli_refuses(base + ["--prompt", "44,3,3"], "gave an empty mask", tmp_path)
    cli_refuses(base + ["--prompt", good, "--features", "no-such-features"],
                "unknown model 'no-such-features'", tmp_path)
    cli_refuses(base + ["--prompt", good, "--tau-sim", "3"], "tau_sim", tmp_path)
    cli_refuses(base + ["--prompt", good, "--cut", "1.5"], "cut must lie in [-1, 1]", tmp_path)
    cli_refuses(base + ["--prompt", good, "--size-ratio", "2"],
                "--size-ratio must be two comma-separated numbers low,high", tmp_path)
    wrong_spacing = write_particles(Particles([(z, y, x)]), tmp_path / "p.json", fmt="copick", voxel_size=5.0)
    cli_refuses(base + ["--prompts", str(wrong_spacing)], "voxel spacing of 5 Å but the tomogram", tmp_path)


def test_pick_missing_weights_is_one_line_and_writes_nothing(tmp_path, saved, capsys, monkeypatch, cli_refuses):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    sim, files = saved
    z, y, x = sim.particles.coords[0]
    out = tmp_path / "out"
    base = ["-q", "pick", str(files["tomogram"]), "--prompt", f"{z:.1f},{y:.1f},{x:.1f}", "-o", str(out)]
    cli_refuses(base + ["--features", "dinov2-vitl14-reg"], "weights not found", tmp_path)
    cli_refuses(base + ["--segmenter", "sam-vit-b"], "weights not found", tmp_path)


def test_pick_refuses_a_non_empty_output_folder(tmp_path, capsys):
    from cryoseg.cli.main import main

    truth = tmp_path / "particles.csv"
    truth.write_text("z,y,x\n1,2,3\n")
    tomo = tmp_path / "tomo.mrc"
    import mrcfile
    import numpy as np

    with mrcfile.new(tomo) as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
    assert main(["pick", str(tomo), "--prompt", "4,4,4", "-o", str(tmp_path)]) == 2
    assert "input " + str(tomo) + " lies inside the output folder" in capsys.readouterr().err
    assert truth.read_text() == "z,y,x\n1,2,3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["particles.csv", "tomo.mrc"]


@pytest.mark.filterwarnings("ignore:Data array contains NaN")  # mrcfile warns while we write the bad file
def test_pick_refuses_nan_and_names_the_option(tmp_path, capsys):
    import mrcfile
    import numpy as np

    from cryoseg.cli.main import main

    data = np.zeros((8, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    tomo = tmp_path / "nan.mrc"
    with mrcfile.new(tomo) as m:
        m.set_data(data)
    out = tmp_path / "out"
    assert main(["pick", str(tomo), "--prompt", "4,4,4", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "NaN" in err and "--nan-policy clean" in err and err.count("\n") == 1
    assert not out.exists()


def test_pick_forwards_precision_and_batch_size_to_the_model_loaders(tmp_path, saved, monkeypatch):
    import cryoseg.models.loaders as loaders

    seen = {}
    real_seg, real_feat = loaders.load_segmenter, loaders.load_feature_extractor

    def seg(name, **kwargs):
        seen["segmenter"] = kwargs
        return real_seg(name, weights=kwargs["weights"])

    def feat(name, **kwargs):
        seen["features"] = kwargs
        return real_feat(name, weights=kwargs["weights"])

    monkeypatch.setattr(loaders, "load_segmenter", seg)
    monkeypatch.setattr(loaders, "load_feature_extractor", feat)
    sim, files = saved
    z, y, x = sim.particles.coords[0]
    code = main(["pick", str(files["tomogram"]), "--prompt", f"{z:.1f},{y:.1f},{x:.1f}", "-o", str(tmp_path / "o"),
                 "--dtype", "fp32", "--batch-size", "3"])
    assert code == 0
    assert seen["segmenter"]["dtype"] == "fp32" and seen["features"]["dtype"] == "fp32"
    assert seen["features"]["batch_size"] == 3
