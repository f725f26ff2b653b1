"""Shared fixtures: the read-only test data folder beside the checkout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
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


def folder_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under `folder` (hidden ones too) with its size and content: equal states mean nothing was
    written, replaced or left behind."""
    state = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_fifo():
            state[rel] = (-1, b"fifo")
        elif path.is_file():
            state[rel] = (path.stat().st_size, path.read_bytes())
        else:
            state[rel] = (0, b"dir")
    return state


@pytest.fixture
def snapshot():
    """`folder_state` as a fixture, for tests that compare a folder before and after."""
    return folder_state


@pytest.fixture
def cli_refuses(capsys):
    """`cli_refuses(argv, message, folder)`: the CLI answers `argv` with exit code 2 and exactly one line on stderr,
    `cryoseg: error: ...` containing `message`, and leaves `folder` exactly as it was. Returns that line."""
    from cryoseg.cli.main import main

    def check(argv: list[str], message: str, folder: Path) -> str:
        capsys.readouterr()
        before = folder_state(folder)
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 2, (code, err)
        assert err.startswith("cryoseg: error: ") and err.count("\n") == 1, err
        assert message in err, err
        assert folder_state(folder) == before, "the refused command changed the folder"
        return err.strip()

    return check


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for the tests of a module (tiny models on a shared 2-core machine: one thread
    avoids oversubscription stalls); the previous count comes back after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """An empty cryoseg home and hub cache under `tmp_path`, so no test reads or writes the user's weights."""
    monkeypatch.setenv("CRYOSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


@pytest.fixture(scope="session")
def two_dark_spheres() -> tuple[np.ndarray, np.ndarray]:
    """A (40, 40, 40) float32 tomogram of two dark spheres (radius 6, centres (14, 20, 14) and (26, 20, 26)) in
    light noise, and its int32 instance labels (1 and 2)."""
    zz, yy, xx = np.indices((40, 40, 40))
    instances = np.zeros((40, 40, 40), np.int32)
    for label, centre in ((1, (14, 20, 14)), (2, (26, 20, 26))):
        instances[(zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 36] = label
    tomogram = np.where(instances > 0, -1.0, 0.0).astype(np.float32)  # dark particles, as in cryo-ET
    tomogram += np.random.default_rng(0).normal(0, 0.1, tomogram.shape).astype(np.float32)
    return tomogram, instances
