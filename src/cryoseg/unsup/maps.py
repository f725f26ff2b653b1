"""Structure maps of slices: canvas and tiles -> attention affinity per tile -> spectral maps -> one aggregated map
per tile -> the slice's map; then z-smoothing over a slab. The steps are in `canvas`, `affinity`, `spectral` and
`aggregate`; this module chains them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..progress import track
from .affinity import AffinitySource
from .aggregate import AggregateConfig, aggregate_maps, smooth_along_z, suppress_background
from .canvas import CanvasConfig, cut_tiles, join_tiles, prepare_canvas
from .spectral import spectral_maps


@dataclass(frozen=True)
class MapConfig:
    """Settings of the structure maps.

    Attributes:
        canvas: slice pre-processing and tiling.
        n_maps: spectral maps computed per tile (the aggregation keeps the first `aggregate.keep`).
        aggregate: selection and merging of the spectral maps.
        z_smoothing: replace slices that disagree with both agreeing neighbours, and blend the rest along z.
        suppress_background: set each tile's map to 0 below its Otsu level (`aggregate.suppress_background`), as
            the reference's diffusion attention maps are; the local threshold then marks structure, not texture.
    """

    canvas: CanvasConfig = field(default_factory=CanvasConfig)
    n_maps: int = 12
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)
    z_smoothing: bool = True
    suppress_background: bool = True

    def __post_init__(self) -> None:
        if self.n_maps < 2:
            raise InputError(f"n_maps must be at least 2, got {self.n_maps}")


def slice_map(image: np.ndarray, source: AffinitySource, config: MapConfig = MapConfig()) -> np.ndarray:
    """The structure map of one slice.

    Args:
        image: (H, W) slice, any grey range, finite.
        source: where the attention affinity of each tile comes from.
        config: see `MapConfig`.

    Returns:
        (H, W) float32 in [0, 1], structures high.
    """
    from skimage import transform

    tile = config.canvas.tile
    grid = source.grid(tile)
    zoom = float(np.sqrt(config.canvas.canvas ** 2 / (image.shape[0] * image.shape[1])))  # canvas px per slice px
    maps = []
    for piece in cut_tiles(prepare_canvas(image, config.canvas), tile):
        spectral = spectral_maps(source.affinity(piece, zoom), grid, config.n_maps)
        merged = aggregate_maps(spectral, config.aggregate).map
        if config.suppress_background:
            merged = suppress_background(merged)
        maps.append(transform.resize(merged, (tile, tile), order=3, mode="edge"))
    return np.clip(join_tiles(np.stack(maps), image.shape), 0.0, 1.0)


def slab_maps(stack: np.ndarray, source: AffinitySource, config: MapConfig = MapConfig(),
              description: str = "structure maps") -> np.ndarray:
    """The structure maps of a slab's slices, smoothed along z.

    Args:
        stack: (Z, H, W) slab.
        source, config: as for `slice_map`.
        description: progress bar text.

    Returns:
        (Z, H, W) float32 in [0, 1], structures high.
    """
    if stack.ndim != 3:
        raise InputError(f"a slab must be (Z, H, W), got shape {stack.shape}")
    maps = np.stack([slice_map(image, source, config) for image in track(stack, description, total=len(stack))])
    return smooth_along_z(maps) if config.z_smoothing and len(maps) >= 3 else maps
