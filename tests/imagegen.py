"""Synthetic test images whose content differs clearly from one seed to another."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def synthetic_image(seed: int, *, size: int = 128, fmt: str = "PNG", shapes: int = 3) -> bytes:
    """A random 4×4 colour field upscaled to size×size, with a few random ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
        (size, size), Image.BICUBIC
    )
    draw = ImageDraw.Draw(base)
    for _ in range(shapes):
        x, y = (int(v) for v in rng.integers(0, size - 40, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + 32, y + 32), fill=colour)
        else:
            draw.rectangle((x, y, x + 40, y + 20), fill=colour)
    buffer = io.BytesIO()
    base.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()
