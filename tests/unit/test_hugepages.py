"""Large objects read whole land in huge-page buffers (hugepages.py): same bytes, and segments load and
search from them."""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

import boto3
import numpy as np
import pytest

from imgsearch import hugepages, s3read
from imgsearch.encode import lsh
from imgsearch.segment import ObjectRef, Segment
from imgsearch.store import LocalStore, S3Store

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode() -> str:
    """The bracketed word of the kernel's setting ("always", "madvise", "never"), or "absent"."""
    if not THP.exists():
        return "absent"
    text = THP.read_text()
    return text[text.index("[") + 1 : text.index("]")]


def anon_huge_kb(buffer: mmap.mmap) -> int:
    """AnonHugePages of the mapping that holds `buffer` (from /proc/self/smaps)."""
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            start, end = (int(part, 16) for part in head.split("-"))
            inside = start <= address < end
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def test_a_small_buffer_is_a_bytearray_and_a_large_one_a_zeroed_writable_mapping() -> None:
    small = hugepages.buffer(hugepages.HUGE_MIN - 1)
    assert isinstance(small, bytearray) and len(small) == hugepages.HUGE_MIN - 1
    large = hugepages.buffer(hugepages.HUGE_MIN)
    assert isinstance(large, mmap.mmap) and len(large) == hugepages.HUGE_MIN
    assert large[:16] == bytes(16) and large[-16:] == bytes(16)
    large[100:104] = b"abcd"
    assert large[100:104] == b"abcd"


def test_a_large_buffer_gets_huge_pages_where_the_kernel_grants_them_on_advice() -> None:
    size = 32 * 2**20
    buffer = hugepages.buffer(size)
    assert isinstance(buffer, mmap.mmap)
    view = np.frombuffer(buffer, dtype=np.uint8)
    view[:: 4096] = 1  # touch every page
    granted = anon_huge_kb(buffer)
    if thp_mode() in ("always", "madvise"):
        assert granted >= 8 * 1024  # at least a quarter of it in 2 MB pages
    else:
        assert granted == 0  # "never" or no THP: small pages, and the bytes still work
    del view


@pytest.mark.parametrize("size", [0, 5, hugepages.HUGE_MIN - 1, hugepages.HUGE_MIN, hugepages.HUGE_MIN + 4097])
def test_a_file_read_whole_comes_back_byte_for_byte(tmp_path: Path, size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "object"
    path.write_bytes(data)
    got = hugepages.read_file(str(path), size)
    assert isinstance(got, mmap.mmap) == (size >= hugepages.HUGE_MIN)
    assert bytes(got) == data


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_a_file_read_in_parts_side_by_side_comes_back_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.setattr(hugepages, "READ_PART", 2**20 + 4096)  # parts that do not divide the file
    size, offset = hugepages.HUGE_MIN + 3 * 2**20 + 17, 12345
    data = np.random.default_rng(threads).integers(0, 256, offset + size, dtype=np.uint8).tobytes()
    path = tmp_path / "object"
    path.write_bytes(data)
    got = hugepages.read_file(str(path), size, offset=offset, threads=threads)
    assert bytes(got) == data[offset:]


def test_a_file_that_shrinks_while_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(b"x" * 100)
    with pytest.raises(OSError, match="ended after 100 of"):
        hugepages.read_file(str(path), hugepages.HUGE_MIN)


def built_segment() -> Segment:
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((600, 64)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    refs = [ObjectRef(bucket="b", key=f"{i:04d}.jpg", sequencer="1") for i in range(600)]
    return Segment.build(refs=refs, raw=raw, encoder=lsh(dim_in=64, bits=64), hnsw_min=100)


def test_a_segment_read_whole_from_a_directory_into_huge_pages_loads_and_searches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hugepages, "HUGE_MIN", 4096)  # this small segment counts as large
    built = built_segment()
    store = LocalStore(tmp_path / "index")
    store.write("segments/s/query.npz", built.to_bytes())
    data = store.read("segments/s/query.npz")
    assert isinstance(data, mmap.mmap)
    loaded = Segment.from_bytes(data)
    assert loaded.refs == built.refs and loaded.has_hnsw
    rows, _ = loaded.search_floats(built.vectors(np.arange(5)), 1)
    assert rows[:, 0].tolist() == list(range(5))
    store.write_array("segments/s/raw.npy", built.vectors(np.arange(600)).astype(np.float16))
    raw = Segment.raw_from_bytes(store.read("segments/s/raw.npy"))  # read in place from the mapping
    assert raw.shape == (600, 64)


def test_a_large_s3_object_is_read_in_parts_into_a_huge_page_buffer(
    s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3read, "PART_BYTES", 32 * 1024)
    monkeypatch.setattr(hugepages, "HUGE_MIN", 64 * 1024)
    built = built_segment()
    data = built.to_bytes()
    store = S3Store(s3_bucket, "hp", client=boto3.client("s3", endpoint_url=moto_endpoint))
    store.write("segments/s/query.npz", data)
    got = store.read("segments/s/query.npz")
    assert isinstance(got, mmap.mmap) and bytes(got) == data
    rows, _ = Segment.from_bytes(got).search_floats(built.vectors(np.arange(3)), 1)
    assert rows[:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("granted", [True, False])
def test_a_mapped_segments_graphs_are_read_into_huge_pages_where_granted_and_search_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, granted: bool
) -> None:
    built = built_segment()
    path = tmp_path / "query.npz"
    path.write_bytes(built.to_bytes())
    plain = Segment.from_file(path)  # HUGE_MIN is 8 MB: this small graph stays mapped
    assert plain.mapped is not None and not plain.mapped.copies
    monkeypatch.setattr(hugepages, "HUGE_MIN", 4096)
    monkeypatch.setattr(hugepages, "granted", lambda: granted)
    copied = Segment.from_file(path)
    assert copied.mapped is not None
    graphs = {"float_index"} | ({"code_index"} if built.code_index is not None else set())
    assert set(copied.mapped.copies) == (graphs if granted else set())
    assert all(isinstance(c, mmap.mmap) for c in copied.mapped.copies.values())
    queries = built.vectors(np.arange(0, 600, 7))
    assert np.array_equal(copied.search_floats(queries, 5)[0], plain.search_floats(queries, 5)[0])
    assert np.array_equal(copied.vectors(np.arange(50)), plain.vectors(np.arange(50)))  # rows from the copy


def test_granted_reads_the_kernels_transparent_huge_page_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in (("always [madvise] never", True), ("[always] madvise never", True), ("always madvise [never]", False)):
        mode = tmp_path / "enabled"
        mode.write_text(text)
        monkeypatch.setattr(hugepages, "THP_MODE", str(mode))
        hugepages.granted.cache_clear()
        assert hugepages.granted() is expected
    monkeypatch.setattr(hugepages, "THP_MODE", str(tmp_path / "absent"))
    hugepages.granted.cache_clear()
    assert hugepages.granted() is False
    hugepages.granted.cache_clear()
