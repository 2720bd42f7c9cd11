"""The `imgsearch` command in-process, with the real model on small generated images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from imgsearch.cli import app
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec, default_model_dir
from imgsearch.search import Searcher

THREADS = ["--threads", "2"]
IMAGES = (
    [f"stripes_{i}.png" for i in range(4)]
    + [f"sub/checks_{i}.jpg" for i in range(4)]
    + [f"sub/deeper/rings_{i}.png" for i in range(4)]
)


def draw(family: str, variant: int) -> Image.Image:
    """Three families of patterns, four variants each (period, phase, colour shift, size)."""
    h, w = 96 + 8 * variant, 120 - 6 * variant
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = 10.0 + 4 * variant
    if family == "stripes":
        mask = (np.sin((y + 3 * variant) * 2 * np.pi / period) > 0)[..., None]
        colours = np.array([[220, 30 + 20 * variant, 30], [250, 250, 240]], np.float32)
    elif family == "checks":
        mask = ((x // period + y // period) % 2 == 0)[..., None]
        colours = np.array([[20, 40 + 15 * variant, 200], [240, 240, 250]], np.float32)
    else:
        r = np.hypot(x - w / 2, y - h / 2)
        mask = (np.sin(r * 2 * np.pi / period) > 0)[..., None]
        colours = np.array([[20, 160 + 15 * variant, 40], [10, 10, 10]], np.float32)
    pixels = np.where(mask, colours[0], colours[1]).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def lines(result: Result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images in three pattern families (PNG and JPEG, two sub-folders), a text and an empty file."""
    ModelSpec.load(default_model_dir())  # fails (not skips) with a clear message if the model is missing
    root = tmp_path_factory.mktemp("photos")
    for name in IMAGES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        family, variant = path.stem.split("_")
        draw(family, int(variant)).save(path)  # format from the suffix: PNG or JPEG
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def built(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A local index of `source`, built once by the CLI (tests that change it work on a copy)."""
    index = tmp_path_factory.mktemp("built") / "index"
    return index, run("index", "--index", str(index), str(source), *THREADS)


@pytest.fixture
def index_copy(built: tuple[Path, Result], tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(built[0], copy)
    return copy


# --- index ----------------------------------------------------------------------------------------


def test_index_reports_unreadable_files_with_path_and_reason_and_indexes_the_rest(
    built: tuple[Path, Result], source: Path
) -> None:
    _, result = built

    assert result.exit_code == 0, result.output
    assert f"skipped {source / 'notes.txt'}: not a recognised image" in result.stderr
    assert f"skipped {source / 'empty.png'}: empty file (0 bytes)" in result.stderr
    assert "indexed 12, unchanged 0, skipped 2" in result.stdout


def test_index_keys_are_paths_relative_to_the_source_folder(built: tuple[Path, Result]) -> None:
    searcher = Searcher(ImageIndex.open(str(built[0])))
    searcher.refresh(force=True)

    assert sorted(searcher.live_refs()) == sorted(IMAGES)
    assert {r.bucket for r in searcher.live_refs().values()} == {"local"}


def test_indexing_again_without_changes_indexes_nothing_new(index_copy: Path, source: Path) -> None:
    generation = ImageIndex.open(str(index_copy)).manifest().generation

    result = run("index", "--index", str(index_copy), str(source), "--json", *THREADS)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["indexed"], summary["unchanged"], summary["skipped"]) == (0, 12, 2)
    assert ImageIndex.open(str(index_copy)).manifest().generation == generation


def test_index_exits_1_when_nothing_could_be_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")

    result = run("index", "--index", str(tmp_path / "index"), str(folder), *THREADS)

    assert result.exit_code == 1
    assert "nothing could be indexed" in result.stderr
    assert f"skipped {folder / 'readme.txt'}" in result.stderr


# --- search ---------------------------------------------------------------------------------------


def test_search_json_prints_one_line_per_query_best_first_with_the_image_itself_on_top(
    built: tuple[Path, Result], source: Path
) -> None:
    queries = [str(source / "stripes_2.png"), str(source / "sub/deeper/rings_0.png")]

    result = run("search", "--index", str(built[0]), *queries, "--json", "--k", "5", *THREADS)

    assert result.exit_code == 0, result.output
    answers = lines(result)
    assert [a["query"] for a in answers] == queries
    for answer, key in zip(answers, ["stripes_2.png", "sub/deeper/rings_0.png"], strict=True):
        hits = answer["hits"]
        assert len(hits) == 5
        assert set(hits[0]) == {"key", "score", "tags"}
        assert hits[0]["key"] == key
        assert hits[0]["score"] == pytest.approx(1.0, abs=2e-3)
    # without re-ranking (--expand 0) the scores fall down the list; re-ranked, the order is the re-ranking's
    plain = lines(run("search", "--index", str(built[0]), *queries, "--json", "--k", "5", "--expand", "0", *THREADS))
    for answer in plain:
        scores = [h["score"] for h in answer["hits"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 5


def test_search_by_indexed_key_and_reports_unknown_queries(built: tuple[Path, Result]) -> None:
    result = run("search", "--index", str(built[0]), "sub/checks_1.jpg", "nowhere.png", "--json", "--k", "3")

    assert result.exit_code == 0, result.output
    found, missing = lines(result)
    assert found["query"] == "sub/checks_1.jpg"
    assert found["hits"][0]["key"] == "sub/checks_1.jpg"
    assert missing["query"] == "nowhere.png"
    assert "neither an image file nor an indexed key" in missing["error"]


def test_search_exits_1_when_every_query_fails(built: tuple[Path, Result]) -> None:
    result = run("search", "--index", str(built[0]), "nowhere.png", "--json")

    assert result.exit_code == 1
    assert "error" in lines(result)[0]


@pytest.mark.parametrize("metric", ["cosine", "hamming", "hybrid"])
def test_search_accepts_each_metric(built: tuple[Path, Result], source: Path, metric: str) -> None:
    query = str(source / "sub/checks_3.jpg")

    result = run("search", "--index", str(built[0]), query, "--metric", metric, "--json", *THREADS)

    assert result.exit_code == 0, result.output
    hits = lines(result)[0]["hits"]
    best = hits[0]["score"]
    assert best == pytest.approx(1.0, abs=2e-3)
    assert "sub/checks_3.jpg" in [h["key"] for h in hits if h["score"] == best]  # Hamming may tie


def test_search_with_a_bad_metric_exits_non_zero_naming_the_allowed_values(
    built: tuple[Path, Result],
) -> None:
    result = run("search", "--index", str(built[0]), "stripes_0.png", "--metric", "euclid")

    assert result.exit_code != 0
    assert "euclid" in result.output
    for allowed in ("hybrid", "cosine", "hamming"):
        assert allowed in result.output


# --- info, compact, fit ---------------------------------------------------------------------------


def info(index: Path) -> dict:
    result = run("info", "--index", str(index), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_info_json_describes_the_index(built: tuple[Path, Result]) -> None:
    facts = info(built[0])

    assert facts["live"] == facts["entries"] == 12
    assert facts["segments"] >= 1
    assert facts["model"]["name"] == ModelSpec.load(default_model_dir()).name
    assert facts["encoder"].startswith("lsh-")
    assert facts["location"] == str(built[0])
    assert facts["query_bytes"] > 0


def test_compact_folds_the_index_into_one_base_segment(index_copy: Path) -> None:
    result = run("compact", "--index", str(index_copy), "--json", "--threads", "1")

    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["entries"] == 12
    assert facts["segments_folded"] >= 1
    after = info(index_copy)
    assert (after["segments"], after["live"]) == (1, 12)


def test_fit_switches_to_an_itq_encoder_and_search_still_finds_each_image(
    index_copy: Path, source: Path
) -> None:
    result = run("fit", "--index", str(index_copy), "--min-count", "5", "--bits", "8", "--dims", "8")

    assert result.exit_code == 0, result.output
    assert "itq-8b-8d" in result.stdout
    assert "12 entries re-encoded" in result.stdout
    facts = info(index_copy)
    assert facts["encoder"].startswith("itq-8b-8d-")
    assert facts["live"] == 12
    search = run(
        "search", "--index", str(index_copy), "sub/deeper/rings_2.png", "--metric", "cosine", "--json"
    )
    assert lines(search)[0]["hits"][0]["key"] == "sub/deeper/rings_2.png"


def test_fit_refuses_fewer_images_than_the_minimum(index_copy: Path) -> None:
    result = run("fit", "--index", str(index_copy), "--min-count", "50", "--bits", "8", "--dims", "8")

    assert result.exit_code == 2
    assert "holds 12 images" in result.stderr
    assert info(index_copy)["encoder"].startswith("lsh-")


def test_fit_with_clusters_refuses_an_index_too_small_for_them_and_keeps_its_encoder(index_copy: Path) -> None:
    result = run("fit", "--index", str(index_copy), "--min-count", "5", "--bits", "8", "--dims", "8", "--clusters", "2")

    assert result.exit_code == 2
    assert "needs at least 100 images (50 a cluster)" in result.stderr
    assert info(index_copy)["encoder"].startswith("lsh-")


# --- S3 (moto) ------------------------------------------------------------------------------------


def test_index_and_search_on_s3_through_an_endpoint_url(
    source: Path, s3_bucket: str, moto_endpoint: str
) -> None:
    location = f"s3://{s3_bucket}/photos/index"
    endpoint = ["--endpoint-url", moto_endpoint]

    indexed = run("index", "--index", location, *endpoint, str(source), "--json", *THREADS)
    query = str(source / "stripes_1.png")
    searched = run("search", "--index", location, *endpoint, query, "stripes_3.png", "--json", *THREADS)

    assert indexed.exit_code == 0, indexed.output
    assert json.loads(indexed.stdout.strip().splitlines()[-1])["indexed"] == 12
    assert searched.exit_code == 0, searched.output
    by_image, by_key = lines(searched)
    assert (by_image["query"], by_image["hits"][0]["key"]) == (query, "stripes_1.png")
    assert (by_key["query"], by_key["hits"][0]["key"]) == ("stripes_3.png", "stripes_3.png")
    facts = json.loads(run("info", "--index", location, *endpoint, "--json").stdout)
    assert facts["live"] == 12
    assert facts["location"] == f"s3://{s3_bucket}/photos/index"


def test_search_with_a_query_file_that_is_not_an_image_reports_why(
    built: tuple[Path, Result], source: Path
) -> None:
    text = str(source / "notes.txt")

    alone = run("search", "--index", str(built[0]), text, "--json", *THREADS)
    mixed = run("search", "--index", str(built[0]), text, str(source / "stripes_0.png"), "--json", *THREADS)

    assert alone.exit_code == 1, alone.output
    (answer,) = lines(alone)
    assert answer["query"] == text
    assert "not a recognised image" in answer["error"]
    assert "hits" not in answer
    assert mixed.exit_code == 0, mixed.output
    error, found = lines(mixed)
    assert "not a recognised image" in error["error"]
    assert found["hits"][0]["key"] == "stripes_0.png"


def test_search_text_prints_one_line_per_phrase_and_names_words_no_concept_matches(
    built: tuple[Path, Result],
) -> None:
    result = run("search", "--index", str(built[0]), "--text", "a dog on a beach", "--text", "xyzzy", "--json", "--k", "4")

    assert result.exit_code == 0, result.output
    found, unknown = lines(result)
    assert found["query"] == "a dog on a beach" and len(found["hits"]) == 4
    scores = [h["score"] for h in found["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert unknown["query"] == "xyzzy" and "no concept matches 'xyzzy'" in unknown["error"]


def test_search_text_exits_1_when_no_phrase_matches_a_concept(built: tuple[Path, Result]) -> None:
    result = run("search", "--index", str(built[0]), "--text", "xyzzy plugh", "--json")

    assert result.exit_code == 1
    assert "no concept matches" in lines(result)[0]["error"]


def test_search_with_text_adds_the_words_to_each_image_and_key_query(built: tuple[Path, Result]) -> None:
    index = str(built[0])
    alone = lines(run("search", "--index", index, "stripes_0.png", "--json", "--k", "12"))[0]
    result = run("search", "--index", index, "stripes_0.png", "--with-text", "a traffic light", "--json", "--k", "12")

    assert result.exit_code == 0, result.output
    (both,) = lines(result)
    assert (both["query"], both["text"]) == ("stripes_0.png", "a traffic light")
    words = lines(run("search", "--index", index, "--text", "a traffic light", "--json", "--k", "12"))[0]
    best = next(h["key"] for h in words["hits"] if h["key"] != "stripes_0.png")

    def gap(answer: dict[str, Any]) -> float:
        scores = {h["key"]: h["score"] for h in answer["hits"]}
        return float(scores["stripes_0.png"] - scores[best])

    assert best in {h["key"] for h in alone["hits"]} and best in {h["key"] for h in both["hits"]}
    assert gap(both) < gap(alone)  # the words pull the ranking toward the image they rank high
    unknown = run("search", "--index", index, "stripes_0.png", "--with-text", "xyzzy", "--json")
    assert unknown.exit_code == 2 and "no concept matches 'xyzzy'" in unknown.output  # a bad option value
    bare = run("search", "--index", index, "--with-text", "a beach")
    assert bare.exit_code != 0 and "--with-text goes with image files" in bare.output
