"""Synthesise the stack once per context with stub assets (the real layers are tested in test_layers.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20,22")

ROOT = Path(__file__).resolve().parents[2]
CDK_JSON_CONTEXT = json.loads((ROOT / "cdk.json").read_text())[
    "context"
]  # feature flags and defaults, as `cdk synth`


@pytest.fixture(scope="session")
def stub_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny stand-ins for layers/build/<arch>/{deps,model,code}: synth hashes them, nothing runs them."""
    root = tmp_path_factory.mktemp("assets")
    (root / "deps" / "python").mkdir(parents=True)
    (root / "deps" / "python" / "stub.py").write_text("# dependency layer stand-in\n")
    (root / "model" / "model").mkdir(parents=True)
    (root / "model" / "model" / "model.json").write_text("{}\n")
    (root / "code" / "lambdas").mkdir(parents=True)
    (root / "code" / "lambdas" / "__init__.py").write_text("")
    return root


@pytest.fixture(scope="session")
def synth(stub_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """synth(**context) → (stack, Template); cached per context."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build

    cache: dict[tuple[tuple[str, str], ...], Any] = {}

    def make(**context: Any) -> Any:
        key = tuple(sorted((k, repr(v)) for k, v in context.items()))
        if key not in cache:
            app = cdk.App(
                context={**CDK_JSON_CONTEXT, "assetsDir": str(stub_assets), **context},
                outdir=str(tmp_path_factory.mktemp("cdk.out")),
            )
            stack = build(app)
            cache[key] = (stack, Template.from_stack(stack))
        return cache[key]

    return make
