"""Run independent chunks of work on a few threads (numpy, scipy.sparse, scipy.ndimage and scipy.fft release the GIL).

Results come back in submission order and each chunk's arithmetic does not depend on the thread count,
so output is bit-identical whatever `threads` is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_threads(requested: int | None = None) -> int:
    """`requested`, or the number of cores this process may run on."""
    if requested is not None:
        return max(1, int(requested))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """Yield fn(item) for each item, in order, computed on up to `threads` threads (a few chunks ahead)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            # keep a bounded queue so memory stays proportional to the thread count, not the item count
            if len(pending) >= 2 * threads:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()
