"""How many tomograms per hour does a batch pick on this machine, with one worker and with two?

Simulated 128^3 tomograms at 10 Å/voxel (4v4r, 3j9i, 1bxn; 45 particles each, seeds 1..N), the query of a one-prompt
pick on a ribosome of the first, then `cryoseg batch pick` with that query on all of them, on a local dask cluster
of one worker process and of two. Each configuration runs `--repeats` times into a fresh folder (cluster start-up
included); the table gives the median wall time, tomograms per hour, and the F1 of the ribosome picks against the
simulator's truth (mean over tomograms), which must not depend on the worker count.

    python benchmarks/bench_batch.py --tomograms 8 --repeats 2 --out benchmarks/bench_batch.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matching import SMALL_SET, inner_prompt, load_or_simulate, load_truth  # noqa: E402

from cryoseg.eval import match_picks  # noqa: E402
from cryoseg.io.particles import Particles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tomograms", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryoseg-bench"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import cryoseg
    from cryoseg.batch import ClusterConfig, PickJob, find_tomograms, run_batch
    from cryoseg.io.volumes import read_volume

    folders = [load_or_simulate(args.workdir, (128, 128, 128), seed, 45, SMALL_SET)
               for seed in range(1, args.tomograms + 1)]
    coords, classes, names, radius = load_truth(folders[0])
    ribosome = next(c for c, n in names.items() if n == "4v4r")
    prompt = inner_prompt(coords[classes == ribosome], (128, 128, 128), radius[ribosome], np.random.default_rng(0))
    query = cryoseg.pick(read_volume(folders[0] / "tomogram.mrc"), prompt).query.save(args.workdir / "query.npz")
    tomograms = find_tomograms([str(f / "tomogram.mrc") for f in folders])

    rows = []
    for workers in (1, 2):
        times, f1 = [], []
        for repeat in range(args.repeats):
            out = args.workdir / f"batch_{workers}w_{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            result = run_batch(PickJob(str(query)), tomograms, out, ClusterConfig(workers=workers))
            times.append(time.perf_counter() - t0)
            assert not result.failed, result.failed
            for t, folder in zip(tomograms, folders):
                c, k, _, r = load_truth(folder)
                picks = np.loadtxt(out / t.name / "particles.csv", delimiter=",", skiprows=1, usecols=(0, 1, 2),
                                   ndmin=2)
                f1.append(match_picks(Particles(picks), Particles(c[k == ribosome]), tolerance=r[ribosome]).f1)
        median = float(np.median(times))
        rows.append((workers, median, 3600 * len(tomograms) / median, float(np.mean(f1)), times))
    base = rows[0][1]
    lines = ["# Batch pick throughput", "",
             f"Command: `python benchmarks/bench_batch.py {' '.join(sys.argv[1:])}`", "",
             f"{len(tomograms)} simulated 128³ tomograms (4v4r, 3j9i, 1bxn, 45 particles each), the query of one "
             "ribosome click on the first; local dask cluster, one thread per worker; wall time from submitting to "
             "the last result, cluster start-up included.", "",
             "| workers | median wall time (s) | runs (s) | tomograms per hour | speed-up | mean F1 (4v4r) |",
             "|---|---|---|---|---|---|"]
    for workers, median, per_hour, f1, times in rows:
        lines.append(f"| {workers} | {median:.0f} | {', '.join(f'{t:.0f}' for t in times)} | {per_hour:.0f} | "
                     f"{base / median:.2f} | {f1:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
