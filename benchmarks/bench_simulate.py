"""Benchmark the tomogram simulator: wall time and peak memory per case, printed as a Markdown table.

    python benchmarks/bench_simulate.py                 # both cases, 3 runs of the small one, 1 of the big one
    python benchmarks/bench_simulate.py --case default --repeats 5

Each run is a fresh Python process, so its peak resident memory (getrusage ru_maxrss) belongs to that run
alone. Times are the median over the runs; "simulate" is `cryoseg.synth.simulate(config)`, "save" writes
the six output files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "data" / "templates"

CASES = {
    "default": {"label": "128³ default (3 built-in classes, 30 particles, 2 vesicles, 1 filament)",
                "target": "< 10 s", "target_s": 10.0, "config": {}},
    "large": {"label": "200×512×512, 600 particles from 10 shared templates, 2 vesicles, 1 filament",
              "target": "< 120 s, < 4 GB", "target_s": 120.0,
              "config": {"shape": (200, 512, 512), "particles": 600, "templates": (str(TEMPLATES),)}},
}


def run_child(case: str) -> None:
    """Run one simulation and print its numbers as JSON (in a fresh process)."""
    import resource

    from cryoseg.progress import set_progress_enabled
    from cryoseg.synth import SimulationConfig, simulate

    set_progress_enabled(False)
    config = SimulationConfig(**CASES[case]["config"])
    start = time.perf_counter()
    sim = simulate(config)
    elapsed = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sim.save(tmp)
        save_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"simulate_s": elapsed, "save_s": save_s, "peak_mb": peak_mb, "particles": len(sim.particles),
                      "threads": sim.info["threads"], "stages": sim.info["timings"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=None, help="runs per case (default: 3 small, 1 large)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.case)
        return
    cases = list(CASES) if args.case == "all" else [args.case]
    rows = []
    for case in cases:
        repeats = args.repeats or (3 if case == "default" else 1)
        runs = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, __file__, "--case", case, "--child"], check=True,
                                 capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        sim_s = statistics.median(r["simulate_s"] for r in runs)
        stages = {k: statistics.median(r["stages"][k] for r in runs) for k in runs[0]["stages"]}
        rows.append((case, repeats, sim_s, statistics.median(r["save_s"] for r in runs),
                     max(r["peak_mb"] for r in runs), runs[0]["particles"], runs[0]["threads"], stages))

    print(f"cpu cores available: {len(os.sched_getaffinity(0))}, load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| case | runs | particles | threads | simulate (median s) | save (s) | peak RSS (MB) | target | met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, repeats, sim_s, save_s, peak, n, threads, _ in rows:
        spec = CASES[case]
        met = sim_s < spec["target_s"] and (case != "large" or peak < 4096)
        print(f"| {spec['label']} | {repeats} | {n} | {threads} | {sim_s:.2f} | {save_s:.2f} | {peak:.0f} | "
              f"{spec['target']} | {'yes' if met else 'NO'} |")
    print()
    print("stage medians (s):")
    for case, *_, stages in rows:
        print(f"  {case}: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
