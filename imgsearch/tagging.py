"""Tag names: the model's concept vocabulary, read once when first needed, and a tag name → class ids.

Shared by both index backends (the segment Searcher and S3 Vectors): a tag is an ImageNet class name,
compared with case and spacing ignored ("Golden_Retriever" = "golden retriever"); a few names
("crane", "maillot") name two classes and match either.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .concepts import Vocabulary
from .errors import BadParameter, ImgSearchError
from .modelspec import ModelSpec, default_model_dir


def tag_name(text: str) -> str:
    """A tag as compared: case and spacing ignored, "_" as a space ("Golden_Retriever" = "golden retriever")."""
    return " ".join(text.replace("_", " ").lower().split())


class TagNames:
    """The vocabulary (given, or read from `model_dir`, default: the model folder) and tag lookups."""

    def __init__(self, *, model_dir: Path | None = None, vocabulary: Vocabulary | None = None) -> None:
        self.model_dir = model_dir
        self._vocabulary = vocabulary
        self._read = vocabulary is not None
        self._ids: dict[str, tuple[int, ...]] = {}
        self._names: list[str] = []
        self._lock = threading.Lock()

    def vocabulary(self) -> Vocabulary | None:
        """The concepts' names, or None if the model folder has none (tags are then empty)."""
        if not self._read:
            with self._lock:
                if not self._read:
                    model_dir = self.model_dir or default_model_dir()
                    try:
                        self._vocabulary = Vocabulary.load(model_dir, ModelSpec.load(model_dir))
                    except ImgSearchError:  # no model manifest, no vocabulary, or an unreadable one
                        self._vocabulary = None
                    self._read = True
        return self._vocabulary

    def names(self) -> list[str]:
        """Class names by id (empty without a vocabulary)."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            return []
        if len(self._names) != len(vocabulary):
            self._names = vocabulary.names
        return self._names

    def ids(self, tag: str) -> tuple[int, ...]:
        """The class ids a tag names; BadParameter for a name that is no class, or without a vocabulary."""
        vocabulary = self.vocabulary()
        if vocabulary is None:
            raise BadParameter(
                "tags need the model's concept vocabulary, and this model folder has none: "
                "rebuild the model with `imgsearch build-model`"
            )
        if not self._ids:
            ids: dict[str, list[int]] = {}
            for concept in vocabulary.concepts:
                ids.setdefault(tag_name(concept.name), []).append(concept.id)
            self._ids = {name: tuple(found) for name, found in ids.items()}
        found = self._ids.get(tag_name(tag))
        if not found:
            raise BadParameter(
                f"unknown tag {tag!r}: tags are ImageNet class names such as 'golden retriever' or 'tabby' "
                "(the `tags` of search results show them)"
            )
        return found
