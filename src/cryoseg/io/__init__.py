"""Reading and writing volumes and particle coordinates. Arrays are z, y, x; voxel size in Å travels along."""

from .atomic import atomic_path, check_not_input
from .coords import read_particles, read_particles_for, write_particles
from .particles import Particles
from .report import StageTimer, write_report
from .volume import Volume
from .volumes import read_volume, read_volume_geometry, volume_info, write_volume

__all__ = ["Particles", "StageTimer", "Volume", "atomic_path", "check_not_input", "write_report"]
__all__ += ["read_particles", "read_particles_for", "write_particles"]
__all__ += ["read_volume", "read_volume_geometry", "volume_info", "write_volume"]
