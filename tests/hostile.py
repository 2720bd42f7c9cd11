"""A corpus of hostile and malformed inputs, each with the answer the indexer must give.

`build(folder)` writes one entry per kind (files, a FIFO, links to devices, a sparse file, a folder, a
name that is not UTF-8); `run(kind, path, embedder)` answers it the way `imgsearch index` and the
ingest Lambda do (read with `imgsearch.files.read_file`, then `Embedder.embed_bytes`) in a thread
with a timeout, and measures the peak RSS it adds. Used by tests/unit/test_hostile_inputs.py and
scripts/hostile_inputs.py.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from imgsearch.embed import Embedder
from imgsearch.errors import InvalidImage
from imgsearch.files import read_file
from imgsearch.images import DEFAULT_LIMITS

from .memory import reset_peak, status_kb

INDEXED = "indexed"
MAX_BYTES = DEFAULT_LIMITS.max_bytes
MAX_PIXELS = DEFAULT_LIMITS.max_pixels


@dataclass(frozen=True)
class Kind:
    """One kind of input: where it goes in the corpus folder, how to make it, what must be answered."""

    name: str
    file: str  # name in the corpus folder (may hold surrogate escapes: a name that is not UTF-8)
    expect: str  # INDEXED or the rejection code
    make: Callable[[Path], None]
    scanned: bool = True  # False: `imgsearch index` walks into it (a folder), so it is not reported


@dataclass(frozen=True)
class Outcome:
    kind: str
    size: int | None  # bytes (st_size) of a regular file; None for anything else
    answer: str  # INDEXED or the rejection code
    reason: str
    peak_mb: float  # peak RSS added while answering (VmHWM after - VmRSS before)
    seconds: float


# --- encoders ------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 96, height: int = 72, *, seed: int = 0) -> Image.Image:
    """A small photo-like image (gradient plus noise)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8), "RGB")


def flat(mode: str, width: int, height: int, colour: object = 90) -> bytes:
    """A large single-colour PNG (small on disk, full size once decoded)."""
    return encode(Image.new(mode, (width, height), colour), "PNG", compress_level=1)


def noise_png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(width + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "PNG")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(
    width: int, height: int, *, rows: bytes | None, depth: int = 8, colour: int = 2, extra: bytes = b""
) -> bytes:
    """A PNG written by hand: `rows` is the raw scanline data (filter bytes included); None: no IDAT."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    data = png_chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + header + extra + data + png_chunk(b"IEND", b"")


def zero_png(width: int, height: int) -> bytes:
    """A real decompression bomb: a valid RGB PNG of zeros, deflated ~1000:1."""
    row = b"\0" * (1 + 3 * width)
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(row * 100) for _ in range(height // 100)) + squeeze.flush()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def with_app1(jpeg: bytes, body: bytes) -> bytes:
    """A JPEG with an APP1 (EXIF) segment inserted after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def exif_orientation_ascii() -> bytes:
    """An EXIF block whose Orientation is the text "abc" (wrong type)."""
    entry = struct.pack(">HHI4s", 0x0112, 2, 4, b"abc\0")
    return b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01" + entry + b"\0\0\0\0"


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    descriptor = data.index(b",", 13)
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)  # first image
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A hand-written grey TIFF header: one strip of 4 bytes, whatever the size says."""
    strip = 8 + 2 + 12 * 8 + 4
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    entries += [(273, 4, 1, strip), (278, 4, 1, height), (279, 4, 1, 4)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0" * 4


def bmp_claiming(width: int, height: int, *, depth: int = 24) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, depth, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 12, 0, 0, 54) + info + b"\0" * 12


def corrupt(data: bytes, *, at: float = 0.5, count: int = 16) -> bytes:
    broken = bytearray(data)
    start = int(len(broken) * at)
    broken[start : start + count] = bytes(b ^ 0xA5 for b in broken[start : start + count])
    return bytes(broken)


def corrupt_webp() -> bytes:
    """A lossy WebP whose VP8 frame lost its start code (lossy data elsewhere decodes to noise)."""
    webp = encode(photo(), "WEBP")
    start = webp.index(b"\x9d\x01\x2a")
    return webp[:start] + b"\0\0\0" + webp[start + 3 :]


def webp_claiming(width: int, height: int) -> bytes:
    """A WebP of only a VP8X header: canvas width × height, no image data."""
    chunk = b"VP8X" + struct.pack("<I", 10) + bytes([0x10, 0, 0, 0])
    chunk += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def gif_frames(count: int) -> bytes:
    frames = [photo(48, 32, seed=i).quantize(16) for i in range(count)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)


def float_tiff(*, hostile: bool) -> bytes:
    values = np.linspace(-2.0, 3.0, 96 * 72, dtype=np.float32).reshape(72, 96)
    if hostile:
        values[:10], values[10:20], values[20:30] = np.nan, np.inf, -np.inf
    return encode(Image.fromarray(values, "F"), "TIFF")


def png16_rgb() -> bytes:
    ramp = np.linspace(0, 65535, 96).astype(">u2")
    pixels = np.stack([np.tile(ramp, (72, 1)), np.tile(ramp[::-1], (72, 1)), np.full((72, 96), 30000, ">u2")], 2)
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return png(96, 72, rows=rows, depth=16, colour=2)


def palette_transparent() -> bytes:
    image = photo().quantize(8)
    return encode(image, "PNG", transparency=0)


def one_bit() -> bytes:
    return encode(photo().convert("1"), "PNG")


def zip_of_png() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inside.png", encode(photo(), "PNG"))
    return buffer.getvalue()


# --- writers (each makes one entry at `path`) --------------------------------------------------------


def data(make: Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(make())


def sparse(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            handle.truncate(size)  # no blocks written: a hole the size of `size`

    return write


def symlink(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def folder(path: Path) -> None:
    path.mkdir()
    (path / ".keep").write_bytes(b"")  # hidden: the walk skips it


def loop(path: Path) -> None:
    os.symlink(path.name, path)


def orientation_jpeg(value: int, size: tuple[int, int] = (96, 72)) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = value
    if size[0] * size[1] > 1_000_000:  # large: smooth gradients (noise would take seconds to make)
        ramp = Image.linear_gradient("L").resize(size)
        image = Image.merge("RGB", (ramp, ramp.rotate(180), Image.new("L", size, 128)))
    else:
        image = photo(*size)
    return encode(image, "JPEG", exif=exif, quality=90)


KINDS: list[Kind] = [
    # the reproductions: extreme aspect ratios far under the pixel limit
    Kind("png_20000x1", "wide_20000x1.png", "extreme_aspect", data(lambda: noise_png(20000, 1))),
    Kind("png_40000x1", "wide_40000x1.png", "extreme_aspect", data(lambda: noise_png(40000, 1))),
    Kind("png_1x20000", "tall_1x20000.png", "extreme_aspect", data(lambda: noise_png(1, 20000))),
    Kind("png_100x1_at_aspect_limit", "wide_100x1.png", INDEXED, data(lambda: noise_png(100, 1))),
    Kind("jpeg_6400x64_at_aspect_limit", "panorama.jpg", INDEXED, data(lambda: encode(photo(6400, 64), "JPEG"))),
    Kind("png_30000x300_long_and_large", "strip.png", INDEXED, data(lambda: flat("RGB", 30000, 300))),
    # files that hang or exhaust a reader
    Kind("fifo_named_jpg", "x.jpg", "not_a_file", fifo),
    Kind("symlink_dev_zero", "zero.jpg", "not_a_file", symlink("/dev/zero")),
    Kind("symlink_dev_urandom", "urandom.png", "not_a_file", symlink("/dev/urandom")),
    Kind("sparse_10_gb", "sparse.jpg", "too_large", sparse(10 * 1024**3)),
    Kind("sparse_limit_plus_1", "over_limit.png", "too_large", sparse(MAX_BYTES + 1)),
    Kind("directory_named_jpg", "folder.jpg", "not_a_file", folder, scanned=False),
    Kind("dangling_symlink", "dangling.jpg", "unreadable", symlink("no-such-file.jpg")),
    Kind("symlink_loop", "loop.jpg", "unreadable", loop),
    Kind("name_not_utf8", os.fsdecode(b"bad\xff\xfe.png"), INDEXED, data(lambda: encode(photo(seed=7), "PNG"))),
    # not images
    Kind("empty_file", "empty.jpg", "empty", data(lambda: b"")),
    Kind("random_bytes", "random.jpg", "not_an_image", data(lambda: np.random.default_rng(1).bytes(4096))),
    Kind("text", "notes.png", "not_an_image", data(lambda: b"not an image, just words\n" * 40)),
    Kind("html", "page.jpg", "not_an_image", data(lambda: b"<!DOCTYPE html><html><body><img src=x></body></html>")),
    Kind(
        "svg_named_jpg",
        "vector.jpg",
        "not_an_image",
        data(lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9"/></svg>'),
    ),
    Kind("zip_named_jpg", "archive.jpg", "not_an_image", data(zip_of_png)),
    Kind("pdf_named_png", "document.png", "not_an_image", data(lambda: b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n")),
    Kind("ppm_outside_formats", "portable.jpg", "not_an_image", data(lambda: encode(photo(), "PPM"))),
    # corrupt or truncated
    Kind("truncated_jpeg", "cut.jpg", "not_an_image", data(lambda: encode(photo(384, 256), "JPEG")[:3000])),
    Kind("jpeg_header_only", "header.jpg", "not_an_image", data(lambda: encode(photo(), "JPEG")[:200])),
    Kind("truncated_png", "cut.png", "not_an_image", data(lambda: encode(photo(384, 256), "PNG")[:5000])),
    Kind("png_bad_crc", "crc.png", "not_an_image", data(lambda: corrupt(encode(photo(), "PNG")))),
    Kind("corrupt_webp", "broken.webp", "not_an_image", data(corrupt_webp)),
    Kind("bmp_absurd_depth", "depth.bmp", "not_an_image", data(lambda: bmp_claiming(2, 2, depth=99))),
    Kind("png_idat_too_short", "short.png", "not_an_image", data(lambda: png(100, 100, rows=b"\0" * 10))),
    # decompression bombs and headers claiming huge sizes
    Kind("png_header_100000x100000", "bomb_header.png", "too_large", data(lambda: png(100_000, 100_000, rows=None))),
    Kind("jpeg_header_65500x65500", "bomb_header.jpg", "too_large", data(lambda: jpeg_claiming(65500, 65500))),
    Kind("gif_header_65535x65535", "bomb_header.gif", "too_large", data(lambda: gif_claiming(65535, 65535))),
    Kind("tiff_header_100000x100000", "bomb_header.tif", "too_large", data(lambda: tiff_claiming(100_000, 100_000))),
    Kind("bmp_header_100000x100000", "bomb_header.bmp", "too_large", data(lambda: bmp_claiming(100_000, 100_000))),
    Kind("bmp_height_minus_2_31", "negative.bmp", "too_large", data(lambda: bmp_claiming(2, -(2**31)))),
    Kind("webp_header_16384x16384", "bomb_header.webp", "not_an_image", data(lambda: webp_claiming(16384, 16384))),
    Kind("png_bomb_9000x9000_zeros", "bomb.png", "too_large", data(lambda: zero_png(9000, 9000))),
    Kind("png_8001x8000_over_pixel_limit", "over_pixels.png", "too_large", data(lambda: png(8001, 8000, rows=None))),
    Kind(
        "png_ztxt_bomb_100_mb",
        "text_bomb.png",
        "not_an_image",
        data(lambda: png(4, 4, rows=b"\0" * 52, extra=png_chunk(b"zTXt", b"c\0\0" + zlib.compress(b"\0" * (100 << 20))))),
    ),
    Kind(
        "png_idat_inflates_to_100_mb",
        "idat_bomb.png",
        INDEXED,
        data(lambda: png(1, 1, rows=b"\0" * (100 << 20))),
    ),
    # large but legal: at the pixel limit, in the widest modes (4 bytes a pixel)
    Kind("png_8000x8000_rgb_at_limit", "large_rgb.png", INDEXED, data(lambda: flat("RGB", 8000, 8000, (90, 120, 200)))),
    Kind("png_8000x8000_rgba_at_limit", "large_rgba.png", INDEXED, data(lambda: flat("RGBA", 8000, 8000, (9, 9, 9, 99)))),
    Kind("png_8000x8000_16bit_grey", "large_grey16.png", INDEXED, data(lambda: flat("I;16", 8000, 8000, 30000))),
    Kind("jpeg_8000x6000_rotated", "large_rotated.jpg", INDEXED, data(lambda: orientation_jpeg(6, (8000, 6000)))),
    # unusual but valid
    Kind("image_1x1", "dot.png", INDEXED, data(lambda: encode(Image.new("RGB", (1, 1), (250, 0, 0)), "PNG"))),
    Kind("gif_200_frames", "animated.gif", INDEXED, data(lambda: gif_frames(200))),
    Kind("png_16_bit_rgb", "deep.png", INDEXED, data(png16_rgb)),
    Kind("png_1_bit", "bilevel.png", INDEXED, data(one_bit)),
    Kind("png_palette_transparency", "palette.png", INDEXED, data(palette_transparent)),
    Kind("png_la", "grey_alpha.png", INDEXED, data(lambda: encode(photo().convert("LA"), "PNG"))),
    Kind("jpeg_cmyk", "print.jpg", INDEXED, data(lambda: encode(photo().convert("CMYK"), "JPEG"))),
    Kind(
        "tiff_i16",
        "scan.tif",
        INDEXED,
        data(lambda: encode(Image.fromarray(np.arange(96 * 72, dtype=np.uint16).reshape(72, 96) * 9), "TIFF")),
    ),
    Kind("tiff_float", "depth.tif", INDEXED, data(lambda: float_tiff(hostile=False))),
    Kind("tiff_float_nan_inf", "nan.tif", INDEXED, data(lambda: float_tiff(hostile=True))),
    Kind("exif_orientation_9999", "orient_9999.jpg", INDEXED, data(lambda: orientation_jpeg(9999))),
    Kind(
        "exif_orientation_text",
        "orient_text.jpg",
        INDEXED,
        data(lambda: with_app1(encode(photo(), "JPEG"), exif_orientation_ascii())),
    ),
    Kind(
        "exif_block_garbage",
        "exif_garbage.jpg",
        INDEXED,
        data(lambda: with_app1(encode(photo(), "JPEG"), b"Exif\x00\x00" + np.random.default_rng(2).bytes(300))),
    ),
    Kind(
        "jpeg_icc_profile_8_mb",
        "icc.jpg",
        INDEXED,
        data(lambda: encode(photo(), "JPEG", icc_profile=np.random.default_rng(3).bytes(8 << 20))),
    ),
    Kind(
        "png_text_chunk_20_mb",
        "text.png",
        INDEXED,
        data(lambda: encode(photo(), "PNG", pnginfo=_text_info(20 << 20))),
    ),
]


def _text_info(size: int) -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "a" * size)
    return info


GOOD = {f"good_{i}.{'png' if i % 2 else 'jpg'}": i for i in range(4)}  # ordinary photos beside them


def build(folder: Path) -> dict[str, Path]:
    """Write every kind (and GOOD photos) into `folder`; returns kind name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in KINDS:
        path = folder / kind.file
        kind.make(path)
        paths[kind.name] = path
    for name, seed in GOOD.items():
        image = photo(160 + 16 * seed, 120, seed=100 + seed)
        image.save(folder / name, quality=90)
    return paths


# --- answering and measuring ---------------------------------------------------------------------


def answer(path: Path, embedder: Embedder) -> tuple[str, str]:
    """(INDEXED or the rejection code, reason) as `imgsearch index` answers one file."""
    try:
        data = read_file(path, limit=embedder.limits.max_bytes)
    except InvalidImage as error:
        return error.code, error.reason
    except OSError as error:
        return "unreadable", f"cannot read: {error}"
    vectors, failures = embedder.embed_bytes([data])
    if failures:
        return failures[0].code, failures[0].reason
    return (INDEXED, "") if len(vectors) == 1 else ("lost", "no vector and no failure")


def run(kind: Kind, path: Path, embedder: Embedder, *, timeout: float = 60.0) -> Outcome:
    """Answer one input in a daemon thread (a hang fails, it cannot block the caller) and measure it."""
    result: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            result.append(answer(path, embedder))
        except BaseException as error:  # reported below, with the kind
            errors.append(error)

    size = path.stat().st_size if path.is_file() and not path.is_symlink() else None
    reset_peak()
    before = status_kb("VmRSS")
    started = time.perf_counter()
    thread = threading.Thread(target=work, name=f"hostile-{kind.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    seconds = time.perf_counter() - started
    peak_mb = (status_kb("VmHWM") - before) / 1024
    if thread.is_alive():
        return Outcome(kind.name, size, "hung", f"no answer after {timeout:.0f} s", peak_mb, seconds)
    if errors:
        error = errors[0]
        return Outcome(kind.name, size, "crashed", f"{type(error).__name__}: {error}", peak_mb, seconds)
    code, reason = result[0]
    return Outcome(kind.name, size, code, reason, peak_mb, seconds)


def warm_up(embedder: Embedder) -> None:
    """Run the model once (and the thread pool), so the first kind's peak is its own."""
    for _ in range(2):
        embedder.embed_bytes([encode(photo(), "JPEG"), encode(photo(), "PNG")])
