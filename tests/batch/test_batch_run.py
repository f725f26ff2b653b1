"""Batches on a local dask cluster with two worker processes: the same picks as single runs, a killed worker, an
interrupted batch rerun, a failing tomogram retried and recorded."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import cryoseg
from cryoseg.batch import ClusterConfig, PickJob, find_tomograms, run_batch

TWO_WORKERS = ClusterConfig(workers=2)


def _picks(folder):
    from cryoseg.io.coords import read_particles

    return read_particles(folder / "particles.csv").coords


def test_a_batch_gives_the_picks_of_single_runs_and_loads_models_once_per_worker(dataset, tmp_path):
    out = tmp_path / "out"
    tomograms = find_tomograms([str(dataset.folder / "TS_*" / "tomogram.mrc")])
    assert [t.name for t in tomograms] == ["TS_01_tomogram", "TS_02_tomogram", "TS_03_tomogram", "TS_04_tomogram"]
    result = run_batch(PickJob(str(dataset.query)), tomograms, out, TWO_WORKERS)
    assert result.manifest.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 0} and result.ran == 4
    for tomogram, sim in zip(tomograms, dataset.sims):
        single = cryoseg.pick(sim.tomogram, query=dataset.query)
        batch = _picks(out / tomogram.name)
        assert batch.shape == single.particles.coords.shape and len(batch) >= 2
        assert np.allclose(batch, single.particles.coords, atol=1e-3)
    summaries = [e.summary for e in result.manifest.entries.values()]
    pids = {s["pid"] for s in summaries}
    assert len(pids) == 2  # both workers worked
    assert sum(s["models_loaded"] for s in summaries) == len(pids)  # one load per worker process
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["job"]["kind"] == "pick" and manifest["tomograms"]["TS_01_tomogram"]["state"] == "done"
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("tomogram,state,attempts,seconds,instances") and len(summary) == 5
    assert (out / "preview_grid.png").stat().st_size > 1000


def test_a_killed_worker_does_not_stop_the_batch(dataset, tmp_path):
    killed = []

    def kill_a_busy_worker(name, state, client):
        if killed:
            return
        busy = [address for address, keys in client.processing().items() if keys]
        pids = client.run(os.getpid, workers=busy[:1])
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    tomograms = find_tomograms([str(p) for p in dataset.tomograms])
    result = run_batch(PickJob(str(dataset.query)), tomograms, tmp_path / "out", TWO_WORKERS,
                       on_event=kill_a_busy_worker)
    assert len(killed) == 1
    assert result.manifest.counts()["done"] == 4
    assert all((tmp_path / "out" / t.name / "report.json").is_file() for t in tomograms)


def test_an_interrupted_batch_reruns_only_what_is_not_done(dataset, tmp_path):
    out = tmp_path / "out"
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(dataset.tomograms[0].read_bytes()[:3000])  # truncated: fails every attempt
    specs = [str(p) for p in dataset.tomograms[:3]] + [str(broken)]
    tomograms = find_tomograms(specs)

    def interrupt(name, state, client):
        if state == "done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(PickJob(str(dataset.query)), tomograms, out, ClusterConfig(workers=1), retries=1,
                  on_event=interrupt)
    manifest = json.loads((out / "manifest.json").read_text())["tomograms"]
    done = [n for n, e in manifest.items() if e["state"] == "done"]
    assert len(done) == 1 and all(e["state"] == "pending" for n, e in manifest.items() if n not in done)
    report = out / done[0] / "report.json"
    stamp = report.stat().st_mtime_ns

    result = run_batch(PickJob(str(dataset.query)), tomograms, out, ClusterConfig(workers=1), retries=1)
    assert result.ran == 3 and report.stat().st_mtime_ns == stamp  # the done one was skipped
    entries = result.manifest.entries
    assert result.failed == ["broken"] and entries["broken"].attempts == 2  # the first try and one retry
    assert "broken.mrc" in entries["broken"].error and "\n" not in entries["broken"].error
    assert sum(e.state == "done" for e in entries.values()) == 3
    assert not (out / "broken" / "report.json").exists()


def test_a_running_scheduler_is_used_by_address(dataset, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        tomograms = find_tomograms([str(dataset.tomograms[2])])
        result = run_batch(PickJob(str(dataset.query)), tomograms, tmp_path / "out",
                           ClusterConfig(scheduler=cluster.scheduler_address))
        assert result.manifest.counts()["done"] == 1
        assert len(cluster.scheduler_info["workers"]) == 1  # the cluster outlives the batch: not ours to close
