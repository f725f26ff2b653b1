"""Many previews on one page: the PNGs of a batch's tomograms as a grid of thumbnails, each with its caption."""

from __future__ import annotations

import math
from pathlib import Path

from ..io.atomic import atomic_path

THUMB_WIDTH = 360
CAPTION_HEIGHT = 18


def save_image_grid(images: list[tuple[str, Path]], path: str | Path, width: int = THUMB_WIDTH) -> Path:
    """Write the PNGs `images` ((caption, file) pairs, in order) as one grid PNG at `path` (atomically).

    Each image is scaled to `width` pixels wide; columns are about the square root of the count. An image that
    cannot be read is left as an empty cell with its caption.
    """
    from PIL import Image, ImageDraw, UnidentifiedImageError

    thumbs = []
    for caption, file in images:
        try:
            with Image.open(file) as image:
                image = image.convert("RGB")
                height = max(1, round(image.height * width / image.width))
                thumbs.append((caption, image.resize((width, height))))
        except (OSError, UnidentifiedImageError):
            thumbs.append((caption, None))
    columns = max(1, math.ceil(math.sqrt(len(thumbs))))
    rows = max(1, math.ceil(len(thumbs) / columns))
    cell = max([t.height for _, t in thumbs if t is not None] or [width // 2]) + CAPTION_HEIGHT
    grid = Image.new("RGB", (columns * width, rows * cell), "white")
    draw = ImageDraw.Draw(grid)
    for i, (caption, thumb) in enumerate(thumbs):
        x, y = (i % columns) * width, (i // columns) * cell
        draw.text((x + 4, y + 3), caption, fill="black")
        if thumb is not None:
            grid.paste(thumb, (x, y + CAPTION_HEIGHT))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return Path(path)
