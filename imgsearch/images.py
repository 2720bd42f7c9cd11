"""Decoding of uploaded images: formats, modes, orientation and size limits."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImage

# Pillow's own bomb check is replaced by ours (which names the limit), so it is switched off here.
Image.MAX_IMAGE_PIXELS = None

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds that keep a hostile or broken upload from exhausting memory or time."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000


DEFAULT_LIMITS = Limits()


def decode(data: bytes, *, min_side: int = 0, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """Decode bytes to an upright RGB image.

    `min_side` lets JPEG decode at a reduced scale (Pillow `draft`) as long as both sides stay at
    least that long. Raises `InvalidImage` with the reason for anything that is not a usable image.
    """
    if len(data) == 0:
        raise InvalidImage("empty file (0 bytes)", code="empty")
    if len(data) > limits.max_bytes:
        raise InvalidImage(
            f"file is {len(data)} bytes, over the {limits.max_bytes}-byte limit", code="too_large"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > limits.max_pixels:
                raise InvalidImage(
                    f"image is {width}x{height} = {width * height} pixels, over the "
                    f"{limits.max_pixels}-pixel limit",
                    code="too_large",
                )
            if image.format == "JPEG" and min_side > 0:
                image.draft("RGB", (min_side, min_side))
            image.load()
            upright: Image.Image = ImageOps.exif_transpose(image) or image
            return to_rgb(upright)
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage("not a recognised image (supported: JPEG, PNG, GIF, WebP, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise InvalidImage(f"corrupt or truncated image: {error}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") else max(float(values.max()), 1.0)
        if mode == "F":
            low, high = float(values.min()), float(values.max())
            values, top = values - low, max(high - low, 1e-12)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or image.mode == "RGBA":
        rgba = (image.convert("LA") if image.mode == "La" else image).convert("RGBA")  # no La→RGBA in Pillow
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
