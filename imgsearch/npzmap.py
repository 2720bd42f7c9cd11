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

from . import hugepages

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
        self.path: Path | None  # the mapped file (None: bytes read whole)
        if not isinstance(source, (Path, str)):  # read whole (a large object comes in a huge-page mapping)
            self.map, self.path, path = source, None, "<bytes>"
            archive_source: Path | str | BinaryIO = reader(source)  # reads the bytes in place (no copy)
        else:
            with open(source, "rb") as handle:
                self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self.path, path, archive_source = Path(source), source, source
        self.copies: dict[str, Any] = {}  # member → its bytes copied into huge pages (resident)
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
        offset, (shape, fortran, dtype) = self._header(name)
        if dtype.hasobject:
            raise ValueError(f"member {name} holds Python objects; it cannot be mapped")
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(self.map, dtype=dtype, count=count, offset=offset)
        return array.reshape(shape, order="F" if fortran else "C")

    def _header(self, name: str) -> tuple[int, tuple[Any, bool, np.dtype]]:
        """Where a member's array bytes start, and its (shape, Fortran order, dtype) from the .npy header."""
        start, size = self.spans[name]
        header = io.BytesIO(self.map[start : start + min(size, 65536)])
        version = npy.read_magic(header)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        fields = read(header)
        return start + header.tell(), fields

    def buffer(self, name: str) -> memoryview:
        """The bytes of a 1-d uint8 member (no copy)."""
        return self[name].data

    def resident(self, name: str) -> memoryview:
        """The bytes of a 1-d uint8 member, read from a mapped file into huge pages when it is large and
        the kernel gives huge pages (a graph: hugepages.py), else the mapped bytes (as `buffer(name)`). Read
        from the file (`hugepages.read_file`), not through the map, so the file's pages do not also count in
        the process's memory."""
        offset, (shape, _, dtype) = self._header(name)
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self.path is None or size < hugepages.HUGE_MIN or not hugepages.granted():
            return memoryview(self.map)[offset : offset + size]
        copy = hugepages.read_file(str(self.path), size, offset=offset)
        self.copies[name] = copy  # the graph points into it: kept as long as this map
        return memoryview(copy)
