"""Time and memory of a pick, stage by stage, for the benchmarks (run it in a child process so the peak is the
pick's own). Memory is sampled every 50 ms from /proc/self/status: resident memory in all (VmRSS) and its
anonymous part (RssAnon: what the process allocated; the rest is mostly pages of memory-mapped files, which the
kernel can drop and read again)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


def memory_mb() -> dict[str, float]:
    """{"rss": VmRSS, "anon": RssAnon} of this process in MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out["rss" if key == "VmRSS" else "anon"] = int(value.split()[0]) / 1e3
    return out


class StageLog(logging.Handler):
    """Times of the pipeline's "stage N/M: ..." log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("stage "):
            self.marks.append((time.perf_counter(), msg.split(":")[1].strip()))


def profiled(run: Callable[[], Any], logger: str = "cryoseg.pipelines.pick") -> tuple[Any, dict[str, Any]]:
    """Run `run()` with memory sampled and stages marked; returns its result and
    {"total_seconds", "before": memory_mb(), "peak_rss_mb", "peak_anon_mb", "stages": [{stage, seconds, peak_rss_mb,
    peak_anon_mb}]}."""
    handler = StageLog()
    log = logging.getLogger(logger)
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    samples: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), memory_mb()))
            time.sleep(0.05)

    before = memory_mb()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = run()
    finally:
        total = time.perf_counter() - t0
        stop.set()
        thread.join()
        log.removeHandler(handler)
    marks = handler.marks + [(t0 + total, "end")]
    stages = []
    for (start, name), (end, _) in zip(marks, marks[1:]):
        inside = [m for t, m in samples if start <= t <= end]
        stages.append({"stage": name, "seconds": end - start,
                       "peak_rss_mb": max((m["rss"] for m in inside), default=None),
                       "peak_anon_mb": max((m["anon"] for m in inside), default=None)})
    return result, {"total_seconds": total, "before": before, "stages": stages,
                    "peak_rss_mb": max((m["rss"] for _, m in samples), default=before["rss"]),
                    "peak_anon_mb": max((m["anon"] for _, m in samples), default=before["anon"])}
