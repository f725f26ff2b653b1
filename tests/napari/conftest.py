"""Viewer fixtures of the napari plugin's tests: a small simulated tomogram (4 ribosomes) open in a real viewer.

The tests drive real Qt widgets in napari's `make_napari_viewer` (pytest-qt); an X display is needed for the
viewer's OpenGL canvas: pytest-xvfb starts Xvfb (`.ci/run` installs it where it is missing)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """The user's unit choice and caches stay untouched: cryoseg's home is the test's own."""
    monkeypatch.setenv("CRYOSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CRYOSEG_NAPARI_UNIT", raising=False)


@pytest.fixture(scope="session")
def small_sim():
    from cryoseg.synth import SimulationConfig, simulate

    return simulate(SimulationConfig(shape=(56, 72, 72), seed=1, templates=("ribosome",), particles=4, vesicles=0,
                                     filaments=0, threads=1))


def wait_until_idle(qtbot, widget, timeout_s: float = 240) -> None:
    """Let the event loop run until `widget` has no job running or waiting."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=int(timeout_s * 1000))


@pytest.fixture
def viewer_with_tomogram(make_napari_viewer, small_sim):
    """A viewer holding the small simulated tomogram as cryoseg's reader would open it."""
    from cryoseg.napari.layers import volume_layer

    viewer = make_napari_viewer()
    data, kwargs, _ = volume_layer(small_sim.tomogram, "tomogram")
    viewer.add_image(data, **kwargs)
    return viewer
