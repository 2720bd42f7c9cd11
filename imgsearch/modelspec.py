"""The model manifest: what a preprocessor needs to know about an ONNX image model."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ModelNotFound

MANIFEST_NAME = "model.json"
RESIZE_POLICIES = ("crop", "squash", "keep")


def default_model_dir() -> Path:
    """Where `build-model` writes and the engine reads the model: $IMGSEARCH_MODEL_DIR or the cache."""
    env = os.environ.get("IMGSEARCH_MODEL_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "imgsearch" / "models" / "efficientnet-lite0"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Manifest written beside an ONNX file (model.json).

    Any ONNX image model with input NCHW float32 and a pooled feature output works with one.
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

    def validate(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize policy {self.resize!r} is not one of {', '.join(RESIZE_POLICIES)}")
        if self.input_size < 8 or self.output_dim < 1:
            raise ValueError("input_size and output_dim must be positive")

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
            known = set(cls.__dataclass_fields__)
            spec = cls(**{k: v for k, v in raw.items() if k in known})
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
