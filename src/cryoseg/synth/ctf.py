"""The contrast transfer function of a transmission electron microscope (weak-phase approximation).

CTF(k) = -(sqrt(1 - A^2) sin chi(k) + A cos chi(k)) * exp(-B k^2 / 4), with
chi(k) = pi lambda dz k^2 - pi/2 Cs lambda^3 k^4; k in cycles per Å, dz > 0 underfocus. Its sign makes
density dark at low frequency, as in raw micrographs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .config import SimulationConfig
from .fourier import frequency_grid


@dataclass(frozen=True)
class CTFParams:
    """voltage kV, cs mm, defocus µm (positive = underfocus), amplitude contrast fraction, bfactor Å²."""

    voltage: float = 300.0
    cs: float = 2.7
    defocus: float = 3.0
    amplitude_contrast: float = 0.07
    bfactor: float = 0.0

    @classmethod
    def from_config(cls, config: SimulationConfig) -> CTFParams:
        return cls(config.voltage, config.cs, config.defocus, config.amplitude_contrast, config.bfactor)


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å at an acceleration voltage in kV (0.0197 Å at 300 kV)."""
    volts = voltage_kv * 1e3
    return 12.2642598 / math.sqrt(volts * (1.0 + 0.97845e-6 * volts))


def ctf_values(k: np.ndarray, params: CTFParams) -> np.ndarray:
    """CTF at spatial frequencies `k` (any shape, cycles per Å)."""
    lam = electron_wavelength(params.voltage)
    dz = params.defocus * 1e4  # µm -> Å
    cs = params.cs * 1e7  # mm -> Å
    k2 = np.asarray(k, dtype=np.float64) ** 2
    chi = math.pi * lam * dz * k2 - 0.5 * math.pi * cs * lam ** 3 * k2 ** 2
    w = params.amplitude_contrast
    ctf = -(math.sqrt(1.0 - w * w) * np.sin(chi) + w * np.cos(chi))
    if params.bfactor:
        ctf *= np.exp(-params.bfactor * k2 / 4.0)
    return ctf


def first_zero(params: CTFParams) -> float:
    """Spatial frequency (cycles per Å) of the CTF's first zero: chi(k) = pi - asin(A), solved for k."""
    lam = electron_wavelength(params.voltage)
    dz, cs = params.defocus * 1e4, params.cs * 1e7
    target = math.pi - math.asin(params.amplitude_contrast)
    a, b = 0.5 * math.pi * cs * lam ** 3, math.pi * lam * dz  # a u^2 - b u + target = 0, u = k^2
    if a == 0:
        return math.sqrt(target / b)
    disc = b * b - 4 * a * target
    if disc < 0:
        raise InputError(f"the CTF has no zero crossing at defocus {params.defocus:g} µm and Cs {params.cs:g} mm; "
                         "choose a larger defocus")
    return math.sqrt((b - math.sqrt(disc)) / (2 * a))


def ctf_grid(padded: tuple[int, int], voxel_size: float, params: CTFParams) -> np.ndarray:
    """CTF on the rfft2 grid (Yp, Tp//2+1) of images of `padded` size with square pixels of `voxel_size` Å."""
    ky, kt = frequency_grid(padded, voxel_size)
    return ctf_values(np.sqrt(ky ** 2 + kt ** 2), params)


def delocalisation(voxel_size: float, params: CTFParams) -> int:
    """Pixels a point spreads under the CTF up to Nyquist (how much images must be padded)."""
    lam = electron_wavelength(params.voltage)
    k = 0.5 / voxel_size
    spread = abs(params.defocus * 1e4) * lam * k + params.cs * 1e7 * lam ** 3 * k ** 3
    return int(math.ceil(spread / voxel_size))
