"""The real Lambda layers (built without Docker) fit Lambda's 250 MB unzipped limit on both architectures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def _build_module():
    spec = importlib.util.spec_from_file_location("layers_build", ROOT / "layers" / "build.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["layers_build"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


build = _build_module()


@pytest.fixture(scope="module", params=["arm64", "x86_64"])
def built(request: pytest.FixtureRequest) -> tuple[str, dict[str, int]]:
    """Build (or reuse, when its inputs are unchanged) the layers and code for one architecture."""
    arch = request.param
    build.build_deps(arch)
    build.build_model(arch)
    build.build_code(arch)
    return arch, build.sizes(arch)


def test_function_plus_layers_fit_in_250_mb_unzipped(built: tuple[str, dict[str, int]]) -> None:
    arch, sizes = built
    print(f"{arch}: " + ", ".join(f"{k} {v / MB:.1f} MB" for k, v in sizes.items()))
    assert sizes["total"] < build.LAMBDA_LIMIT_BYTES, f"{arch} is {sizes['total'] / MB:.1f} MB unzipped"


def test_dependency_layer_has_the_runtime_packages_for_cp312_and_the_right_machine(
    built: tuple[str, dict[str, int]],
) -> None:
    arch, _ = built
    site = build.BUILD / arch / "deps" / "python"
    for package in ("numpy", "onnxruntime", "PIL", "usearch", "aws_lambda_powertools", "aws_xray_sdk"):
        assert (site / package).is_dir(), package
    assert not (site / "botocore").exists() and not (site / "boto3").exists()  # the runtime has them
    assert not list(site.rglob("__pycache__")) and not (site / "numpy" / "tests").exists()
    machine = {"arm64": "aarch64", "x86_64": "x86_64"}[arch]
    extensions = list((site / "onnxruntime").rglob("*.so"))
    assert extensions and all(
        "cpython-312" in p.name or not p.name.endswith("-linux-gnu.so") for p in extensions
    )
    assert any(machine in p.name for p in site.rglob("*.cpython-312-*.so"))


def test_model_layer_puts_the_model_at_opt_model(built: tuple[str, dict[str, int]]) -> None:
    arch, _ = built
    model = build.BUILD / arch / "model" / "model"  # mounted at /opt/model
    assert (model / "model.json").is_file() and list(model.glob("*.onnx"))


def test_code_asset_holds_the_core_package_and_the_handlers(built: tuple[str, dict[str, int]]) -> None:
    arch, _ = built
    code = build.BUILD / arch / "code"
    assert (code / "imgsearch" / "index.py").is_file()
    for name in ("ingest", "query", "compact"):
        assert (code / "lambdas" / name / "handler.py").is_file()
