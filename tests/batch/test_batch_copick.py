"""A copick project made in the test: a batch reads its tomograms through the copick library and stores picks and
segmentations back into it, under a user and session id."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def project(dataset, tmp_path_factory):
    import copick
    from copick.models import PickableObject

    folder = tmp_path_factory.mktemp("copick")
    objects = [PickableObject(name="ribosome", is_particle=True, label=1, radius=150.0)]
    root = copick.new_config(str(folder / "config.json"), str(folder / "overlay"), pickable_objects=objects)
    for k, sim in enumerate(dataset.sims[:2], 1):
        run = root.new_run(f"TS_{k:02d}")
        run.new_voxel_spacing(10.0).new_tomogram("wbp").from_numpy(sim.tomogram.data)
    return folder / "config.json"


def test_copick_tomograms_read_with_their_voxel_size(project, dataset):
    from cryoseg.batch import copick_tomograms
    from cryoseg.batch.jobs import VolumeOptions

    tomograms = copick_tomograms(project, 10.0, "wbp")
    assert [t.name for t in tomograms] == ["TS_01", "TS_02"]
    volume = VolumeOptions().read(tomograms[1])
    assert np.allclose(volume.data, dataset.sims[1].tomogram.data) and volume.voxel_size == (10.0, 10.0, 10.0)
    with pytest.raises(Exception, match="no run TS_09"):
        copick_tomograms(project, 10.0, "wbp", runs=["TS_09"])
    with pytest.raises(Exception, match="no run has a 'denoised' tomogram"):
        copick_tomograms(project, 10.0, "denoised")


def test_batch_pick_round_trips_through_copick(project, dataset, tmp_path, capsys, cli_refuses):
    import copick

    from cryoseg.cli.main import main
    from cryoseg.eval import match_picks
    from cryoseg.io import Particles

    out = tmp_path / "out"
    argv = ["batch", "pick", "--copick", str(project), "--query", str(dataset.query), "-o", str(out), "--workers",
            "1", "--object", "ribosome", "--session-id", "7"]
    assert main(argv) == 0, capsys.readouterr().err
    root = copick.from_file(str(project))
    for k, sim in enumerate(dataset.sims[:2], 1):
        run = root.get_run(f"TS_{k:02d}")
        (picks,) = run.get_picks(object_name="ribosome", user_id="cryoseg", session_id="7")
        zyx = picks.full_positions()[:, ::-1] / 10.0
        ours = np.loadtxt(out / f"TS_{k:02d}" / "particles.csv", delimiter=",", skiprows=1, usecols=(0, 1, 2), ndmin=2)
        assert np.allclose(np.sort(zyx, axis=0), np.sort(ours, axis=0), atol=1e-3)
        assert match_picks(Particles(zyx), Particles(sim.particles.coords), tolerance=4.0).f1 >= 0.85
        (instances,) = run.get_segmentations(name="ribosome", user_id="cryoseg", session_id="7", is_instance=True)
        (binary,) = run.get_segmentations(name="ribosome", user_id="cryoseg", session_id="7")
        labels = instances.numpy()
        assert labels.shape == sim.tomogram.shape and labels.max() == len(zyx)
        assert np.array_equal(binary.numpy() > 0, labels > 0)
    # an object the project does not define is refused before any work
    cli_refuses(argv[:-4] + ["-o", str(tmp_path / "o2"), "--object", "proteasome"],
                "no pickable object 'proteasome'", tmp_path / "out")
