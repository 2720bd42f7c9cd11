"""The arrays of an uncompressed .npz file as views over one read-only memory map (no copy, no parse).

The same works over the bytes of a file read whole (from S3): the arrays are views into those bytes,
so a segment costs its size once, not once for the download and again for each array copied out.

`np.savez` stores each member uncompressed, so every array's bytes lie contiguous in the file: a
reader maps the file and points arrays at those bytes. Pages are read from disk when first touched
and can be dropped again by the kernel, so a large segment costs little resident memory until it is
searched, and loading it costs a directory read, not a copy.
"""

from __future__ import annotations

import io
import mmap
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
from numpy.lib import format as npy

LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip local file header (30 bytes)


class _Raw(io.RawIOBase):
    """A seekable, read-only file over a bytes-like object, without copying it (io.BytesIO copies a
    bytearray)."""

    def __init__(self, data: bytes | bytearray | mmap.mmap) -> None:
        self.view, self.at = memoryview(data), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.at = max(0, offset + (0, self.at, len(self.view))[whence])
        return self.at

    def readinto(self, buffer: Any) -> int:
        part = self.view[self.at : self.at + len(buffer)]
        memoryview(buffer).cast("B")[: len(part)] = part
        self.at += len(part)
        return len(part)


def reader(data: bytes | bytearray | mmap.mmap) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(_Raw(data)))


class MappedNpz:
    """name → array view of a .npz file; `buffer(name)` gives a member's raw bytes (e.g. a graph)."""

    def __init__(self, source: Path | str | bytes | bytearray | mmap.mmap) -> None:
        self.map: mmap.mmap | bytes | bytearray
        path: Path | str
        if not isinstance(source, (Path, str)):  # read whole (a large object comes in a huge-page mapping)
            self.map, path = source, "<bytes>"
            archive_source: Path | str | BinaryIO = reader(source)  # reads the bytes in place (no copy)
        else:
            with open(source, "rb") as handle:
                self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            path = archive_source = source
        self.spans: dict[str, tuple[int, int]] = {}  # member → (offset of its .npy bytes, length)
        with zipfile.ZipFile(archive_source) as archive:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{path}: member {info.filename} is compressed; it cannot be mapped")
                fields = LOCAL_HEADER.unpack_from(self.map, info.header_offset)
                start = info.header_offset + LOCAL_HEADER.size + fields[-2] + fields[-1]
                self.spans[info.filename.removesuffix(".npy")] = (start, info.file_size)

    @property
    def files(self) -> list[str]:
        return list(self.spans)

    def __contains__(self, name: str) -> bool:
        return name in self.spans

    def __getitem__(self, name: str) -> np.ndarray:
        start, size = self.spans[name]
        header = io.BytesIO(self.map[start : start + min(size, 65536)])
        version = npy.read_magic(header)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(header)
        if dtype.hasobject:
            raise ValueError(f"member {name} holds Python objects; it cannot be mapped")
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(self.map, dtype=dtype, count=count, offset=start + header.tell())
        return array.reshape(shape, order="F" if fortran else "C")

    def buffer(self, name: str) -> memoryview:
        """The bytes of a 1-d uint8 member (no copy)."""
        return self[name].data
