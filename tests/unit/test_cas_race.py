"""Writers racing on the manifest: compare-and-swap loses no segment, on S3 and on a local folder."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore, S3Store, Store

THREADS, APPENDS, BATCH = 3, 5, 2
PROCESSES, PROCESS_APPENDS = 2, 6
TIMEOUT = 60.0
DIM = 64


def batch(writer: int, step: int) -> tuple[list[ObjectRef], np.ndarray]:
    refs = [ObjectRef(bucket="bkt", key=f"w{writer}/a{step}/{j}", sequencer="1") for j in range(BATCH)]
    x = np.random.default_rng(1000 * writer + step).standard_normal((BATCH, DIM)).astype(np.float32)
    return refs, x / np.linalg.norm(x, axis=1, keepdims=True)


def append_many(location: str, writer: int, count: int, start: object, results: object) -> None:
    """Process body: wait until every writer is ready, append `count` segments, report their names."""
    index = ImageIndex.open(location)
    start.wait(TIMEOUT)  # type: ignore[attr-defined]  # a Barrier: all processes start appending together
    names = [index.append(*batch(writer, step)).name for step in range(count)]
    results.put((writer, names, index.cas_retries))  # type: ignore[attr-defined]


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory of independent stores (own client, own lock handle) on one index location."""
    if request.param == "local":
        return lambda: LocalStore(tmp_path / "index")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("moto_endpoint")
    return lambda: S3Store(bucket, "race", endpoint_url=endpoint)


def run_threads(bodies: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guard(body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guard, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == []


def test_threads_appending_at_once_lose_no_segment(location: Callable[[], Store], spec: ModelSpec) -> None:
    ImageIndex(location()).ensure(spec, bits=64)  # generation 1
    writers = [ImageIndex(location()) for _ in range(THREADS)]  # clients made before the threads start
    names: list[list[str]] = [[] for _ in range(THREADS)]
    gate = threading.Barrier(THREADS)

    def body(w: int) -> Callable[[], None]:
        def run() -> None:
            gate.wait(TIMEOUT)
            for step in range(APPENDS):
                names[w].append(writers[w].append(*batch(w, step)).name)

        return run

    run_threads([body(w) for w in range(THREADS)])

    manifest = ImageIndex(location()).manifest()
    appended = [n for ns in names for n in ns]
    assert len(appended) == THREADS * APPENDS
    assert sorted(s.name for s in manifest.segments) == sorted(appended)
    assert manifest.generation == 1 + THREADS * APPENDS
    searcher = Searcher(ImageIndex(location()))
    searcher.refresh(force=True)
    assert searcher.count == THREADS * APPENDS * BATCH


def test_processes_appending_to_one_local_index_lose_no_segment(tmp_path: Path, spec: ModelSpec) -> None:
    location = str(tmp_path / "index")
    ImageIndex.open(location).ensure(spec, bits=64)
    context = multiprocessing.get_context("spawn")  # no fork of a process running server threads
    start, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=append_many, args=(location, w, PROCESS_APPENDS, start, results), daemon=True)
        for w in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=TIMEOUT) for _ in workers]
    finally:
        for worker in workers:
            worker.join(TIMEOUT)
            if worker.is_alive():
                worker.kill()
    assert [w.exitcode for w in workers] == [0] * PROCESSES

    manifest = ImageIndex.open(location).manifest()
    appended = [n for _, names, _ in reports for n in names]
    assert len(appended) == PROCESSES * PROCESS_APPENDS
    assert sorted(s.name for s in manifest.segments) == sorted(appended)
    assert manifest.generation == 1 + PROCESSES * PROCESS_APPENDS


def test_a_writer_that_loses_the_race_retries_and_both_segments_survive(
    location: Callable[[], Store], spec: ModelSpec
) -> None:
    ImageIndex(location()).ensure(spec, bits=64)
    slow_store, rival = location(), ImageIndex(location())
    slow = ImageIndex(slow_store)
    real_write = slow_store.write_manifest
    rival_names: list[str] = []

    def rival_goes_first(data: bytes, *, expected: str | None) -> str:
        if not rival_names:  # between our read and our write, another writer commits
            rival_names.append(rival.append(*batch(1, 0)).name)
        return real_write(data, expected=expected)

    slow_store.write_manifest = rival_goes_first  # type: ignore[method-assign]

    mine = slow.append(*batch(0, 0)).name

    manifest = ImageIndex(location()).manifest()
    assert slow.cas_retries == 1
    assert [s.name for s in manifest.segments] == [rival_names[0], mine]
    assert manifest.generation == 3


def test_a_compaction_racing_appends_keeps_the_segments_appended_meanwhile(
    location: Callable[[], Store], spec: ModelSpec
) -> None:
    ImageIndex(location()).ensure(spec, bits=64)
    seeder = ImageIndex(location())
    for step in range(4):
        seeder.append(*batch(0, step))
    folded = {s.name for s in seeder.manifest().segments}

    compactor_store = location()
    compactor = ImageIndex(compactor_store)
    appender = ImageIndex(location())
    compaction_started, some_appended = threading.Event(), threading.Event()
    real_write = compactor_store.write

    def write_after_appends(name: str, data: bytes) -> None:
        # The compactor has read the manifest: let appends land before it writes its base and swaps.
        compaction_started.set()
        assert some_appended.wait(TIMEOUT)
        real_write(name, data)

    compactor_store.write = write_after_appends  # type: ignore[method-assign]
    appended: list[str] = []
    results = []

    def append() -> None:
        assert compaction_started.wait(TIMEOUT)
        for step in range(3):
            appended.append(appender.append(*batch(1, step)).name)
        some_appended.set()
        for step in range(3, 6):  # these race the compactor's swap
            appended.append(appender.append(*batch(1, step)).name)

    run_threads([lambda: results.append(compactor.compact(threads=1)), append])

    (result,) = results
    manifest = ImageIndex(location()).manifest()
    names = [s.name for s in manifest.segments]
    assert result.before == 4
    assert result.base in names
    assert not folded & set(names)
    assert set(appended) <= set(names)
    assert len(names) == 1 + len(appended)
    searcher = Searcher(ImageIndex(location()))
    searcher.refresh(force=True)
    expected = {r.key for w, steps in ((0, 4), (1, 6)) for s in range(steps) for r in batch(w, s)[0]}
    assert set(searcher.live_refs()) == expected


def hold_the_lock_then_report(location: str, ready: object, results: object) -> None:
    """Process body: try to replace the manifest while another process holds the lock file."""
    from imgsearch.errors import ConflictError

    store = LocalStore(location)
    _, etag = store.read_manifest()  # type: ignore[misc]
    ready.set()  # type: ignore[attr-defined]
    try:
        store.write_manifest(b"from the child", expected=etag)
        results.put("written")  # type: ignore[attr-defined]
    except ConflictError:
        results.put("conflict")  # type: ignore[attr-defined]


def test_the_local_lock_file_makes_another_process_wait_and_then_see_the_change(tmp_path: Path) -> None:
    import queue
    import time

    store = LocalStore(tmp_path)
    first = store.write_manifest(b"first", expected=None)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    child = context.Process(
        target=hold_the_lock_then_report, args=(str(tmp_path), ready, results), daemon=True
    )

    with store._locked():
        child.start()
        assert ready.wait(TIMEOUT)
        time.sleep(0.5)
        with pytest.raises(queue.Empty):
            results.get_nowait()  # still blocked on the lock
        (tmp_path / "manifest.json").write_bytes(b"changed under the lock")
    try:
        outcome = results.get(timeout=TIMEOUT)
    finally:
        child.join(TIMEOUT)
        if child.is_alive():
            child.kill()

    assert outcome == "conflict"
    assert store.read_manifest()[0] == b"changed under the lock"  # type: ignore[index]
    assert first != store.read_manifest()[1]  # type: ignore[index]
