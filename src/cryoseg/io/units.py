"""Length units as the volume formats write them, converted to Å (the unit cryoseg keeps voxel sizes in)."""

from __future__ import annotations

# Å per unit; names as written by ImageJ, TIFF resolution units and OME-NGFF
_ANGSTROM_PER_UNIT = {
    "å": 1.0, "a": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0, "\\u00c5": 1.0,
    "pm": 0.01, "picometer": 0.01,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0,
    "um": 1e4, "µm": 1e4, "μm": 1e4, "\\u00b5m": 1e4, "micron": 1e4, "microns": 1e4,
    "micrometer": 1e4, "micrometers": 1e4, "micrometre": 1e4,
    "mm": 1e7, "millimeter": 1e7, "cm": 1e8, "centimeter": 1e8, "inch": 2.54e8, "m": 1e10, "meter": 1e10,
}


def angstrom_per_unit(unit: str | None) -> float | None:
    """Å in one `unit` (e.g. "nm" -> 10), or None for a missing or unknown unit such as "pixel"."""
    if not unit:
        return None
    return _ANGSTROM_PER_UNIT.get(str(unit).strip().lower())
