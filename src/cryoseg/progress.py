"""The one progress helper. Switched off globally with `set_progress_enabled(False)` (the CLI's --quiet)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_enabled = True


def set_progress_enabled(enabled: bool) -> None:
    """Turn every progress bar on or off."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool:
    return _enabled


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over `items`, showing a progress bar on stderr when enabled and stderr is a terminal."""
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
