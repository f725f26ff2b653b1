"""What this machine can give a run, asked before the work starts so an impossible request fails in one line."""

from __future__ import annotations

import os

GIB = 1 << 30


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation now (Linux MemAvailable), else the physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """'3.2 GiB', '512 MiB', ... for messages."""
    for unit, size in (("TiB", GIB << 10), ("GiB", GIB), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.1f} KiB"
