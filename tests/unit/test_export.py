"""`imgsearch export`: a segment index's live entries copied into S3 Vectors (moto over HTTP) from the
stored raw embeddings, in batches, resumable from a checkpoint, never overwriting a newer vector."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from imgsearch.backend import Batch
from imgsearch.cli import app
from imgsearch.export import export_index
from imgsearch.index import ImageIndex
from imgsearch.local import s3vectors_query
from imgsearch.modelspec import ModelSpec
from imgsearch.options import SearchOptions
from imgsearch.s3vectors import S3VectorsBackend, VectorIndexRef
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef


def ref(key: str, sequencer: str = "1", bucket: str = "photos", etag: str = "e") -> ObjectRef:
    return ObjectRef(bucket=bucket, key=key, etag=etag, size=10, sequencer=sequencer, time=1.0)


@pytest.fixture
def source(
    tmp_path: Path, spec: ModelSpec, unit_vectors: Callable[..., np.ndarray]
) -> tuple[ImageIndex, np.ndarray]:
    """A segment index of three segments: 30 entries, one overwritten, one deleted (29 live)."""
    index = ImageIndex.open(str(tmp_path / "index"))
    index.ensure(spec)
    x = unit_vectors(31, seed=4)
    index.append([ref(f"p/{i:02d}.jpg") for i in range(15)], x[:15])
    index.append([ref(f"q/{i:02d}.jpg") for i in range(15)], x[15:30])
    index.append([ref("p/03.jpg", "2", etag="new")], x[30:], tombstones=[ref("q/07.jpg", "2")])
    return index, x


@pytest.fixture
def target(moto_endpoint: str, aws_env: None) -> str:
    s3vectors_query.install()
    return f"s3vectors://vb-{uuid.uuid4().hex[:12]}/images"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def vectors(location: str, endpoint: str) -> S3VectorsBackend:
    return S3VectorsBackend(VectorIndexRef.parse(location), endpoint_url=endpoint, region="us-east-1")


def test_export_copies_the_live_entries(
    source: tuple[ImageIndex, np.ndarray], target: str, moto_endpoint: str, tmp_path: Path
) -> None:
    index, x = source
    done = run(
        "export", "--to", target, "--index", index.store.uri, "--endpoint-url", moto_endpoint,
        "--create", "--state", str(tmp_path / "state.json"), "--batch-size", "7", "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["live"], report["exported"], report["unchanged"], report["bucket"]) == (
        29,
        29,
        0,
        "photos",
    )
    backend = vectors(target, moto_endpoint)
    live = Searcher(index)
    live.refresh()
    assert sorted(backend.keys()) == sorted(live.live_refs())
    assert backend.stored(["p/03.jpg"])["p/03.jpg"].etag == "new"  # the overwrite, not the first version
    (hits,) = backend.search(x[30:], SearchOptions(k=3, metric="cosine"))
    assert hits[0].key == "p/03.jpg" and hits[0].score == pytest.approx(
        1.0, abs=2e-3
    )  # float16 raw → float32


def test_an_interrupted_export_resumes_from_its_checkpoint(
    source: tuple[ImageIndex, np.ndarray], target: str, moto_endpoint: str, tmp_path: Path, spec: ModelSpec
) -> None:
    index, _ = source
    backend = vectors(target, moto_endpoint)
    backend.create(dimension=spec.output_dim)
    state = tmp_path / "state.json"
    calls = 0

    def stop_after_two(n: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_index(index, backend, state=state, batch_size=5, progress=stop_after_two)
    assert sum(json.loads(state.read_text())["done"].values()) == 10
    resumed = export_index(index, vectors(target, moto_endpoint), state=state, batch_size=5)
    assert (resumed.resumed, resumed.exported, resumed.unchanged) == (10, 19, 0)
    assert backend.scan_count() == 29
    again = export_index(
        index, vectors(target, moto_endpoint), state=state, restart=True
    )  # no checkpoint: idempotent
    assert (again.exported, again.unchanged) == (0, 29)


def test_export_never_overwrites_a_newer_vector(
    source: tuple[ImageIndex, np.ndarray], target: str, moto_endpoint: str, tmp_path: Path, spec: ModelSpec,
    unit_vectors: Callable[..., np.ndarray],
) -> None:  # fmt: skip
    """Ingest may already write to the S3 Vectors index while an export runs."""
    index, _ = source
    backend = vectors(target, moto_endpoint)
    backend.create(dimension=spec.output_dim)
    newer = Batch()
    newer.add([ref("p/05.jpg", "9", etag="from-ingest")], unit_vectors(1, seed=99))
    backend.write(newer)
    report = export_index(index, vectors(target, moto_endpoint), state=tmp_path / "s.json")
    assert (report.exported, report.unchanged) == (28, 1)
    assert backend.stored(["p/05.jpg"])["p/05.jpg"].etag == "from-ingest"


def test_an_index_of_several_buckets_needs_bucket(
    tmp_path: Path, spec: ModelSpec, target: str, moto_endpoint: str, unit_vectors: Callable[..., np.ndarray]
) -> None:
    index = ImageIndex.open(str(tmp_path / "two"))
    index.ensure(spec)
    index.append([ref("a.jpg", bucket="one"), ref("b.jpg", bucket="two")], unit_vectors(2))
    args = ["export", "--to", target, "--index", index.store.uri, "--endpoint-url", moto_endpoint, "--create"]
    refused = run(*args, "--state", str(tmp_path / "s1.json"))
    assert refused.exit_code == 2 and "--bucket" in refused.output and "one, two" in refused.output
    done = run(*args, "--bucket", "two", "--state", str(tmp_path / "s2.json"), "--json")
    assert done.exit_code == 0, done.output
    assert list(vectors(target, moto_endpoint).keys()) == ["b.jpg"]


def test_a_missing_target_index_says_how_to_create_it(
    source: tuple[ImageIndex, np.ndarray], target: str, moto_endpoint: str
) -> None:
    index, _ = source
    missing = run("export", "--to", target, "--index", index.store.uri, "--endpoint-url", moto_endpoint)
    assert missing.exit_code == 1  # a failed run: the target does not exist
    assert "no S3 Vectors index" in missing.output and "--create" in missing.output


def test_a_bad_target_is_a_clear_error(source: tuple[ImageIndex, np.ndarray]) -> None:
    index, _ = source
    bad = run("export", "--to", "s3://not-vectors/x", "--index", index.store.uri)
    assert bad.exit_code == 2 and "s3vectors://VECTOR-BUCKET/INDEX" in bad.output


def test_export_of_a_model_with_another_dimension_is_refused(
    source: tuple[ImageIndex, np.ndarray], target: str, moto_endpoint: str
) -> None:
    index, _ = source
    vectors(target, moto_endpoint).create(dimension=8)
    done = run("export", "--to", target, "--index", index.store.uri, "--endpoint-url", moto_endpoint)
    assert done.exit_code == 1 and "dimension 64" in done.output
