"""The columnar key table (segment format 2), and indexes written in format 1 still opening and searching."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from imgsearch.index import ImageIndex
from imgsearch.keytable import KeyTable, Strings, object_id
from imgsearch.manifest import Manifest, SegmentInfo
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef, Segment, new_name, query_object, raw_object
from imgsearch.store import LocalStore

Vectors = Callable[..., np.ndarray]

REFS = [
    ObjectRef(bucket="photos", key="holiday/beach.jpg", etag="a" * 32, size=10, sequencer="0A", time=1.5),
    ObjectRef(bucket="other", key="été/café ☕.png", etag="b" * 32 + "-2", size=20, sequencer="FF", time=2.5),
    ObjectRef(bucket="photos", key="holiday/", etag="", size=0, sequencer="1", time=3.0),
    ObjectRef(bucket="photos", key="work/x.jpg", etag="c", size=30, sequencer="00B", time=4.0),
]


def as_tuples(table: KeyTable) -> list[tuple[object, ...]]:
    return [
        (table.bucket(i), table.keys[i], table.etags[i], int(table.sizes[i]), table.orders[i], table.times[i])
        for i in range(len(table))
    ]


def expected(refs: list[ObjectRef]) -> list[tuple[object, ...]]:
    return [(r.bucket, r.key, r.etag, r.size, r.order.encode(), r.time) for r in refs]


def test_a_table_holds_every_field_of_its_rows_and_ids_are_the_object_ids() -> None:
    table = KeyTable.from_refs(REFS)

    assert as_tuples(table) == expected(REFS)
    assert table.ids.tolist() == [object_id(r.bucket, r.key) for r in REFS]


def test_take_and_concat_keep_rows_intact_across_buckets() -> None:
    left, right = KeyTable.from_refs(REFS[:2]), KeyTable.from_refs(REFS[2:])

    joined = KeyTable.concat([left, KeyTable.empty(), right])
    picked = joined.take(np.array([3, 1, 1]))

    assert as_tuples(joined) == expected(REFS)
    assert as_tuples(picked) == expected([REFS[3], REFS[1], REFS[1]])
    assert len(joined.take(np.array([], dtype=np.int64))) == 0


def test_prefix_filter_is_a_byte_prefix_of_the_utf8_key() -> None:
    keys = Strings.of(["holiday/beach.jpg", "holiday", "été/x", "ét", "", "work/holiday/a"])

    assert keys.startswith("holiday").tolist() == [True, True, False, False, False, False]
    assert keys.startswith("holiday/").tolist() == [True, False, False, False, False, False]
    assert keys.startswith("été").tolist() == [False, False, True, False, False, False]
    assert keys.startswith("").all()
    assert keys.tolist() == ["holiday/beach.jpg", "holiday", "été/x", "ét", "", "work/holiday/a"]


def test_arrays_round_trip_with_extra_columns() -> None:
    table = KeyTable.from_refs(REFS)
    tagged = KeyTable(**{**table.__dict__, "extra": {"content_type": Strings.of(["image/jpeg"] * 4)}})

    back = KeyTable.from_arrays(tagged.to_arrays("t_"), "t_")

    assert as_tuples(back) == expected(REFS)
    assert back.extra["content_type"].tolist() == ["image/jpeg"] * 4
    assert back.take(np.array([2])).extra["content_type"].tolist() == ["image/jpeg"]


# --- format 1 ---------------------------------------------------------------------------------------


def format1_bytes(segment: Segment) -> bytes:
    """A segment as format 1 wrote it: JSON key table and tombstones (imgsearch up to this change)."""

    def blob(value: object) -> np.ndarray:
        return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)

    buffer = io.BytesIO()
    np.savez(
        buffer,
        floats=segment.floats,
        codes=segment.codes,
        table=blob([asdict(r) for r in segment.refs]),
        tombstones=blob([asdict(r) for r in segment.tombstones]),
        rejections=blob([]),
        meta=blob({"name": segment.name, "encoder": segment.encoder}),
    )
    return buffer.getvalue()


@pytest.fixture
def format1_index(tmp_path: Path, spec: ModelSpec, unit_vectors: Vectors) -> ImageIndex:
    """An index as format 1 left it: two segments (entries, then a delete and an overwrite), manifest 1."""
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    encoder = index.encoder(index.manifest().encoder)
    refs = [ObjectRef(bucket="b", key=f"{i}.jpg", sequencer=f"{i + 1:02X}") for i in range(20)]
    first = Segment.build(refs=refs, raw=unit_vectors(20), encoder=encoder, name=new_name())
    second = Segment.build(
        refs=[ObjectRef(bucket="b", key="5.jpg", sequencer="FF")],
        raw=unit_vectors(1, seed=5),
        encoder=encoder,
        tombstones=[ObjectRef(bucket="b", key="3.jpg", sequencer="FF")],
        name=new_name() + "x",
    )
    infos = []
    for segment in (first, second):
        index.store.write_array(raw_object(segment.name), segment.raw)
        index.store.write(query_object(segment.name), format1_bytes(segment))
        infos.append(SegmentInfo(name=segment.name, encoder=segment.encoder, count=len(segment), tombstones=len(segment.dead)))
    manifest = index.manifest()
    payload = json.loads(Manifest(model=manifest.model, encoder=manifest.encoder, segments=tuple(infos)).to_bytes())
    payload["format"] = 1
    (index.store.root / "manifest.json").write_text(json.dumps(payload))  # type: ignore[attr-defined]
    return ImageIndex(index.store)


def test_a_format1_index_opens_and_resolves_deletes_and_overwrites(format1_index: ImageIndex, unit_vectors: Vectors) -> None:
    searcher = Searcher(format1_index)
    searcher.refresh(force=True)

    live = searcher.live_refs()
    assert sorted(live) == sorted(f"{i}.jpg" for i in range(20) if i != 3)
    assert live["5.jpg"].order.endswith("FF")
    hits = searcher.search_key("5.jpg", k=1, metric="cosine", exact=True)
    assert hits[0].key == "5.jpg" and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_compaction_rewrites_a_format1_index_as_format2_with_the_same_entries(format1_index: ImageIndex) -> None:
    before = Searcher(format1_index)
    before.refresh(force=True)

    format1_index.compact()

    manifest = format1_index.manifest()
    assert manifest.format == 2 and len(manifest.segments) == 1
    with np.load(io.BytesIO(format1_index.store.read(query_object(manifest.segments[0].name)))) as npz:
        assert "table" not in npz.files and "t_keys" in npz.files
    after = Searcher(ImageIndex(format1_index.store))
    after.refresh(force=True)
    assert after.live_refs() == before.live_refs()
    assert [t.key for t in format1_index.load_segment(manifest.segments[0]).tombstones] == ["3.jpg"]


def test_a_segment_memory_mapped_from_disk_searches_like_one_read_whole(tmp_path: Path, unit_vectors: Vectors) -> None:
    from imgsearch.encode import lsh

    encoder = lsh(dim_in=64, bits=64)
    refs = [ObjectRef(bucket="b", key=f"{i}.jpg", sequencer="1") for i in range(300)]
    built = Segment.build(refs=refs, raw=unit_vectors(300), encoder=encoder, tombstones=REFS[:2], hnsw_min=100)
    path = tmp_path / "query.npz"
    path.write_bytes(built.to_bytes())

    mapped, whole = Segment.from_file(path), Segment.from_bytes(path.read_bytes())

    assert mapped.mapped is not None and not mapped.codes.flags.writeable  # views over the map, no copy
    assert mapped.floats is None and mapped.rotation is not None  # an int8 graph holds the float vectors
    assert mapped.has_hnsw and mapped.refs == whole.refs and mapped.tombstones == whole.tombstones
    query = encoder.floats(unit_vectors(3, seed=8)).astype(np.float32)
    for a, b in zip(mapped.search_floats(query, 10), whole.search_floats(query, 10), strict=True):
        assert np.array_equal(a, b)


# --- ETags as 16-byte digests -----------------------------------------------------------------------------

MD5S = [ObjectRef(bucket="photos", key=f"d/{i}.jpg", etag=f"{i:032x}"[-32:].replace("0", "e"), size=i, sequencer="1")
        for i in range(5)]


def test_plain_md5_etags_are_kept_as_16_bytes_and_read_back_as_the_same_text() -> None:
    from imgsearch.keytable import Digests

    table = KeyTable.from_refs(MD5S)
    assert isinstance(table.etags, Digests) and table.etags.nbytes == 16 * len(MD5S)
    assert as_tuples(table) == expected(MD5S)
    assert table.etags.tolist() == [r.etag for r in MD5S]
    again = KeyTable.from_arrays(table.to_arrays("t_"), "t_")
    assert isinstance(again.etags, Digests) and as_tuples(again) == expected(MD5S)
    assert as_tuples(table.take(np.array([4, 0, 2]))) == expected([MD5S[4], MD5S[0], MD5S[2]])


@pytest.mark.parametrize("odd", ["", "b" * 32 + "-2", "A" * 32, "abc"])
def test_a_table_with_any_other_etag_keeps_them_all_as_text(odd: str) -> None:
    refs = [*MD5S[:2], ObjectRef(bucket="photos", key="odd.jpg", etag=odd, size=1, sequencer="1")]
    table = KeyTable.from_refs(refs)
    assert isinstance(table.etags, Strings) and as_tuples(table) == expected(refs)


def test_concat_of_digest_and_text_tables_keeps_every_etag() -> None:
    from imgsearch.keytable import Digests

    digests, text = KeyTable.from_refs(MD5S[:3]), KeyTable.from_refs(REFS)
    assert isinstance(KeyTable.concat([digests, KeyTable.from_refs(MD5S[3:])]).etags, Digests)
    mixed = KeyTable.concat([digests, text])
    assert isinstance(mixed.etags, Strings) and as_tuples(mixed) == expected(MD5S[:3]) + expected(REFS)


def test_a_segment_with_digest_etags_round_trips_and_one_with_text_etags_still_reads(unit_vectors: Vectors) -> None:
    from imgsearch.encode import lsh

    encoder = lsh(dim_in=unit_vectors(1).shape[1], bits=64)
    for refs in (MD5S, REFS):
        built = Segment.build(refs=refs, raw=unit_vectors(len(refs)), encoder=encoder)
        loaded = Segment.from_bytes(built.to_bytes())
        assert [r.etag for r in loaded.refs] == [r.etag for r in refs]
