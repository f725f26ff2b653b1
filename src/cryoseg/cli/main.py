"""The `cryoseg` command: a Typer app assembled from one module per command group.

Each command module exposes `register(app)`. Commands stay thin: parse, call the library, report.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from typer.exceptions import TyperException

from ..errors import CryosegError
from ..progress import set_progress_enabled

COMMAND_MODULES = ("info", "simulate", "evaluate", "convert", "preview", "models", "segment", "demo")

app = typer.Typer(
    name="cryoseg",
    help="Segment cryo-electron tomograms and pick particles with foundation models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (it may be replaced, e.g. by test capture)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


@app.callback()
def _global_options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors; no progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    logger = logging.getLogger("cryoseg")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    set_progress_enabled(not quiet)


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as exc:  # a command group not built yet
        if exc.name != f"{__package__}.{_name}":
            raise
        continue
    _module.register(app)

# Errors a user can fix: one line on stderr, exit code 2, no traceback.
USER_ERRORS = (CryosegError, ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    try:
        result = app(args=argv, prog_name="cryoseg", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("cryoseg: aborted", file=sys.stderr)
        return 1
    except TyperException as exc:  # usage errors: bad option, missing argument
        exc.show() if hasattr(exc, "show") else print(f"cryoseg: error: {exc.format_message()}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except USER_ERRORS as exc:
        print(f"cryoseg: error: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
