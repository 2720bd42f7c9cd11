"""Hostile and malformed inputs (tests/hostile.py): every kind answered as expected, none hangs, none
exhausts memory, and `imgsearch index` over all of them indexes the good ones and reports the rest."""

from __future__ import annotations

import copy
import faulthandler
import importlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from imgsearch.cli import app
from imgsearch.embed import Embedder, Preprocessor
from imgsearch.files import printable, read_file
from imgsearch.images import Limits, decode_part
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec, default_model_dir
from imgsearch.search import Searcher
from imgsearch.segment import object_id
from tests import hostile
from tests.hostile import INDEXED, KINDS, Outcome

THREADS = 2
TIMEOUT = 60.0  # seconds an input may take before it counts as hung (each takes well under 2)
GB = 1024.0  # MB


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    ModelSpec.load(default_model_dir())  # fails (not skips) with a clear message if the model is missing
    embedder = Embedder.load(threads=THREADS)
    hostile.warm_up(embedder)
    return embedder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("hostile") / "corpus"
    return folder, hostile.build(folder)


@pytest.fixture(scope="module")
def outcomes(embedder: Embedder, corpus: tuple[Path, dict[str, Path]]) -> dict[str, Outcome]:
    """Every kind answered once, in this process, with its peak memory (after the model warmed up)."""
    _, paths = corpus
    return {kind.name: hostile.run(kind, paths[kind.name], embedder, timeout=TIMEOUT) for kind in KINDS}


def test_the_corpus_holds_at_least_30_kinds_with_the_reproductions_of_the_issue() -> None:
    names = {kind.name for kind in KINDS}
    assert len(KINDS) >= 30
    assert len(names) == len(KINDS), "kind names must be unique"
    assert len({kind.file for kind in KINDS}) == len(KINDS), "each kind needs its own file name"
    for reproduction in (
        "png_20000x1",
        "png_40000x1",
        "png_1x20000",
        "fifo_named_jpg",
        "symlink_dev_zero",
        "symlink_dev_urandom",
        "sparse_10_gb",
        "name_not_utf8",
    ):
        assert reproduction in names


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_each_kind_is_answered_as_expected_without_hanging(
    kind: hostile.Kind, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[kind.name]
    assert outcome.answer != "hung", f"{kind.name}: {outcome.reason}"
    assert (outcome.answer, kind.name) == (kind.expect, kind.name), outcome.reason
    assert outcome.seconds < 10, f"{kind.name} took {outcome.seconds:.1f} s"
    if kind.expect != INDEXED:
        assert outcome.reason, "a rejection says why"


def test_no_input_adds_1_gb_of_peak_memory_and_thin_or_bomb_inputs_add_almost_none(
    outcomes: dict[str, Outcome],
) -> None:
    worst = max(outcomes.values(), key=lambda o: o.peak_mb)
    assert worst.peak_mb < GB, f"{worst.kind} added {worst.peak_mb:.0f} MB"
    small = [name for name in outcomes if name.startswith(("png_20000", "png_40000", "png_1x", "sparse", "symlink"))]
    small += [name for name in outcomes if "bomb" in name or "header_" in name]
    for name in small:
        assert outcomes[name].peak_mb < 100, f"{name} added {outcomes[name].peak_mb:.0f} MB"


@pytest.mark.parametrize(("width", "height"), [(40000, 1), (1, 20000), (30000, 7)])
def test_extreme_aspect_with_the_limit_lifted_is_still_bounded_by_the_output(
    width: int, height: int
) -> None:
    """The cause, not only the refusal: a crop resamples only the region it keeps."""
    embedder = Embedder.load(threads=THREADS, limits=Limits(max_aspect=1e9))
    data = hostile.noise_png(width, height)
    hostile.reset_peak()
    before = hostile.status_kb("VmRSS")
    pixels = embedder.pixels(data)
    added_mb = (hostile.status_kb("VmHWM") - before) / 1024
    size = embedder.spec.input_size
    assert pixels.shape == (3, size, size)
    assert added_mb < 100, f"{width}x{height} added {added_mb:.0f} MB (was 3 to 6 GB)"


def test_the_default_limit_refuses_extreme_aspect_ratios_with_a_clear_reason(embedder: Embedder) -> None:
    vectors, failures = embedder.embed_bytes([hostile.noise_png(20000, 1)])
    assert len(vectors) == 0
    (failure,) = failures
    assert failure.code == "extreme_aspect"
    assert "20000x1" in failure.reason and "100:1 limit" in failure.reason


def test_a_long_crop_resamples_the_same_region_as_resizing_the_whole() -> None:
    spec = ModelSpec.load(default_model_dir())
    preprocess = Preprocessor(spec)
    image = hostile.photo(3000, 40, seed=5)  # 15000 × 201 once scaled: the bounded path
    scale = preprocess.min_side / 40
    new_w, size = round(3000 * scale), spec.input_size
    left, top = (new_w - size) // 2, (preprocess.min_side - size) // 2
    whole = image.resize((new_w, preprocess.min_side), Image.Resampling.BILINEAR)
    expected = np.asarray(whole.crop((left, top, left + size, top + size)), dtype=np.float32)
    got = preprocess(image) * preprocess.std[:, None, None] + preprocess.mean[:, None, None]
    difference = np.abs(got.transpose(1, 2, 0) - expected)
    assert difference.max() <= 1.0 + 1e-3  # fixed-point rounding of the filter only
    assert difference.mean() < 0.05


def test_a_cropped_and_reduced_decode_gives_the_same_crop_as_the_whole_image() -> None:
    """decode_part crops a long, large image and reduces it; the Preprocessor maps the crop back."""
    spec = ModelSpec.load(default_model_dir())
    preprocess = Preprocessor(spec)
    image = hostile.photo(800, 120, seed=6).resize((12000, 1800), Image.Resampling.BICUBIC)
    data = hostile.encode(image, "PNG", compress_level=1)
    part = decode_part(data, min_side=preprocess.min_side, centre=preprocess.centre)
    assert part.factor == 2 and part.box[0] > 0 and part.image.width < 1000, "expected the centre, reduced"
    difference = np.abs(preprocess(part) - preprocess(image)) * 128  # in 0..255 levels
    # Same region (a shift of one output pixel changes edges by tens of levels); reduce-then-resize
    # differs from one resize by a level or two.
    assert difference.max() <= 3 and difference.mean() < 0.5, (difference.max(), difference.mean())


# --- file names and the file reader ------------------------------------------------------------


def test_object_id_never_raises_and_keeps_undecodable_names_distinct() -> None:
    bad = os.fsdecode(b"s/bad\xff\xfe.jpg")
    assert object_id("local", bad) != object_id("local", printable(bad))
    assert object_id("local", "photo é.jpg") == object_id("local", "photo é.jpg")
    assert printable(bad) == "s/bad\\xff\\xfe.jpg"
    assert printable("photo é.jpg") == "photo é.jpg"


def test_read_file_reads_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    assert read_file(path, limit=100) == b"x" * 100
    with pytest.raises(hostile.InvalidImage) as caught:
        read_file(path, limit=99)
    assert caught.value.code == "too_large" and "100 bytes" in caught.value.reason


def test_a_fifo_is_refused_without_blocking_even_with_no_writer(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    os.mkfifo(path)
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(errors, path), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "reading a FIFO blocked"
    (error,) = errors
    assert isinstance(error, hostile.InvalidImage) and error.code == "not_a_file"
    assert "FIFO" in error.reason


def _catch(errors: list[BaseException], path: Path) -> None:
    try:
        read_file(path, limit=1000)
    except BaseException as error:
        errors.append(error)


# --- the CLI over the whole corpus -------------------------------------------------------------


def invoke(*args: str, timeout: float = 300) -> Result:
    """The CLI in process, in a thread; faulthandler ends the run if it ever hangs."""
    results: list[Result] = []
    faulthandler.dump_traceback_later(timeout + 30, exit=True)
    try:
        thread = threading.Thread(target=lambda: results.append(CliRunner().invoke(app, list(args))), daemon=True)
        thread.start()
        thread.join(timeout)
        assert not thread.is_alive(), f"`imgsearch {' '.join(args[:1])}` hung"
    finally:
        faulthandler.cancel_dump_traceback_later()
    return results[0]


@pytest.fixture(scope="module")
def indexed(corpus: tuple[Path, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    folder, _ = corpus
    index = tmp_path_factory.mktemp("hostile-index") / "index"
    return index, invoke("index", "--index", str(index), str(folder), "--threads", str(THREADS))


def test_index_over_the_corpus_indexes_the_good_ones_reports_every_bad_one_and_exits_0(
    corpus: tuple[Path, dict[str, Path]], indexed: tuple[Path, Result]
) -> None:
    _, paths = corpus
    index, result = indexed
    assert result.exit_code == 0, result.output
    bad = [kind for kind in KINDS if kind.expect != INDEXED and kind.scanned]
    for kind in bad:
        assert f"skipped {printable(paths[kind.name])}: " in result.stderr, kind.name
    good = [kind for kind in KINDS if kind.expect == INDEXED]
    assert f"indexed {len(good) + len(hostile.GOOD)}, unchanged 0, skipped {len(bad)}" in result.stdout
    searcher = Searcher(ImageIndex.open(str(index)))
    searcher.refresh(force=True)
    keys = set(searcher.live_refs())
    assert keys == {printable(kind.file) for kind in good} | set(hostile.GOOD)
    assert "bad\\xff\\xfe.png" in keys  # the undecodable name, keyed by its escape


def test_search_refuses_a_10_gb_query_file_without_reading_it(
    corpus: tuple[Path, dict[str, Path]], indexed: tuple[Path, Result]
) -> None:
    _, paths = corpus
    index, _ = indexed
    sparse, good = paths["sparse_10_gb"], paths["name_not_utf8"].parent / "good_1.png"
    hostile.reset_peak()
    before = hostile.status_kb("VmRSS")
    result = invoke("search", "--index", str(index), str(sparse), str(good), "--json", "--threads", str(THREADS))
    added_mb = (hostile.status_kb("VmHWM") - before) / 1024
    assert result.exit_code == 0, result.output
    refused, found = (json.loads(line) for line in result.stdout.splitlines() if line.strip())
    assert refused["query"] == str(sparse) and "10737418240 bytes, over the" in refused["error"]
    assert found["hits"][0]["key"] == "good_1.png"
    assert added_mb < 500, f"the search added {added_mb:.0f} MB"


# --- the ingest Lambda's fetch -----------------------------------------------------------------


class HugeBody:
    """An S3 body far larger than its event said; records how much was asked for."""

    def __init__(self, size: int) -> None:
        self.stream = io.BytesIO(b"\x89PNG" + b"\0" * (size - 4))
        self.asked: list[int | None] = []

    def read(self, amount: int | None = None) -> bytes:
        self.asked.append(amount)
        return self.stream.read(amount)

    def __enter__(self) -> HugeBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """lambdas/ingest/handler.py imported against a local index, with a 1000-byte object limit."""
    env = {
        "INDEX_URI": str(tmp_path / "index"),
        "MODEL_DIR": str(default_model_dir()),
        "MAX_OBJECT_BYTES": "1000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "imgsearch",
        "POWERTOOLS_METRICS_NAMESPACE": "ImgSearchTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "IMGSEARCH_THREADS": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield importlib.reload(importlib.import_module("lambdas.ingest.handler"))


def test_ingest_reads_at_most_the_limit_and_rejects_a_body_larger_than_its_event(
    ingest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    body = HugeBody(50_000_000)
    monkeypatch.setattr(ingest.s3, "get_object", lambda **_: {"Body": body})
    events = Path(__file__).resolve().parents[1] / "events"
    record = copy.deepcopy(json.loads((events / "sqs_s3_object_created.json").read_text())["Records"][0])
    message = json.loads(record["body"])
    message["Records"][0]["s3"]["object"]["size"] = 500  # what the event says
    record["body"] = json.dumps(message)

    work = ingest.Invocation()
    ingest.record_handler(SQSRecord(record), work)

    assert body.asked == [1001]  # the limit + 1, never the whole body
    assert work.images == []
    (rejection,) = work.batch.rejections
    assert rejection.code == "too_large" and "over 1000 bytes" in rejection.reason
