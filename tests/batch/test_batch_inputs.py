"""What a batch runs on and where: tomogram lists, the manifest of another job, the SLURM job script, the CLI."""

from __future__ import annotations

import json

import pytest

from cryoseg.batch import ClusterConfig, Manifest, Tomogram, find_tomograms, slurm_job_script
from cryoseg.batch.cluster import parse_slurm_options
from cryoseg.errors import InputError


def test_tomograms_from_globs_list_files_and_folders_named_apart(dataset, tmp_path, monkeypatch):
    listing = tmp_path / "tomos.txt"
    listing.write_text(f"# two of them\n{dataset.tomograms[0]}\n\n{dataset.folder}/TS_0[2]/tomogram.mrc  # glob\n")
    found = find_tomograms([str(listing)])
    assert [t.name for t in found] == ["TS_01_tomogram", "TS_02_tomogram"]
    assert found[0].path == dataset.tomograms[0].resolve()
    # one file named twice counts once; a lone file keeps its own name
    assert [t.name for t in find_tomograms([str(dataset.tomograms[0])] * 2)] == ["tomogram"]
    with pytest.raises(FileNotFoundError, match="no such tomogram"):
        find_tomograms([str(tmp_path / "absent.mrc")])
    with pytest.raises(InputError, match="no tomogram matches"):
        find_tomograms([str(tmp_path / "*.mrc")])
    with pytest.raises(InputError, match="unsupported volume format"):
        find_tomograms([str(dataset.query)])


def test_a_folder_of_another_jobs_batch_is_refused(dataset, tmp_path):
    tomograms = [Tomogram("a", dataset.tomograms[0])]
    Manifest.open(tmp_path, {"kind": "pick", "query": "one.npz"}, tomograms)
    again = Manifest.open(tmp_path, {"kind": "pick", "query": "one.npz"}, tomograms)
    assert again.entries["a"].state == "pending"
    with pytest.raises(InputError, match="holds a batch of another job"):
        Manifest.open(tmp_path, {"kind": "pick", "query": "two.npz"}, tomograms)


def test_slurm_job_script_carries_the_settings():
    options = parse_slurm_options(["queue=gpu", "account=lab", "walltime=02:00:00", "memory=32GB", "cores=4",
                                   "job_extra_directives=--gres=gpu:1", "job_extra_directives=--constraint=a100"])
    assert options["cores"] == 4 and options["job_extra_directives"] == ["--gres=gpu:1", "--constraint=a100"]
    script = slurm_job_script(options)
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH -t 02:00:00", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gres=gpu:1", "#SBATCH --constraint=a100", "#SBATCH --mem=30G"):
        assert line in script, (line, script)
    assert "distributed.cli.dask_worker" in script and "--nthreads 4" in script
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        parse_slurm_options(["partition=gpu"])
    with pytest.raises(InputError, match="cores needs int"):
        parse_slurm_options(["cores=many"])
    with pytest.raises(InputError, match="not both"):
        ClusterConfig(scheduler="tcp://x:8786", slurm={})


def test_local_cluster_is_sized_to_cores_and_memory(monkeypatch):
    import psutil

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"total": 24e9})())
    assert ClusterConfig(memory_per_worker=4.0).local_workers() == 6  # memory-bound
    assert ClusterConfig(memory_per_worker=1.0).local_workers() == 16  # core-bound
    assert ClusterConfig(workers=3).local_workers() == 3


def test_cli_batch_pick_runs_and_reruns(dataset, tmp_path, capsys, cli_refuses):
    from cryoseg.cli.main import main

    out = tmp_path / "out"
    argv = ["batch", "pick", str(dataset.tomograms[1]), "--query", str(dataset.query), "-o", str(out),
            "--workers", "1", "--cut", "0.5"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "1 of 1 tomogram(s) done (1 run now" in printed and "summary.csv" in printed
    job = json.loads((out / "manifest.json").read_text())["job"]
    assert job["changes"] == {"verify": {"cut": 0.5}}
    assert main(argv) == 0 and "(0 run now" in capsys.readouterr().out
    # refused before any cluster starts, in one line, writing nothing
    cli_refuses(argv[:-2] + ["--cut", "0.6"], "holds a batch of another job", out)
    cli_refuses(["batch", "pick", str(dataset.tomograms[1]), "--query", str(dataset.query), "-o",
                 str(tmp_path / "o2"), "--slurm", "partition=gpu"], "expected KEY=VALUE", tmp_path / "out")
    cli_refuses(["batch", "pick", str(dataset.tomograms[1]), "--query", str(tmp_path / "none.npz"), "-o",
                 str(tmp_path / "o3")], "no such query file", tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    cli_refuses(["batch", "pick", str(dataset.tomograms[1]), "--query", str(dataset.query), "-o", str(busy)],
                "holds no batch", busy)
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_the_segment_job_reads_each_tomograms_prompt_file(dataset, tmp_path):
    from cryoseg.batch import SegmentJob
    from cryoseg.io.coords import write_particles
    from cryoseg.io.particles import Particles

    prompts = tmp_path / "prompts"
    for path, sim in zip(dataset.tomograms[:2], dataset.sims[:2]):
        write_particles(Particles(sim.particles.coords[:2]), prompts / f"{path.parent.name}.csv", fmt="csv",
                        voxel_size=sim.tomogram.voxel_size, shape=sim.tomogram.shape)
    job = SegmentJob(str(prompts / "{name}.csv"))
    job.check()
    tomograms = [Tomogram(p.parent.name, p) for p in dataset.tomograms[:3]]
    first = job.run(tomograms[0], tmp_path / "out" / "a")
    second = job.run(tomograms[1], tmp_path / "out" / "b")
    assert first["instances"] == second["instances"] == 2 and first["models_loaded"] != second["models_loaded"]
    assert (tmp_path / "out" / "b" / "instances.mrc").is_file()
    with pytest.raises(FileNotFoundError, match="no prompt file for tomogram TS_03"):
        job.run(tomograms[2], tmp_path / "out" / "c")
    with pytest.raises(InputError, match="must contain {name}"):
        SegmentJob("prompts.csv").check()
