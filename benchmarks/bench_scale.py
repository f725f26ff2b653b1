"""How do time and memory of a one-prompt pick grow with the tomogram?

Simulated tomograms at 10 Å/voxel from the shared templates (4v4r, 3j9i, 1bxn, 5mrc; the particle count grows with
the volume), one prompt on a ribosome (4v4r), default weight-free backends. Each pick runs in its own process, the
tomogram memory-mapped from its MRC file; memory is sampled every 50 ms: resident memory in all, and its anonymous
part (what the pick allocated; the rest is pages of the memory-mapped tomogram and of libraries, which the kernel
drops under pressure). Also the F1 of the pick against the simulator's truth, as a check that the work was done.

    python benchmarks/bench_scale.py --shapes 200x512x512 400x1024x1024 --out benchmarks/bench_scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matching import LARGE_SET, inner_prompt, load_or_simulate, load_truth  # noqa: E402
from profiling import profiled  # noqa: E402

from cryoseg.eval import match_picks  # noqa: E402
from cryoseg.io.particles import Particles  # noqa: E402
from cryoseg.io.volumes import read_volume  # noqa: E402

PARTICLES_PER_VOXEL = 400 / (200 * 512 * 512)  # the density of bench_picking's 200x512x512 tomogram


def child(folder: Path, prompt: list[float], out: Path) -> None:
    """One pick, profiled (runs in its own process)."""
    import logging

    from cryoseg import api

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # stages, in the log
    volume = read_volume(folder / "tomogram.mrc")
    result, info = profiled(lambda: api.pick(volume, [prompt]))
    found = ~np.asarray(result.is_prompt, bool)
    out.write_text(json.dumps({**info, "counts": result.counts, "coords": result.particles.coords[found].tolist()}))


CGROUPS = Path("/sys/fs/cgroup/memory")  # cgroup v1 memory controller (needs root)


def limited(limit_gb: float | None) -> tuple[Path | None, dict]:
    """A memory cgroup capping its processes at `limit_gb` GB, page cache included (None: no limit); and the
    keyword arguments that start a child process inside it."""
    if limit_gb is None:
        return None, {}
    group = CGROUPS / f"cryoseg-bench-{os.getpid()}"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(int(limit_gb * 1e9)))
    return group, {"preexec_fn": lambda: (group / "cgroup.procs").write_text(str(os.getpid()))}


def run(shape: tuple[int, int, int], workdir: Path, limit_gb: float | None = None) -> dict:
    n = max(20, round(PARTICLES_PER_VOXEL * np.prod(shape)))
    t0 = time.perf_counter()
    folder = load_or_simulate(workdir, shape, 1, n, LARGE_SET)
    simulate_seconds = time.perf_counter() - t0
    coords, classes, names, radius = load_truth(folder)
    cls = next(c for c, name in names.items() if name == "4v4r")
    truth = coords[classes == cls]
    prompt = inner_prompt(truth, shape, radius[cls], np.random.default_rng(0))[0]
    out = workdir / f"scale_{'x'.join(map(str, shape))}{'_limited' if limit_gb else ''}.json"
    group, start = limited(limit_gb)
    try:
        done = subprocess.run([sys.executable, __file__, "--child", str(folder), "--prompt",
                               json.dumps(prompt.tolist()), "--child-out", str(out)], **start)
        cgroup = None if group is None else {
            "limit_gb": limit_gb, "completed": done.returncode == 0,
            "max_usage_gb": int((group / "memory.max_usage_in_bytes").read_text()) / 1e9,
            "failcnt": int((group / "memory.failcnt").read_text())}
    finally:
        if group is not None:
            group.rmdir()
    if done.returncode != 0:
        return {"shape": shape, "particles": n, "cgroup": cgroup, "failed": True}
    info = json.loads(out.read_text())
    others = truth[np.linalg.norm(truth - prompt, axis=1) > 1e-6]
    picks = np.asarray(info["coords"]).reshape(-1, 3)
    f1 = match_picks(Particles(picks), Particles(others), tolerance=radius[cls]).f1
    return {"shape": shape, "particles": n, "simulate_seconds": simulate_seconds, "f1": f1, "cgroup": cgroup, **info}


def table(everything: list[dict]) -> str:
    rows = [r for r in everything if not r.get("failed")]
    base = next((r for r in rows if tuple(r["shape"]) == (200, 512, 512)), rows[0])
    stages = [s["stage"] for s in rows[0]["stages"]]
    lines = ["| tomogram | voxels | instances | F1 (4v4r) | seconds | peak RSS (GB) | peak anonymous (GB) | "
             "anonymous / 200x512x512 |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {np.prod(r['shape']) / 1e6:.0f} M | "
                     f"{r['counts']['instances']} | {r['f1']:.3f} | {r['total_seconds']:.0f} | "
                     f"{r['peak_rss_mb'] / 1e3:.2f} | {r['peak_anon_mb'] / 1e3:.2f} | "
                     f"{r['peak_anon_mb'] / base['peak_anon_mb']:.2f} |")
    for r in everything:
        if r.get("cgroup"):
            c = r["cgroup"]
            lines.append(f"\n{'x'.join(map(str, r['shape']))} in a memory cgroup capped at {c['limit_gb']:g} GB, page "
                         f"cache included: {'completed' if c['completed'] else 'did not complete'}; the cgroup's peak "
                         f"usage {c['max_usage_gb']:.2f} GB, {c['failcnt']} times at the cap (the kernel then drops "
                         "file pages)")
    lines += ["", "Per stage (seconds / peak RSS GB / peak anonymous GB):", "",
              "| stage | " + " | ".join("x".join(map(str, r["shape"])) for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for k, name in enumerate(stages):
        cells = []
        for r in rows:
            s = r["stages"][k] if k < len(r["stages"]) else None
            cells.append("–" if s is None or s["peak_rss_mb"] is None else
                         f"{s['seconds']:.0f} s / {s['peak_rss_mb'] / 1e3:.2f} / {s['peak_anon_mb'] / 1e3:.2f}")
        label = " ".join(w for w in name.split(" ")[:5] if not w[0].isdigit())  # no counts: they differ per column
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["200x512x512", "400x1024x1024"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryoseg-bench"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="run each pick in a memory cgroup of this many GB, page cache included (root, cgroup v1)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prompt", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.prompt), args.child_out)
        return
    rows = [run(tuple(int(v) for v in s.split("x")), args.workdir, args.memory_limit_gb) for s in args.shapes]
    text = "\n".join(["# One-prompt pick: time and memory against tomogram size", "",
                      "Command: `python " + " ".join(["benchmarks/bench_scale.py", *sys.argv[1:]]) + "`", "",
                      table(rows)])
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
