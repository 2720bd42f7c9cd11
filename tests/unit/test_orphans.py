"""Orphans: segments a killed writer wrote but never committed are retired once old enough, and only they."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.index import ORPHAN_SECONDS, ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.segment import NAME_TIME, ObjectRef, Segment, named_at, new_name, query_object
from imgsearch.store import LocalStore, S3Store

Vectors = Callable[..., np.ndarray]


@pytest.fixture(params=["local", "s3"])
def index(request: pytest.FixtureRequest, tmp_path: Path, spec: ModelSpec) -> ImageIndex:
    if request.param == "local":
        store: LocalStore | S3Store = LocalStore(tmp_path / "index")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        store = S3Store(bucket, "idx", endpoint_url=request.getfixturevalue("moto_endpoint"))
    index = ImageIndex(store)
    index.ensure(spec, bits=64)
    return index


def name_aged(seconds: float) -> str:
    return f"{time.strftime(NAME_TIME, time.gmtime(time.time() - seconds))}-{uuid.uuid4().hex[:12]}"


def write_uncommitted(index: ImageIndex, vectors: np.ndarray, *, age: float) -> str:
    """What a writer killed between writing its segment and its compare-and-swap leaves behind."""
    refs = [ObjectRef(bucket="b", key=f"orphan-{uuid.uuid4().hex}-{i}") for i in range(len(vectors))]
    encoder = index.encoder(index.manifest().encoder)
    segment = Segment.build(refs=refs, raw=vectors, encoder=encoder, name=name_aged(age))
    index._write_segment(segment, kind="delta")
    return segment.name


def present(index: ImageIndex, name: str) -> bool:
    return query_object(name) in set(index.store.names(f"segments/{name}/")) and not retired(index, name)


def retired(index: ImageIndex, name: str) -> bool:
    store = index.store
    if isinstance(store, LocalStore):
        return not (store.root / query_object(name)).exists()
    tags = store.client.get_object_tagging(Bucket=store.bucket, Key=store._key(query_object(name)))
    return {"Key": "imgsearch-retired", "Value": "true"} in tags["TagSet"]


def test_an_old_uncommitted_segment_is_retired_and_committed_and_young_ones_are_kept(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    committed = index.append([ObjectRef(bucket="b", key="kept.jpg")], unit_vectors(1)).name
    old = write_uncommitted(index, unit_vectors(3, seed=1), age=ORPHAN_SECONDS * 2)
    young = write_uncommitted(index, unit_vectors(3, seed=2), age=60)

    report = index.collect_orphans()

    assert (report.segments, report.objects) == (1, 2)  # query.npz and raw.npy of the old orphan
    assert retired(index, old)
    assert present(index, young) and present(index, committed)
    assert [s.name for s in index.manifest().segments] == [committed]


def test_the_mark_moves_forward_so_a_second_run_finds_nothing_new(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    old = write_uncommitted(index, unit_vectors(2), age=ORPHAN_SECONDS * 2)
    index.collect_orphans()
    assert index.manifest().collected == old

    again = index.collect_orphans()

    assert again.segments == 0
    assert index.manifest().collected == old


def test_compaction_collects_orphans_and_says_how_many(index: ImageIndex, unit_vectors: Vectors) -> None:
    for i in range(2):
        index.append([ObjectRef(bucket="b", key=f"{i}.jpg")], unit_vectors(1, seed=i))
    orphan = write_uncommitted(index, unit_vectors(2, seed=9), age=ORPHAN_SECONDS * 3)

    result = index.compact()

    assert result.orphans == 1
    assert retired(index, orphan)
    assert result.entries == 2


def test_a_directory_store_removes_old_files_of_writes_cut_short_and_keeps_fresh_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "index")
    store.write("segments/x/query.npz", b"data")
    old, fresh = store.root / ".tmp-old", store.root / "segments" / "x" / ".tmp-fresh"
    old.write_bytes(b"cut short")
    fresh.write_bytes(b"being written")
    past = time.time() - 7200
    os.utime(old, (past, past))

    removed = store.remove_temporaries(older_than=time.time() - 3600)

    assert removed == 1
    assert not old.exists() and fresh.exists()
    assert list(store.names("segments/")) == ["segments/x/query.npz"]  # writes in progress are not listed


def test_names_are_listed_sorted_under_a_prefix_after_a_start(index: ImageIndex) -> None:
    for name in ("segments/b/query.npz", "segments/a/query.npz", "segments/c/raw.npy", "other/z"):
        index.store.write(name, b"x")

    names = list(index.store.names("segments/", start_after="segments/a/query.npz"))

    assert names == ["segments/b/query.npz", "segments/c/raw.npy"]


def test_a_segment_name_tells_when_it_was_made_and_other_names_do_not() -> None:
    made = named_at(new_name())
    assert made is not None and abs(made - time.time()) < 5
    assert named_at("not-a-segment-name") is None
