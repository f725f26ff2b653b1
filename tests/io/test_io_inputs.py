"""Inputs are protected per write, not per process: what a run names as its inputs is refused as an output, and a
file read earlier in the same process (a notebook, napari, a dask worker) may be written once it is not an input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cryoseg.errors import OverwriteInputError
from cryoseg.io import Particles, Volume, read_particles, read_volume, write_particles, write_volume
from cryoseg.io.atomic import atomic_path


def test_a_file_read_earlier_can_be_written_when_it_is_not_an_input_of_this_write(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    tomo = write_volume(Volume(data, voxel_size=2.0), tmp_path / "tomo.mrc")
    picks = write_particles(Particles([(1.0, 1.0, 1.0)]), tmp_path / "picks.csv")
    first = read_volume(tomo)
    read_particles(picks)

    # Refused while it is an input of the write at hand: named, or the source of the volume written.
    with pytest.raises(OverwriteInputError, match="refusing to overwrite input file"):
        write_volume(Volume(data * 2, voxel_size=2.0), tomo, inputs=[tomo])
    with pytest.raises(OverwriteInputError):
        write_volume(first, tomo)
    with pytest.raises(OverwriteInputError):
        write_particles(Particles([(0.0, 0.0, 0.0)]), picks, inputs=[picks])
    os.link(picks, tmp_path / "same.csv")  # another name of the same file is the same input
    with pytest.raises(OverwriteInputError):
        write_particles(Particles([(0.0, 0.0, 0.0)]), tmp_path / "same.csv", inputs=[picks])
    assert np.array_equal(read_volume(tomo).data, data) and len(read_particles(picks)) == 1

    # A later write whose result does not come from them may replace them: reading once protects nothing forever.
    write_volume(Volume(data * 2, voxel_size=2.0), tomo, inputs=[picks])
    write_particles(Particles([(0.0, 0.0, 0.0), (1.0, 2.0, 3.0)]), picks, inputs=[tomo])
    assert np.array_equal(read_volume(tomo).data, data * 2) and len(read_particles(picks)) == 2
    with atomic_path(tmp_path / "same.csv") as tmp:
        tmp.write_text("z,y,x\n")
    assert (tmp_path / "same.csv").read_text() == "z,y,x\n"
