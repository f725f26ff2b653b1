"""The one progress helper. Switched off globally with `set_progress_enabled(False)` (the CLI's --quiet).

Besides the terminal bar, a caller can listen to the steps of the work it started (`listen`): a GUI shows them in
its own progress bar and stops the work by raising `Cancelled` from the listener, which then propagates out of the
pipeline at its next step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

# (description, items done so far, total or None) -> None; called before each item and once at the end
ProgressListener = Callable[[str, int, "int | None"], None]

_enabled = True
# A context variable, not a global: each thread (a GUI's worker) hears only the work it runs itself.
_listener: ContextVar[ProgressListener | None] = ContextVar("cryoseg_progress_listener", default=None)


class Cancelled(Exception):
    """Raised by a progress listener to stop the work it is listening to."""


def set_progress_enabled(enabled: bool) -> None:
    """Turn every progress bar on or off."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool:
    return _enabled


@contextmanager
def listen(listener: ProgressListener) -> Iterator[None]:
    """Call `listener(description, done, total)` at every step of the work `track`s in this thread (and context)
    until the block ends; an exception it raises (such as `Cancelled`) stops the work there."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def step(description: str) -> None:
    """Tell the listener of this context (`listen`), if any, that a stage of the work starts (a point where a
    listener can cancel work whose stages are not loops)."""
    listener = _listener.get()
    if listener is not None:
        listener(description, 0, None)


def _reporting(items: Iterable[T], description: str, total: int | None, listener: ProgressListener) -> Iterator[T]:
    if total is None and isinstance(items, Sized):
        total = len(items)
    done = 0
    for item in items:
        listener(description, done, total)
        yield item
        done += 1
    listener(description, done, total)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over `items`, showing a progress bar on stderr when enabled and stderr is a terminal, and telling the
    listener of this context (`listen`), if any, about each step."""
    listener = _listener.get()
    if listener is not None:
        items = _reporting(items, description, total, listener)
    if not _enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or pipe gets no bar (rich would leave blank lines there)
        yield from items
        return
    yield from rich_track(items, description=description, total=total, console=console, transient=True)
