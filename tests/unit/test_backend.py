"""The backend interface: SegmentBackend is the segment index unchanged (BatchWriter + Searcher), and
the new modules import without the AWS SDK."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.backend import Batch, IndexBackend, SegmentBackend, check_backend, is_s3vectors
from imgsearch.errors import BadParameter, KeyNotIndexed
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.options import SearchOptions
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef

REPO = Path(__file__).resolve().parents[2]


def ref(key: str, sequencer: str = "1") -> ObjectRef:
    return ObjectRef(bucket="bkt", key=key, etag="e", size=5, sequencer=sequencer, time=1.0)


@pytest.fixture
def backend(tmp_path: Path, spec: ModelSpec) -> SegmentBackend:
    return SegmentBackend(ImageIndex.open(str(tmp_path / "index")), refresh_seconds=0.0)


def test_a_new_segment_index_is_empty_until_ensured(backend: SegmentBackend, spec: ModelSpec) -> None:
    assert backend.health()["status"] == "empty"
    backend.ensure(spec)
    health = backend.health()
    assert (health["status"], health["backend"], health["count"], health["segments"]) == (
        "ok",
        "segments",
        0,
        0,
    )


def test_a_batch_is_one_segment_with_entries_deletes_and_rejections(
    backend: SegmentBackend, spec: ModelSpec, unit_vectors: Callable[..., np.ndarray]
) -> None:
    backend.ensure(spec)
    x = unit_vectors(4)
    first = Batch()
    first.add([ref(f"k{i}") for i in range(4)], x)
    assert backend.write(first).indexed == 4
    second = Batch()
    second.delete(ref("k1", "2"))
    second.reject(ref("bad.jpg"), code="not_an_image", reason="corrupt")
    written = backend.write(second)
    assert (written.indexed, written.deleted, written.rejected, written.skipped) == (0, 1, 1, 0)
    assert written.segment and written.manifest is not None and len(written.manifest.segments) == 2
    assert backend.count() == 3
    health = backend.health()
    assert (health["count"], health["entries"], health["segments"], health["rejected"]) == (3, 4, 2, 1)
    assert backend.write(Batch()).segment is None  # nothing written for an empty batch


def test_searches_are_the_searchers_own(
    backend: SegmentBackend, spec: ModelSpec, unit_vectors: Callable[..., np.ndarray]
) -> None:
    backend.ensure(spec)
    x = unit_vectors(30)
    batch = Batch()
    batch.add([ref(f"d/{i}") for i in range(30)], x)
    backend.write(batch)
    searcher = Searcher(backend.index)
    for options in (
        SearchOptions(k=5),
        SearchOptions(k=3, metric="hamming", offset=2),
        SearchOptions(k=4, prefix="d/1"),
    ):
        assert backend.search(x[:2], options) == searcher.search(x[:2], **options.search_kwargs())
        assert backend.search_key("d/3", "bkt", options) == searcher.search_key(
            "d/3", bucket="bkt", **options.search_kwargs()
        )
    with pytest.raises(KeyNotIndexed):
        backend.search_key("d/3", "other", SearchOptions())


def test_batch_checks_its_rows() -> None:
    batch = Batch()
    with pytest.raises(ValueError, match="2 refs for 1 embeddings"):
        batch.add([ref("a"), ref("b")], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="1 content types"):
        batch.add([ref("a"), ref("b")], np.zeros((2, 4)), content_types=["image/png"])
    batch.add([ref("a")], np.ones((1, 4)), content_types=["image/png"])
    assert (len(batch), batch.raw().shape, batch.content_types) == (1, (1, 4), ["image/png"])


def test_backends_are_named_and_told_apart() -> None:
    assert isinstance(SegmentBackend.__new__(SegmentBackend), IndexBackend)
    assert check_backend("s3vectors") == "s3vectors"
    with pytest.raises(BadParameter, match="segments, s3vectors"):
        check_backend("opensearch")
    assert is_s3vectors("s3vectors://b/i") and is_s3vectors(
        "arn:aws:s3vectors:us-east-1:123456789012:bucket/b/index/i"
    )
    assert not is_s3vectors("s3://b/index") and not is_s3vectors("/mnt/index")


def test_the_new_modules_import_without_the_aws_sdk() -> None:
    code = (
        "import importlib, sys\n"
        "for name in ('imgsearch.backend', 'imgsearch.s3vectors', 'imgsearch.export', 'imgsearch.local.s3vectors_query'):\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto')) or 'none')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none"
