"""The batch writer: additions, deletes and rejections of one batch become one committed segment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore
from imgsearch.writer import BatchWriter

Vectors = Callable[..., np.ndarray]


@pytest.fixture
def index(tmp_path: Path, spec: ModelSpec) -> ImageIndex:
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    return index


def test_one_batch_commits_one_segment_and_returns_the_manifest_it_wrote(index: ImageIndex, unit_vectors: Vectors) -> None:
    index.append([ObjectRef(bucket="b", key="old.jpg", sequencer="1")], unit_vectors(1))
    batch = BatchWriter(index)
    batch.add([ObjectRef(bucket="b", key=f"{i}.jpg", sequencer="2") for i in range(3)], unit_vectors(3, seed=1))
    batch.delete(ObjectRef(bucket="b", key="old.jpg", sequencer="2"))
    batch.reject(ObjectRef(bucket="b", key="notes.txt"), code="not_an_image", reason="text")

    written = batch.commit()

    assert (written.indexed, written.deleted, written.rejected, written.retries) == (3, 1, 1, 0)
    assert written.manifest == index.manifest()
    assert written.manifest.segments[-1] == written.segment
    assert (written.segment.count, written.segment.tombstones, written.segment.rejected) == (3, 1, 1)
    searcher = Searcher(index)
    searcher.refresh(force=True)
    assert sorted(searcher.live_refs()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert len(batch) == 0 and batch.commit().segment is None  # the batch is empty again


def test_an_empty_batch_writes_nothing(index: ImageIndex) -> None:
    before = index.manifest()

    written = BatchWriter(index).commit()

    assert (written.segment, written.manifest) == (None, None)
    assert index.manifest() == before


def test_refs_and_embeddings_must_pair_up(index: ImageIndex, unit_vectors: Vectors) -> None:
    with pytest.raises(ValueError, match="2 refs for 3 embeddings"):
        BatchWriter(index).add([ObjectRef(bucket="b", key="a"), ObjectRef(bucket="b", key="c")], unit_vectors(3))
