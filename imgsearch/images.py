"""Decoding of uploaded images: formats, modes, orientation and size limits.

Memory is bounded by one full-size buffer, the decoded image in its own mode (at most
`Limits.max_pixels` × 4 bytes: Pillow keeps RGB, RGBA, CMYK, I and F at 4 bytes a pixel). What
follows (cropping to the region the caller uses, reducing, turning upright, converting to RGB) works a
band of rows at a time into an output no larger than the caller needs, then releases the source.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .errors import InvalidImage

# Pillow's own bomb check is replaced by ours (which names the limit), so it is switched off here.
Image.MAX_IMAGE_PIXELS = None

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
SMALL_PIXELS = 1 << 22  # up to 4 MP an image is used whole, never cropped or reduced (16 MB in RGB)
REDUCE_GAP = 4  # a larger one is reduced (box average) while both sides stay at least 4 × min_side
BAND_PIXELS = 1 << 20  # source pixels converted at a time
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)  # the transpositions that swap width and height
Box = tuple[int, int, int, int]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds that keep a hostile or broken upload from exhausting memory or time."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_aspect: float = 100.0  # long side : short side


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, kw_only=True)
class Decoded:
    """An upright RGB image and where it lies in the whole upright image it was decoded from."""

    image: Image.Image
    size: tuple[int, int]  # the whole upright image (after any JPEG draft)
    box: Box  # the part of the whole that `image` shows
    factor: int = 1  # each pixel of `image` averages factor × factor pixels of the whole

    @classmethod
    def whole(cls, image: Image.Image) -> Decoded:
        return cls(image=image, size=image.size, box=(0, 0, *image.size))

    @property
    def is_whole(self) -> bool:
        return self.factor == 1 and self.box == (0, 0, *self.size)

    def locate(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box in the whole image's pixels, in `image`'s pixels (clamped to it)."""
        left, top = self.box[0], self.box[1]
        width, height = self.image.size
        x0, y0, x1, y1 = ((v - o) / self.factor for v, o in zip(box, (left, top, left, top), strict=True))
        return (_clamp(x0, width), _clamp(y0, height), _clamp(x1, width), _clamp(y1, height))


def _clamp(value: float, high: int) -> float:
    return min(max(value, 0.0), float(high))


def decode(data: bytes, *, min_side: int = 0, limits: Limits = DEFAULT_LIMITS) -> Image.Image:
    """Decode bytes to an upright RGB image.

    `min_side` lets a large image decode smaller as long as both sides stay at least that long: JPEG at
    a reduced scale (Pillow `draft`), and any image over `SMALL_PIXELS` by an integer factor (Pillow
    `reduce`) while both sides stay at least `REDUCE_GAP` × `min_side`. Raises `InvalidImage` with the
    reason for anything that is not a usable image.
    """
    return decode_part(data, min_side=min_side, limits=limits).image


def decode_part(
    data: bytes, *, min_side: int = 0, centre: float | None = None, limits: Limits = DEFAULT_LIMITS
) -> Decoded:
    """Decode the part of an image a caller uses: as `decode`, and with `centre` (an aspect ratio,
    1.0 for the square a centre crop takes from) an image over `SMALL_PIXELS` that is more than twice
    as long as that centred region is cropped to it; the result says where it lies in the whole.
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
            check_size(image.size, limits)
            if image.format == "JPEG" and min_side > 0:
                image.draft("RGB", (min_side, min_side))
            image.load()
            return upright_rgb(image, min_side=min_side, centre=centre)
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage("not a recognised image (supported: JPEG, PNG, GIF, WebP, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as error:
        raise InvalidImage(f"corrupt or truncated image: {error}") from None


def check_size(size: tuple[int, int], limits: Limits) -> None:
    """Refuse, before any pixel is decoded, an image with too many pixels or too extreme a shape."""
    width, height = size
    if width * height > limits.max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} = {width * height} pixels, over the "
            f"{limits.max_pixels}-pixel limit",
            code="too_large",
        )
    short, long = min(width, height), max(width, height)
    if short < 1:
        raise InvalidImage(f"corrupt image: it declares {width}x{height} pixels")
    if long > limits.max_aspect * short:
        raise InvalidImage(
            f"image is {width}x{height}, an aspect ratio of {long / short:.0f}:1, over the "
            f"{limits.max_aspect:g}:1 limit: too long and thin to embed (crop it to a usable shape)",
            code="extreme_aspect",
        )


def plan(size: tuple[int, int], *, min_side: int = 0, centre: float | None = None) -> tuple[Box, int]:
    """The part of an image (a box) the caller uses and the integer factor it can be reduced by.

    Images of at most `SMALL_PIXELS` are used whole and unreduced, exactly as they always were.
    """
    width, height = size
    left, top, right, bottom = 0, 0, width, height
    if width * height <= SMALL_PIXELS:
        return (left, top, right, bottom), 1
    short, long = min(width, height), max(width, height)
    if centre:
        margin = 2 + short // max(min_side, 1)  # room for the resampling filter around the region
        keep = math.ceil(short * centre) + 2 * margin
        if long > 2 * keep:
            keep += (long - keep) % 2  # exactly centred
            start = (long - keep) // 2
            if width > height:
                left, right = start, start + keep
            else:
                top, bottom = start, start + keep
    factor = max(1, short // (REDUCE_GAP * min_side)) if min_side > 0 else 1
    if factor > 1:  # whole blocks only, so every reduced pixel maps back onto the box exactly
        left, right = _trim(left, right, factor)
        top, bottom = _trim(top, bottom, factor)
    return (left, top, right, bottom), factor


def _trim(start: int, end: int, factor: int) -> tuple[int, int]:
    spare = (end - start) % factor
    return start + spare // 2, end - (spare - spare // 2)


def upright_rgb(image: Image.Image, *, min_side: int = 0, centre: float | None = None) -> Decoded:
    """The part of a loaded image that `plan` picks, reduced, upright and in RGB; releases the source.

    Works a band of rows at a time (crop, convert, reduce, transpose, paste), so the only full-size
    buffer is the source's own; the pixels equal converting, reducing and turning the whole at once.
    """
    method = TRANSPOSE.get(orientation(image))
    size = image.size
    box, factor = plan(size, min_side=min_side, centre=centre)
    upright = (size[1], size[0]) if method in SWAPS else size
    where = _transposed(box, size, method)
    if image.mode == "RGB" and method is None and factor == 1 and box == (0, 0, *size):
        return Decoded(image=image, size=upright, box=where)
    extrema = _extrema(image) if image.mode in ("I", "F") else None
    left, top, right, bottom = box
    width, height = (right - left) // factor, (bottom - top) // factor
    out = Image.new("RGB", (height, width) if method in SWAPS else (width, height))
    rows = max(factor, BAND_PIXELS // (right - left) // factor * factor)
    for y in range(top, bottom, rows):
        band = to_rgb(image.crop((left, y, right, min(y + rows, bottom))), extrema=extrema)
        if factor > 1:
            band = band.reduce(factor)
        first = (y - top) // factor
        last = first + band.height
        if method is not None:
            band = band.transpose(method)
        out.paste(band, _place(method, first, last, height))
    image.close()  # releases the full-size buffer
    return Decoded(image=out, size=upright, box=where, factor=factor)


def _transposed(box: Box, size: tuple[int, int], method: Image.Transpose | None) -> Box:
    """Where a box of a stored image lies once the image is transposed by `method`."""
    left, top, right, bottom = box
    width, height = size
    return {
        None: box,
        Image.Transpose.FLIP_LEFT_RIGHT: (width - right, top, width - left, bottom),
        Image.Transpose.FLIP_TOP_BOTTOM: (left, height - bottom, right, height - top),
        Image.Transpose.ROTATE_180: (width - right, height - bottom, width - left, height - top),
        Image.Transpose.TRANSPOSE: (top, left, bottom, right),
        Image.Transpose.ROTATE_90: (top, width - right, bottom, width - left),
        Image.Transpose.ROTATE_270: (height - bottom, left, height - top, right),
        Image.Transpose.TRANSVERSE: (height - bottom, width - right, height - top, width - left),
    }[method]


def _place(method: Image.Transpose | None, first: int, last: int, height: int) -> tuple[int, int]:
    """Where rows first..last of an image `height` rows high land once transposed by `method`."""
    if method in (None, Image.Transpose.FLIP_LEFT_RIGHT):
        return 0, first
    if method in (Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180):
        return 0, height - last
    if method in (Image.Transpose.ROTATE_90, Image.Transpose.TRANSPOSE):
        return first, 0
    return height - last, 0  # ROTATE_270, TRANSVERSE


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when there is none or the EXIF block cannot be read."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, KeyError, TypeError):
        return 1
    return value if isinstance(value, int) and value in TRANSPOSE else 1


def _extrema(image: Image.Image) -> tuple[float, float]:
    """(min, max) of the finite values of an I or F image, a band at a time (no full-size copy)."""
    low, high = math.inf, -math.inf
    width, height = image.size
    rows = max(1, BAND_PIXELS // width)
    for y in range(0, height, rows):
        values = np.asarray(image.crop((0, y, width, min(y + rows, height))), dtype=np.float32)
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (low, high) if low <= high else (0.0, 0.0)


def to_rgb(image: Image.Image, *, extrema: tuple[float, float] | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white.

    I and F images are stretched to 0..255 by their (min, max); pass `extrema` (of the whole image)
    to convert a part of one exactly as the whole would be. Non-finite values count as the extremes.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in WIDE_MODES:
        values = np.asarray(image, dtype=np.float32)
        if extrema is None:
            finite = values[np.isfinite(values)]
            extrema = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        low, high = extrema
        values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
        top = 65535.0 if mode.startswith("I;16") else max(high, 1.0)
        if mode == "F":
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
