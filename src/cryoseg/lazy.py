"""Package exports that load on first use, so importing a package (and starting the CLI) stays light."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, serving each name of `exports` (name -> submodule, relative to
    the package, or an absolute "cryoseg..." module) from that module, imported when the name is first asked for.

    An export may not share its name with a submodule of the package: once that submodule is imported, Python
    binds the name to the module and the export is never asked for again.
    """
    clash = sorted(name for name in exports if importlib.util.find_spec(f"{package}.{name}") is not None)
    if clash:
        raise ImportError(f"{package}: exports {clash} are also submodule names")

    def module_of(name: str) -> str:  # relative to the package, or absolute ("cryoseg.pipelines.scsam")
        where = exports[name]
        return where if where.startswith("cryoseg.") else f"{package}.{where}"

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(module_of(name)), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
