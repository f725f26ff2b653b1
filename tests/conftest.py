"""Shared fixtures: the read-only test data folder beside the checkout."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cryoseg.progress import progress_enabled, set_progress_enabled

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (read-only); tests that need it skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"test data folder {SHARED_DATA} is absent (CI always has it)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _restore_cli_state():
    """The CLI's global options (--quiet, --verbose) set the cryoseg log level and the progress switch for the
    process; put both back after each test so one test's flags do not leak into the next."""
    logger = logging.getLogger("cryoseg")
    handlers, level, enabled = logger.handlers[:], logger.level, progress_enabled()
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    set_progress_enabled(enabled)
