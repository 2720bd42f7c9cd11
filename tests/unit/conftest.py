"""Shared fixtures of the unit tests: the real Corel-1k images, read in place from the shared zip."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The shared data sets live beside the checkout: <repo>/../shared/datasets.
DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
COREL_ZIP = DATASETS / "corel1k.zip"


@dataclass(frozen=True)
class CorelItem:
    path: str  # relative to corel1k/, e.g. "db/0000.jpg"
    label: str
    split: str


class Corel1k:
    """The 1,000 labelled Corel photos of corel1k.zip, read without extracting."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        text = archive.read("corel1k/labels.csv").decode("utf-8")
        self.items = [
            CorelItem(row["path"], row["label"], row["split"])
            for row in csv.DictReader(io.StringIO(text, newline=""))
        ]

    def read(self, item: CorelItem | str) -> bytes:
        path = item.path if isinstance(item, CorelItem) else item
        return self.archive.read(f"corel1k/{path}")

    @property
    def labels(self) -> list[str]:
        return sorted({item.label for item in self.items})

    def stratified(self, per_class: int) -> list[CorelItem]:
        """The first `per_class` images of every class (in labels.csv order)."""
        taken: dict[str, int] = {}
        chosen = []
        for item in self.items:
            if taken.get(item.label, 0) < per_class:
                taken[item.label] = taken.get(item.label, 0) + 1
                chosen.append(item)
        return chosen


@pytest.fixture(scope="session")
def corel1k() -> Iterator[Corel1k]:
    if not COREL_ZIP.is_file():
        pytest.skip(
            f"../shared/datasets/corel1k.zip not found: expected {COREL_ZIP} "
            "(the shared data sets beside the checkout)"
        )
    with zipfile.ZipFile(COREL_ZIP) as archive:
        yield Corel1k(archive)
