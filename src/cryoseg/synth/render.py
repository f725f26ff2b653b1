"""Paint particles into the density, class-label and instance volumes."""

from __future__ import annotations

import numpy as np

from ..progress import track
from .parallel import ordered_map
from .rotation import box_size, rotate_into_box
from .templates import Template


def render_particles(centers: np.ndarray, class_index: np.ndarray, rotations: np.ndarray,
                     templates: list[Template], class_labels: list[int], density: np.ndarray, labels: np.ndarray,
                     instances: np.ndarray, first_instance: int, threads: int) -> None:
    """Add each rotated template to `density` and mark its label mask in `labels` and `instances`.

    Args:
        centers: (N, 3) z, y, x particle centres in voxels.
        class_index: (N,) template index of each particle.
        rotations: (N, 3, 3) template-to-particle rotations on x, y, z vectors.
        templates: the particle classes.
        class_labels: label id of each template (2, 3, ...).
        density: (Z, Y, X) float32 volume to add to (may be a strided view).
        labels, instances: (Z, Y, X) integer volumes to mark; particle i gets instance first_instance + i.
        threads: worker threads for the rotations (pasting stays in order, so the result is deterministic).
    """
    shape = np.asarray(density.shape)

    def rotate(i: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        template = templates[class_index[i]]
        size = box_size(template.radius)
        base = np.round(centers[i]).astype(int)
        dens, mask = rotate_into_box((template.density, template.mask), template.center, rotations[i],
                                     centers[i] - base, size)
        return i, base - size // 2, dens, mask

    for i, corner, dens, mask in track(ordered_map(rotate, range(len(centers)), threads), "placing particles",
                                       total=len(centers)):
        lo = np.maximum(corner, 0)
        hi = np.minimum(corner + dens.shape[0], shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        crop = tuple(slice(a - c, b - c) for a, b, c in zip(lo, hi, corner))
        density[box] += dens[crop]
        inside = mask[crop] >= 0.5
        labels[box][inside] = class_labels[class_index[i]]
        instances[box][inside] = first_instance + i
