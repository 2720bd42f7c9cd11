"""Near-duplicates: groups within a Hamming radius, and collapse=true keeping the best of each set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.duplicates import find_duplicates
from imgsearch.encode import hamming, radius_bits
from imgsearch.errors import BadParameter
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore
from imgsearch.writer import BatchWriter

Vectors = Callable[..., np.ndarray]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def copies(tmp_path: Path, spec: ModelSpec, unit_vectors: Vectors) -> tuple[Searcher, dict[str, str]]:
    """60 distinct images; images 0-4 have two near-copies each (tiny noise), image 5 one far variant."""
    rng = np.random.default_rng(3)
    raw = unit_vectors(60)
    keys = [f"img/{i:02d}.jpg" for i in range(60)]
    family = {k: k for k in keys}
    extra = []
    for i in range(5):
        for c in range(2):
            keys.append(f"copy/{i:02d}-{c}.jpg")
            family[keys[-1]] = f"img/{i:02d}.jpg"
            extra.append(raw[i] + 0.01 * rng.standard_normal(raw.shape[1]))
    keys.append("far/05.jpg")
    family["far/05.jpg"] = "far/05.jpg"  # not a copy: far enough to stay apart
    extra.append(raw[5] + 0.8 * rng.standard_normal(raw.shape[1]) / np.sqrt(raw.shape[1]) * 4)
    vectors = np.concatenate([raw, unit(np.array(extra))])
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    writer = BatchWriter(index)
    writer.add([ObjectRef(bucket="b", key=k, sequencer="1") for k in keys], vectors)
    writer.commit()
    searcher = Searcher(index)
    searcher.refresh(force=True)
    return searcher, family


def test_hamming_counts_differing_bits_and_a_radius_is_a_share_or_a_count() -> None:
    a = np.array([0b10110000, 0xFF], np.uint8)
    b = np.array([0b00110001, 0x0F], np.uint8)
    assert int(hamming(a, b)) == 2 + 4
    assert (radius_bits(0.15, 256), radius_bits(12, 256)) == (38, 12)


def test_near_copies_are_grouped_and_distinct_images_are_not(copies: tuple[Searcher, dict[str, str]]) -> None:
    searcher, _ = copies
    groups = find_duplicates(searcher, radius=0.15)
    found = {g.keys for g in groups}
    expected = {
        tuple(sorted([f"img/{i:02d}.jpg", f"copy/{i:02d}-0.jpg", f"copy/{i:02d}-1.jpg"])) for i in range(5)
    }
    assert found == expected
    assert all(g.max_bits <= radius_bits(0.15, 64) for g in groups)
    assert not any("far/05.jpg" in g.keys for g in groups)
    under = {g.keys for g in find_duplicates(searcher, radius=0.15, prefix="copy/")}
    assert under == {(f"copy/{i:02d}-0.jpg", f"copy/{i:02d}-1.jpg") for i in range(5)}  # only keys under the prefix


def test_collapse_keeps_the_best_of_each_set_of_near_copies_and_pages_after(copies: tuple[Searcher, dict[str, str]]) -> None:
    searcher, family = copies
    plain = searcher.search_key("img/00.jpg", k=12, metric="cosine", exact=True, expand=0)
    assert [family[h.key] for h in plain[:3]] == ["img/00.jpg"] * 3  # the image and its two copies first
    collapsed = searcher.search_key("img/00.jpg", k=6, metric="cosine", exact=True, collapse=True, expand=0)
    assert collapsed[0].key == "img/00.jpg"
    assert sum(family[h.key] == "img/00.jpg" for h in collapsed) == 1
    assert [h.key for h in collapsed[1:]] == [h.key for h in plain if family[h.key] != "img/00.jpg"][:5]
    pages = [h.key for o in (0, 3) for h in searcher.search_key("img/00.jpg", k=3, offset=o, metric="cosine", exact=True, collapse=True, expand=0)]
    assert pages == [h.key for h in collapsed]


def test_collapse_must_be_a_boolean() -> None:
    from imgsearch.options import SearchOptions

    with pytest.raises(BadParameter, match="collapse must be true or false"):
        SearchOptions.from_query({"collapse": "yes"}, default_k=10, default_metric="hybrid")
    assert SearchOptions.from_query({"collapse": "true"}, default_k=10, default_metric="hybrid").collapse is True


def test_the_duplicates_command_prints_groups_as_text_and_json(
    copies: tuple[Searcher, dict[str, str]], tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from imgsearch.cli import app

    location = str(tmp_path / "index")
    text = CliRunner().invoke(app, ["duplicates", "--index", location])
    assert text.exit_code == 0, text.output
    assert text.stdout.count("group ") == 5 and "  img/00.jpg" in text.stdout
    lines = [json.loads(line) for line in CliRunner().invoke(app, ["duplicates", "--index", location, "--json"]).stdout.splitlines()]
    assert sorted(sorted(g["keys"]) for g in lines) == [
        sorted([f"img/{i:02d}.jpg", f"copy/{i:02d}-0.jpg", f"copy/{i:02d}-1.jpg"]) for i in range(5)
    ]
    bad = CliRunner().invoke(app, ["duplicates", "--index", location, "--radius", "1.5"])
    assert bad.exit_code == 2 and "--radius" in bad.output
