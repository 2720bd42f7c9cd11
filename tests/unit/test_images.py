"""Decoding of uploads (imgsearch.images): orientation, modes, formats, JPEG draft, limits, bad input."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from imgsearch import images
from imgsearch.errors import InvalidImage
from imgsearch.images import DEFAULT_LIMITS, Limits, decode, to_rgb

RED = (220, 20, 20)
BLUE = (20, 20, 220)
GREY = (128, 128, 128)
WHITE = (255, 255, 255)


# --- helpers ------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int, height: int, *, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written by hand: `rows` is the raw scanline data (filter bytes included); None: no IDAT."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = png_chunk(b"IHDR", header)
    if rows is not None:
        body += png_chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + body + png_chunk(b"IEND", b"")


def pixel(image: Image.Image, x: int, y: int) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)[y, x]


def assert_colour(image: Image.Image, x: int, y: int, expected: tuple[int, int, int], tol: int = 40) -> None:
    got = pixel(image, x, y)
    assert np.abs(got - np.asarray(expected)).max() <= tol, (
        f"pixel ({x},{y}) is {got.tolist()}, expected ~{expected}"
    )


def two_colour(size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image.convert(mode) if mode != "RGB" else image


def noisy(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A photo-like image (smooth gradient plus noise) so JPEGs have realistic sizes."""
    width, height = size
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def assert_invalid(
    data: bytes, *, code: str, starts: str = "", limits: Limits = DEFAULT_LIMITS
) -> InvalidImage:
    with pytest.raises(InvalidImage) as caught:
        decode(data, limits=limits)
    error = caught.value
    assert error.code == code, f"code {error.code!r} ({error.reason})"
    assert error.reason.startswith(starts), error.reason
    assert str(error) == error.reason
    return error


# --- EXIF orientation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [
        (1, (96, 48), "top-left"),
        (3, (96, 48), "bottom-right"),  # rotated 180°
        (6, (48, 96), "top-right"),  # stored rotated: display turns it 90° clockwise
        (8, (48, 96), "bottom-left"),  # display turns it 90° counter-clockwise
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt: str, orientation: int, size: tuple[int, int], corner: str) -> None:
    stored = Image.new("RGB", (96, 48), GREY)
    stored.paste(RED, (0, 0, 24, 24))  # the marked corner: top-left as stored
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    params = {"quality": 95} if fmt == "JPEG" else {}
    decoded = decode(encode(stored, fmt, exif=exif, **params))

    assert decoded.mode == "RGB"
    assert decoded.size == size
    w, h = decoded.size
    corners = {
        "top-left": (4, 4),
        "top-right": (w - 5, 4),
        "bottom-left": (4, h - 5),
        "bottom-right": (w - 5, h - 5),
    }
    for name, (x, y) in corners.items():
        assert_colour(decoded, x, y, RED if name == corner else GREY)


def test_orientation_and_jpeg_draft_together() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    data = encode(noisy((1024, 768)), "JPEG", exif=exif, quality=90)
    decoded = decode(data, min_side=64)
    assert decoded.size == (96, 128)  # drafted 1/8 (128x96), then turned upright


# --- modes --------------------------------------------------------------------------------------------


def test_mode_l_png() -> None:
    decoded = decode(encode(Image.new("L", (20, 10), 77), "PNG"))
    assert decoded.mode == "RGB" and decoded.size == (20, 10)
    assert pixel(decoded, 3, 3).tolist() == [77, 77, 77]


def test_mode_1_png() -> None:
    image = Image.new("1", (20, 10), 0)
    image.paste(1, (10, 0, 20, 10))
    decoded = decode(encode(image, "PNG"))
    assert decoded.mode == "RGB"
    assert pixel(decoded, 2, 2).tolist() == [0, 0, 0]
    assert pixel(decoded, 15, 2).tolist() == [255, 255, 255]


def test_mode_la_png_composites_on_white() -> None:
    image = Image.new("LA", (20, 10), (0, 255))  # opaque black
    image.paste((0, 0), (10, 0, 20, 10))  # fully transparent black
    source = Image.open(io.BytesIO(encode(image, "PNG")))
    assert source.mode == "LA"
    decoded = decode(encode(image, "PNG"))
    assert decoded.mode == "RGB"
    assert pixel(decoded, 2, 2).tolist() == [0, 0, 0]
    assert pixel(decoded, 15, 2).tolist() == [255, 255, 255]


def test_mode_p_without_transparency() -> None:
    image = two_colour().quantize(colors=4)
    assert image.mode == "P"
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    assert "transparency" not in Image.open(io.BytesIO(data)).info
    decoded = decode(data)
    assert decoded.mode == "RGB" and decoded.size == (40, 30)
    assert_colour(decoded, 5, 5, RED, tol=2)
    assert_colour(decoded, 35, 5, BLUE, tol=2)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_p_with_transparency_composites_on_white(fmt: str) -> None:
    image = Image.new("P", (20, 10), 1)
    image.putpalette([0, 0, 0] + list(RED) + list(BLUE) + [0, 0, 0] * 253)
    image.paste(0, (10, 0, 20, 10))  # palette index 0 (black) is the transparent one
    data = encode(image, fmt, transparency=0)
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and opened.info.get("transparency") == 0
    decoded = decode(data)
    assert decoded.mode == "RGB"
    assert pixel(decoded, 2, 2).tolist() == list(RED)
    assert pixel(decoded, 15, 2).tolist() == [255, 255, 255]  # transparent: white, not black


def test_mode_rgba_composites_on_white() -> None:
    image = Image.new("RGBA", (30, 10), (*RED, 255))
    image.paste((0, 0, 0, 0), (10, 0, 20, 10))  # transparent black
    image.paste((0, 0, 0, 128), (20, 0, 30, 10))  # half-transparent black
    decoded = decode(encode(image, "PNG"))
    assert decoded.mode == "RGB"
    assert pixel(decoded, 2, 2).tolist() == list(RED)
    assert pixel(decoded, 15, 2).tolist() == [255, 255, 255]
    assert np.abs(pixel(decoded, 25, 2) - 127).max() <= 2


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_mode_cmyk(fmt: str) -> None:
    image = Image.new("CMYK", (20, 10), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(image, fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode(data)
    assert decoded.mode == "RGB" and decoded.size == (20, 10)
    assert_colour(decoded, 5, 5, (255, 0, 0), tol=10)


def test_mode_i16_png_gradient_uses_full_range() -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    data = encode(Image.fromarray(np.tile(ramp, (8, 1))), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode(data)
    assert decoded.mode == "RGB" and decoded.size == (256, 8)
    row = np.asarray(decoded)[4, :, 0].astype(int)
    assert row.min() == 0 and row.max() == 255, f"range {row.min()}..{row.max()}: not the full 0..255"
    assert (np.diff(row) >= 0).all(), "the gradient is not monotonic"
    assert len(np.unique(row)) > 200, "the gradient collapsed to a few levels (clipped?)"
    assert abs(row[128] - 128) <= 2
    assert (np.asarray(decoded)[..., 0] == np.asarray(decoded)[..., 2]).all()  # grey


def test_16_bit_rgb_png_decodes() -> None:
    # 2x1 pixels, 16 bits per channel: (0xFFFF, 0, 0x8000) and (0, 0xFFFF, 0).
    rows = b"\x00" + struct.pack(">6H", 0xFFFF, 0, 0x8000, 0, 0xFFFF, 0)
    decoded = decode(png_bytes(2, 1, bit_depth=16, colour_type=2, rows=rows))
    assert decoded.mode == "RGB"
    assert pixel(decoded, 0, 0).tolist() == [255, 0, 128]
    assert pixel(decoded, 1, 0).tolist() == [0, 255, 0]


MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV", "I", "F")


@pytest.mark.parametrize("mode", [*MODES, "I;16"])
def test_to_rgb_accepts_every_common_mode(mode: str) -> None:
    image = Image.new(mode, (7, 5))
    converted = to_rgb(image)
    assert converted.mode == "RGB"
    assert converted.size == (7, 5)


def test_to_rgb_premultiplied_alpha_composites_on_white() -> None:
    transparent = Image.new("LA", (4, 4), (0, 0)).convert("La")
    assert pixel(to_rgb(transparent), 1, 1).tolist() == [255, 255, 255]
    opaque = Image.new("RGBA", (4, 4), (*RED, 255)).convert("RGBa")
    assert pixel(to_rgb(opaque), 1, 1).tolist() == list(RED)


def test_to_rgb_float_and_int_images_are_stretched() -> None:
    floats = Image.fromarray(np.linspace(-1.0, 3.0, 64, dtype=np.float32).reshape(8, 8), "F")
    grey = np.asarray(to_rgb(floats))[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    ints = Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 10, "I")
    grey = np.asarray(to_rgb(ints))[..., 0]
    assert grey.min() == 0 and grey.max() == 255


# --- formats ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "tol"),
    [
        ("JPEG", {"quality": 90}, 40),
        ("PNG", {}, 0),
        ("GIF", {}, 8),
        ("WEBP", {"quality": 90}, 40),
        ("WEBP", {"lossless": True}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_deflate"}, 0),
    ],
)
def test_formats_decode_to_rgb(fmt: str, params: dict[str, object], tol: int) -> None:
    data = encode(two_colour((40, 30)), fmt, **params)
    assert Image.open(io.BytesIO(data)).format == fmt
    decoded = decode(data)
    assert decoded.mode == "RGB" and decoded.size == (40, 30)
    assert_colour(decoded, 5, 15, RED, tol=tol)
    assert_colour(decoded, 35, 15, BLUE, tol=tol)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_first_frame(fmt: str) -> None:
    first, second = Image.new("RGB", (32, 24), RED), Image.new("RGB", (32, 24), BLUE)
    params: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(first, fmt, save_all=True, append_images=[second], duration=100, loop=0, **params)
    opened = Image.open(io.BytesIO(data))
    assert getattr(opened, "n_frames", 1) == 2
    decoded = decode(data)
    assert decoded.mode == "RGB" and decoded.size == (32, 24)
    assert_colour(decoded, 16, 12, RED, tol=8)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "PCX"])
def test_formats_outside_the_list_are_refused(fmt: str) -> None:
    data = encode(two_colour((32, 32)), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself could read it
    assert_invalid(data, code="not_an_image", starts="not a recognised image")


# --- JPEG draft ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return encode(noisy((1024, 768)), "JPEG", quality=85)


def test_jpeg_without_min_side_decodes_full_size(big_jpeg: bytes) -> None:
    assert decode(big_jpeg).size == (1024, 768)


@pytest.mark.parametrize(("min_side", "size"), [(64, (128, 96)), (200, (512, 384)), (384, (512, 384))])
def test_jpeg_draft_reduces_but_keeps_min_side(big_jpeg: bytes, min_side: int, size: tuple[int, int]) -> None:
    decoded = decode(big_jpeg, min_side=min_side)
    assert decoded.mode == "RGB"
    assert min(decoded.size) >= min_side
    assert decoded.size[0] < 1024, f"min_side={min_side} decoded at full size {decoded.size}"
    assert decoded.size == size  # JPEG scales by 1/2, 1/4 or 1/8 only


def test_jpeg_draft_never_goes_below_min_side(big_jpeg: bytes) -> None:
    assert decode(big_jpeg, min_side=700).size == (1024, 768)  # 1/2 would be 384 < 700
    assert decode(big_jpeg, min_side=2000).size == (1024, 768)  # never upscaled either


def test_draft_only_applies_to_jpeg() -> None:
    data = encode(noisy((256, 192)), "PNG")
    assert decode(data, min_side=32).size == (256, 192)


def test_grey_jpeg_draft_is_rgb() -> None:
    data = encode(noisy((512, 512)).convert("L"), "JPEG")
    decoded = decode(data, min_side=64)
    assert decoded.mode == "RGB" and decoded.size == (64, 64)


# --- limits -------------------------------------------------------------------------------------------


def test_byte_limit() -> None:
    data = encode(noisy((64, 48)), "PNG")
    assert decode(data, limits=Limits(max_bytes=len(data))).size == (64, 48)  # the limit itself is allowed
    error = assert_invalid(data, code="too_large", limits=Limits(max_bytes=len(data) - 1))
    assert f"{len(data) - 1}-byte limit" in error.reason
    assert str(len(data)) in error.reason


def test_pixel_limit() -> None:
    data = encode(noisy((50, 40)), "PNG")
    assert decode(data, limits=Limits(max_pixels=2000)).size == (50, 40)
    error = assert_invalid(data, code="too_large", limits=Limits(max_pixels=1999))
    assert "1999-pixel limit" in error.reason
    assert "50x40" in error.reason


def test_pixel_limit_counts_stored_pixels_even_with_draft() -> None:
    data = encode(noisy((1024, 768)), "JPEG")
    with pytest.raises(InvalidImage) as caught:
        decode(data, min_side=64, limits=Limits(max_pixels=100_000))
    assert caught.value.code == "too_large"


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (8001, 8000), (1, 2_000_000_000)])
def test_decompression_bomb_header_is_refused(width: int, height: int) -> None:
    """A PNG whose header declares a huge image (no pixel data at all) is refused by the default limit."""
    data = png_bytes(width, height, bit_depth=8, colour_type=2, rows=None)
    error = assert_invalid(data, code="too_large")
    assert f"{width}x{height}" in error.reason
    assert f"{DEFAULT_LIMITS.max_pixels}-pixel limit" in error.reason


BOMB_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from imgsearch.errors import InvalidImage
    from imgsearch.images import Limits, decode

    data = sys.stdin.buffer.read()
    limits = Limits(max_pixels=int(sys.argv[1]))
    with open("/proc/self/status") as status:
        vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    budget = vm + 256 * 1024 * 1024  # 256 MiB more address space than the interpreter holds now
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    try:
        image = decode(data, limits=limits)
    except InvalidImage as error:
        print("InvalidImage", error.code)
    except MemoryError:
        print("MemoryError")
    else:
        print("decoded", image.size)
    """
)


def zero_png(width: int, height: int) -> bytes:
    """A real decompression bomb: a valid RGB PNG of zeros, deflated ~250:1."""
    row = b"\0" * (1 + 3 * width)  # filter byte + pixels
    squeeze = zlib.compressobj(1)
    idat = b"".join(squeeze.compress(row * 100) for _ in range(height // 100)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to cap address space")
def test_decompression_bomb_is_refused_without_allocating() -> None:
    """A 9000x9000 PNG (1 MB on disk, 324 MB decoded) under a 256 MiB address-space cap: with the
    default limits it must give InvalidImage("too_large"); with the pixel limit lifted, the same file
    exhausts the cap (MemoryError), which shows the refusal happens before any pixel is allocated."""

    def run(data: bytes, max_pixels: int) -> str:
        done = subprocess.run(
            [sys.executable, "-c", BOMB_SCRIPT, str(max_pixels)],
            input=data,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        return done.stdout.decode().strip()

    default = DEFAULT_LIMITS.max_pixels
    assert run(encode(noisy((64, 48)), "PNG"), default) == "decoded (64, 48)"  # the harness works
    bomb = zero_png(9000, 9000)
    assert len(bomb) < 2_000_000
    assert run(bomb, default) == "InvalidImage too_large"
    assert run(bomb, 10**12) == "MemoryError"  # control: decoding it really would need the memory


# --- bad input ----------------------------------------------------------------------------------------


def test_empty_bytes() -> None:
    error = assert_invalid(b"", code="empty")
    assert "empty" in error.reason


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"\x00",
        b"hello, this is a text file, not an image\n" * 20,
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
    ],
    ids=["random", "one-byte", "text", "svg", "pdf"],
)
def test_not_an_image(data: bytes) -> None:
    error = assert_invalid(data, code="not_an_image", starts="not a recognised image")
    assert "JPEG" in error.reason  # names what is supported


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_truncated_generated_jpeg(fraction: float) -> None:
    data = encode(noisy((384, 256), seed=3), "JPEG", quality=90)
    assert_invalid(cut(data, fraction), code="not_an_image", starts="corrupt or truncated image")


def test_truncated_real_jpeg(corel1k) -> None:
    data = corel1k.read(corel1k.items[0])
    assert decode(data).size == (384, 256)
    assert_invalid(cut(data, 0.5), code="not_an_image", starts="corrupt or truncated image")


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "TIFF", "BMP"])
def test_truncated_other_formats(fmt: str) -> None:
    data = encode(noisy((128, 96), seed=4), fmt)
    with pytest.raises(InvalidImage) as caught:
        decode(cut(data, 0.5))
    assert caught.value.code == "not_an_image"


def test_jpeg_cut_inside_the_header() -> None:
    data = encode(noisy((64, 64)), "JPEG")
    for length in (2, 3, 10, 50):
        with pytest.raises(InvalidImage):
            decode(data[:length])


def test_png_with_a_corrupted_chunk() -> None:
    data = bytearray(encode(noisy((64, 48)), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: the CRC no longer matches
    assert_invalid(bytes(data), code="not_an_image", starts="corrupt or truncated image")


# --- bounded decoding of large images -----------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(20000, 1), (1, 20000), (101, 1)])
def test_aspect_limit_refuses_long_thin_images_naming_the_shape(width: int, height: int) -> None:
    data = png_bytes(width, height, bit_depth=8, colour_type=2, rows=None)  # refused from the header
    error = assert_invalid(data, code="extreme_aspect")
    assert f"{width}x{height}" in error.reason and "100:1 limit" in error.reason


def test_aspect_at_the_limit_is_decoded() -> None:
    assert decode(encode(noisy((100, 1)), "PNG")).size == (100, 1)


def test_a_large_image_is_reduced_while_both_sides_stay_at_least_4x_min_side() -> None:
    data = encode(Image.new("RGB", (3000, 2100), GREY), "PNG")  # 6.3 MP: over SMALL_PIXELS
    assert decode(data).size == (3000, 2100)  # no min_side: never reduced
    assert decode(data, min_side=200).size == (1500, 1050)  # 2100 // 800 = 2
    assert decode(data, min_side=600).size == (3000, 2100)  # 2100 < 4 * 600


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16", "F"])
def test_banded_decode_equals_converting_and_turning_the_whole(
    monkeypatch: pytest.MonkeyPatch, mode: str, orientation: int
) -> None:
    """upright_rgb works a few rows at a time (here: 9 rows a band); the result must not show it."""
    monkeypatch.setattr(images, "BAND_PIXELS", 9 * 101)
    monkeypatch.setattr(images, "SMALL_PIXELS", 0)  # reduce even this small image
    source = noisy((101, 67), seed=orientation)
    if mode in ("I;16", "F"):
        grey = np.asarray(source.convert("L"), dtype=np.float32) * 200
        source = Image.fromarray(grey.astype(np.uint16 if mode == "I;16" else np.float32))
    else:
        source = source.convert(mode)
    expected = to_rgb(source.copy()).crop((0, 0, 100, 66)).reduce(2)  # 67 rows // 2: whole blocks only
    method = images.TRANSPOSE.get(orientation)
    expected = expected.transpose(method) if method is not None else expected
    image = source.copy()
    image.getexif()[ExifTags.Base.Orientation] = orientation

    part = images.upright_rgb(image, min_side=8)  # 67 // (4 * 8) = 2

    assert part.factor == 2 and part.image.size == expected.size
    assert np.array_equal(np.asarray(part.image), np.asarray(expected))
    assert part.size == ((67, 101) if method in images.SWAPS else (101, 67))


def test_decoded_part_says_where_it_lies_in_the_upright_image() -> None:
    stored = Image.new("RGB", (9000, 600), GREY)  # 5.4 MP, 15:1: cropped to its centre
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned 90° clockwise: 600 x 9000
    part = images.decode_part(encode(stored, "PNG", exif=exif), min_side=100, centre=1.0)
    assert part.size == (600, 9000) and part.factor == 1
    left, top, right, bottom = part.box
    assert (left, right) == (0, 600) and bottom - top == part.image.height
    assert abs((top + bottom) / 2 - 4500) <= 0.5  # the region is centred
    assert part.image.size == (600, bottom - top) and bottom - top < 1000


def test_unreadable_exif_counts_as_no_orientation() -> None:
    jpeg = encode(noisy((48, 32)), "JPEG")
    app1 = b"Exif\x00\x00" + np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8).tobytes()
    data = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
    assert decode(data).size == (48, 32)


def test_float_image_with_nan_and_infinities_uses_the_finite_range() -> None:
    values = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    values[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    grey = np.asarray(to_rgb(Image.fromarray(values, "F")))[..., 0]
    assert grey[1:].min() < 20 and grey.max() == 255
    assert grey[0, 1] == 255 and grey[0, 2] == grey[0, 0] == 0  # +inf top, -inf and nan bottom
