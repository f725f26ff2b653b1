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

COMMAND_MODULES = ("info", "simulate", "evaluate", "convert", "preview", "models", "segment", "demo", "scsam",
                   "unsup", "batch", "train")

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
        handler.setFormatter(_OneLineFormatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    _quiet_other_libraries()
    set_progress_enabled(not quiet)


class _OneLineFormatter(logging.Formatter):
    """Every record on one line, whatever newlines a library put in its message."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(super().format(record).split())


def _quiet_other_libraries() -> None:
    """Libraries' own log lines and Python warnings (tifffile's "invalid page offset", numpy's casts) would reach
    the terminal as extra lines beside our one-line messages; they go to cryoseg's debug log (-v) instead."""
    logging.captureWarnings(True)
    for name in ("tifffile", "py.warnings"):
        other = logging.getLogger(name)
        other.propagate = False
        if not any(isinstance(h, _ToCryosegDebug) for h in other.handlers):
            other.addHandler(_ToCryosegDebug())


class _ToCryosegDebug(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("cryoseg.libraries").debug("%s: %s", record.name, record.getMessage())


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}").register(app)

# Errors a user can fix: ours, and the operating system's about a user's file (missing, not allowed, a folder).
# Anything else is a bug of ours and keeps its traceback.
USER_ERRORS = (CryosegError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Typer >= 0.24 raises its own click's exceptions (TyperException subclasses); older ones raise click's."""
    types: list[type[BaseException]] = [TyperException]
    try:
        from click.exceptions import ClickException
    except ImportError:
        pass
    else:
        types.append(ClickException)
    return tuple(types)


USAGE_ERRORS = _usage_error_types()


def one_line(text: str) -> str:
    """`text` with every run of whitespace, newlines included, made one space: an error is one line."""
    return " ".join(str(text).split())


def _error(message: str) -> None:
    print(f"cryoseg: error: {one_line(message)}", file=sys.stderr)


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
    except USAGE_ERRORS as exc:  # bad option, missing argument, unknown command
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `cryoseg` or a bare command group: the help
            exc.show()
            return 0
        ctx = getattr(exc, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        _error(f"{one_line(exc.format_message()).rstrip('.')}{hint}")
        return 2
    except USER_ERRORS as exc:
        _error(str(exc))
        return 2
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
