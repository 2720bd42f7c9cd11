"""Local files read safely: kind and size checked on the open descriptor before any byte is read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InvalidImage

KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def read_file(path: Path | str, *, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; `InvalidImage` for anything else.

    Opened with O_NONBLOCK (a FIFO never blocks), then checked with fstat on that descriptor (no race
    with the path): not a regular file → code "not_a_file"; over `limit` → code "too_large", without
    reading. At most `limit` + 1 bytes are ever read, so a file that grows meanwhile is caught too.
    Symbolic links are followed (a link to /dev/zero is a character device). OSError if it cannot
    be opened at all.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise InvalidImage(f"not a regular file: it is {kind}", code="not_a_file")
        if info.st_size > limit:
            raise InvalidImage(f"file is {info.st_size} bytes, over the {limit}-byte limit", code="too_large")
        with open(fd, "rb", closefd=False) as handle:  # buffered: reads up to the count or the end
            data = handle.read(min(info.st_size, limit) + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InvalidImage(f"file is over the {limit}-byte limit (it grew while read)", code="too_large")
    return data


def printable(path: Path | str) -> str:
    r"""A path as valid, printable text: bytes that are not UTF-8 become backslash escapes.

    A file name that is not valid UTF-8 reaches Python with surrogate escapes (PEP 383), which cannot
    be encoded, printed or stored; here each such byte becomes the four characters `\xNN` instead
    (b"badÿ.jpg" → "bad\xff.jpg"). Valid names are unchanged; an escaped name can only equal
    a name that really holds those backslash characters.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")
