"""Models loaded once per process and reused: by each batch worker for every tomogram it runs, and by the napari
widgets for every click."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_LOADED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def loaded_once(key: tuple, load: Callable[[], T]) -> tuple[T, bool]:
    """`load()` for `key`, run once per process; returns the value and whether this call loaded it."""
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key], False
        _LOADED[key] = value = load()
        return value, True


def model_folder_key(path: str | Path) -> tuple[str, int]:
    """A model folder's identity: its path and its modification time (a retrained model is loaded again)."""
    resolved = Path(path).resolve()
    return str(resolved), resolved.stat().st_mtime_ns if resolved.exists() else 0
