"""The end-to-end tests' local stack (tests/localstack.py) for the whole session, and their images."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..imagegen import synthetic_image as _synthetic_image
from ..localstack import API_KEY, CLI, ROOT, Stack, free_port, launch, stop

__all__ = ["API_KEY", "ROOT", "Stack", "free_port", "launch", "stop"]  # the e2e tests import these from here

DATASETS = ROOT.parent / "shared" / "datasets"


def synthetic_image(seed: int) -> bytes:
    """A 160-pixel JPEG whose content differs clearly from every other seed's."""
    return _synthetic_image(seed, size=160, fmt="JPEG", shapes=4)


def sample_images(count: int, *, prefix: str, per_class: int = 2, skip: int = 0) -> dict[str, bytes]:
    """key → JPEG bytes: Corel-1k photos (per_class of each class, after skipping `skip`) from
    ../shared/datasets when present, else generated images (the tests run on a fresh clone too)."""
    corel = DATASETS / "corel1k.zip"
    if corel.is_file():
        with zipfile.ZipFile(corel) as archive:
            rows = archive.read("corel1k/labels.csv").decode().splitlines()[1:]
            picked: dict[str, list[str]] = {}
            for row in rows:
                path, label, split = row.split(",")
                if split == "db":
                    picked.setdefault(label, []).append(path)
            chosen = [p for group in picked.values() for p in group[skip : skip + per_class]][:count]
            return {
                f"{prefix}/{picked_label(picked, p)}-{Path(p).name}": archive.read(f"corel1k/{p}")
                for p in chosen
            }
    return {f"{prefix}/{i:02d}.jpg": synthetic_image(1000 + skip * 100 + i) for i in range(count)}


def picked_label(picked: dict[str, list[str]], path: str) -> str:
    return next(label for label, paths in picked.items() if path in paths).replace(" ", "-")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CLI.exists():
        pytest.skip(f"{CLI} not found: install the package first (make setup)")
    running = launch(log=tmp_path_factory.mktemp("local-stack") / "stack.log", bucket="e2e-images")
    try:
        yield running
    finally:
        stop(running.process)
