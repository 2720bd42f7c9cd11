"""The model manifest: what a preprocessor needs to know about an ONNX image model, and what else it
ships: class scores and their vocabulary (`ConceptSpec`), a text encoder (`TextSpec`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ModelNotFound

MANIFEST_NAME = "model.json"
RESIZE_POLICIES = ("crop", "squash", "keep")
TEXT_SPACES = ("concepts", "image")


def default_model_dir() -> Path:
    """Where `build-model` writes and the engine reads the model: $IMGSEARCH_MODEL_DIR or the cache."""
    env = os.environ.get("IMGSEARCH_MODEL_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "imgsearch" / "models" / "efficientnet-lite0"


@dataclass(frozen=True, kw_only=True)
class ConceptSpec:
    """The image model's class scores as concepts: which output holds them and what each class is.

    `vocabulary_file` is JSON, `{"classes": [{"synset", "lemmas", "definition"}, ...]}` in output order;
    `head_file` (optional) is an .npz of the classifier, `weight` (classes × features) and `bias`, whose
    rows are the concepts' directions in the feature space.
    """

    output_name: str
    count: int
    vocabulary_file: str
    vocabulary_sha256: str
    head_file: str = ""
    head_sha256: str = ""
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class TextSpec:
    """A text encoder shipped with the image model (ONNX + a Hugging Face `tokenizer.json`).

    `space` says where its vectors live: "image" for a trained image–text pair (text vectors compare
    with the image vectors directly: `dim` equals the image model's `output_dim`); "concepts" for a
    sentence model, whose vectors compare with the concept texts embedded once (`concept_vectors_file`,
    an .npy of concepts × dim, unit rows). Inputs are int64 token ids (and, when named, the attention
    mask), batch × tokens; the output is one vector per text (pooled in the graph).
    """

    name: str
    onnx_file: str
    sha256: str
    tokenizer_file: str
    tokenizer_sha256: str
    dim: int
    space: str
    input_ids: str = "input_ids"
    attention_mask: str = "attention_mask"  # "" when the graph takes ids only (CLIP-style, fixed length)
    output_name: str = "embedding"
    max_length: int = 128
    pad_to: int = 0  # pad every text to this many tokens (graphs with a fixed length); 0: the longest
    concept_vectors_file: str = ""
    concept_vectors_sha256: str = ""
    source: str = ""

    def validate(self, image_dim: int) -> None:
        if self.space not in TEXT_SPACES:
            raise ValueError(f"text space {self.space!r} is not one of {', '.join(TEXT_SPACES)}")
        if self.dim < 1 or self.max_length < 2:
            raise ValueError("text dim and max_length must be positive")
        if self.space == "image" and self.dim != image_dim:
            raise ValueError(
                f"a text encoder in the image space must give {image_dim}-d vectors like the image model, "
                f"not {self.dim}-d"
            )
        if self.space == "concepts" and not self.concept_vectors_file:
            raise ValueError("a text encoder in the concept space needs concept_vectors_file")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Manifest written beside an ONNX file (model.json).

    Any ONNX image model with input NCHW float32 and a pooled feature output works with one.

    `sha256` identifies the vectors: it is the checksum of the features-only graph. When the file also
    computes other outputs (the class scores), the file's own checksum is `file_sha256` and the features
    graph's checksum is also recorded in the file (metadata `imgsearch.features_sha256`): adding an
    output changes neither `sha256` nor `fingerprint`, so indexes built before still open.
    """

    name: str
    onnx_file: str
    input_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str
    crop_ratio: float
    output_name: str
    output_dim: int
    opset: int
    sha256: str
    pixel_scale: float = 1.0  # pixels are divided by this before mean/std (1.0: 0..255, 255.0: 0..1)
    source: str = ""
    file_sha256: str = ""  # checksum of onnx_file when it holds more than the features graph
    concepts: ConceptSpec | None = None
    text: TextSpec | None = None

    @property
    def checksum(self) -> str:
        """What onnx_file must hash to."""
        return self.file_sha256 or self.sha256

    def validate(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize policy {self.resize!r} is not one of {', '.join(RESIZE_POLICIES)}")
        if self.input_size < 8 or self.output_dim < 1:
            raise ValueError("input_size and output_dim must be positive")
        if self.concepts is not None and self.concepts.count < 1:
            raise ValueError("concepts.count must be positive")
        if self.text is not None:
            self.text.validate(self.output_dim)

    @property
    def fingerprint(self) -> str:
        """The model file plus everything that shapes its input: equal fingerprints, comparable vectors."""
        facts = [self.sha256, self.input_size, self.resize, self.crop_ratio, self.mean, self.std, self.pixel_scale]
        return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, model_dir: Path) -> ModelSpec:
        path = Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ModelNotFound(
                f"no model manifest at {path}: run `imgsearch build-model` (or set IMGSEARCH_MODEL_DIR "
                "to a folder holding an ONNX file and its model.json)"
            )
        try:
            raw = json.loads(path.read_text())
            raw["mean"] = tuple(raw["mean"])
            raw["std"] = tuple(raw["std"])
            for name, part in (("concepts", ConceptSpec), ("text", TextSpec)):
                if raw.get(name) is not None:
                    raw[name] = _known(part, raw[name])
            spec = _known(cls, raw)
            spec.validate()
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ModelNotFound(
                f"{path} is not a valid model manifest ({error}): rebuild it with `imgsearch build-model --force`"
            ) from None
        if not (Path(model_dir) / spec.onnx_file).is_file():
            raise ModelNotFound(
                f"{path} names {spec.onnx_file}, which is missing: run `imgsearch build-model`"
            )
        return spec

    def missing(self, model_dir: Path) -> list[str]:
        """The named files that are not in model_dir (the image model needs only `onnx_file`; text search
        needs the others: copy every file of `files()` to deploy it)."""
        return [name for name in self.files() if not (Path(model_dir) / name).is_file()]

    def files(self) -> dict[str, str]:
        """Every file the manifest names, with the checksum it must have."""
        named = {self.onnx_file: self.checksum}
        if self.concepts is not None:
            named[self.concepts.vocabulary_file] = self.concepts.vocabulary_sha256
            if self.concepts.head_file:
                named[self.concepts.head_file] = self.concepts.head_sha256
        if self.text is not None:
            named[self.text.onnx_file] = self.text.sha256
            named[self.text.tokenizer_file] = self.text.tokenizer_sha256
            if self.text.concept_vectors_file:
                named[self.text.concept_vectors_file] = self.text.concept_vectors_sha256
        return named

    def intact(self, model_dir: Path) -> bool:
        """True when every named file is there with its recorded checksum (reads them all)."""
        for name, digest in self.files().items():
            path = Path(model_dir) / name
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True


def _known(cls: Any, raw: Any) -> Any:
    """cls built from a JSON object, ignoring the fields it does not know (lists become tuples)."""
    if not isinstance(raw, dict):
        raise TypeError(f"{cls.__name__} must be a JSON object")
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
