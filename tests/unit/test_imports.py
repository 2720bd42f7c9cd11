"""Import-time guarantees of the core package, each checked in a fresh interpreter."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE_MODULES = sorted(
    f"imgsearch.{p.stem}" for p in (REPO / "imgsearch").glob("*.py") if p.stem not in ("__init__", "__main__")
)
# What the CDK app (stacks/) and the handlers' configuration import from the core: no native libraries.
LIGHT = ["imgsearch", "imgsearch.settings", "imgsearch.options", "imgsearch.errors", "lambdas.common.config"]
CORE = [
    "imgsearch",
    "imgsearch.index",
    "imgsearch.search",
    "imgsearch.embed",
    "imgsearch.encode",
    "imgsearch.segment",
    "imgsearch.images",
    "imgsearch.ingest",
    "imgsearch.manifest",
    "imgsearch.modelspec",
    "imgsearch.resolve",
    "imgsearch.store",
    "imgsearch.build_model",
]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def describe(done: subprocess.CompletedProcess[str]) -> str:
    crashed = f" (killed by signal {-done.returncode})" if done.returncode < 0 else ""
    return (
        f"exit code {done.returncode}{crashed}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-4000:]}"
    )


def test_core_imports_without_aws() -> None:
    done = run_python(
        """
        import importlib, sys
        for name in sys.argv[1:]:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer"))
        print("AWS:", ",".join(loaded) or "none")
        """,
        *CORE,
    )
    assert done.returncode == 0, describe(done)
    assert done.stdout.strip() == "AWS: none", f"the core package loaded the AWS SDK: {done.stdout}"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A one-node ONNX model (Relu) written with the onnx package, or else the default model."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        from imgsearch.errors import ModelNotFound
        from imgsearch.modelspec import ModelSpec, default_model_dir

        try:
            spec = ModelSpec.load(default_model_dir())
        except ModelNotFound:
            pytest.skip("needs the onnx package (build extra) or a built model to create a session")
        return default_model_dir() / spec.onnx_file
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "relu.onnx"
    path.write_bytes(model.SerializeToString())
    return path


SESSION_AND_INDEX = """
    import sys
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()[0]
    if inputs.shape[-1] == 4:
        out = session.run(None, {inputs.name: np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)})[0]
        assert out.tolist() == [[0.0, 2.0, 0.0, 4.0]], out
    index = usearch.index.Index(ndim=4, metric="cos")
    index.add(np.arange(3), np.eye(3, 4, dtype=np.float32))
    assert int(index.search(np.array([0, 1, 0, 0], np.float32), 1).keys[0]) == 1
    print("ok")
"""


@pytest.mark.parametrize(
    "imports",
    [
        "from imgsearch.segment import Segment\nimport usearch.index",
        "from imgsearch.search import Searcher\nimport usearch.index",
        "import imgsearch.graphrows\nimport usearch.index",
    ],
    ids=["imgsearch.segment", "imgsearch.search", "imgsearch.graphrows"],
)
def test_usearch_after_imgsearch_does_not_crash(tiny_onnx: Path, imports: str) -> None:
    """usearch 2.26.6 loaded before onnxruntime 1.32 segfaults the process (Linux x86_64): a core module that
    imports usearch loads onnxruntime first (imgsearch/_onnx_first.py). This guards that workaround."""
    done = run_python(imports + "\n" + textwrap.dedent(SESSION_AND_INDEX), str(tiny_onnx))
    assert done.returncode == 0, describe(done)
    assert done.stdout.strip() == "ok", describe(done)


IMPORT_ORDER = """
    import importlib, json, sys
    importlib.import_module(sys.argv[1])
    order = list(sys.modules)
    print(json.dumps({m: order.index(m) for m in ("onnxruntime", "usearch", "boto3") if m in sys.modules}))
"""


@pytest.mark.parametrize("module", CORE_MODULES)
def test_every_core_module_that_loads_usearch_loads_onnxruntime_first(module: str) -> None:
    done = run_python(IMPORT_ORDER, module)
    assert done.returncode == 0, describe(done)
    loaded = json.loads(done.stdout)
    if "usearch" in loaded:
        assert "onnxruntime" in loaded and loaded["onnxruntime"] < loaded["usearch"], (
            f"importing {module} loaded usearch before onnxruntime: add `import imgsearch._onnx_first` before "
            f"its usearch import ({loaded})"
        )


def test_the_guard_is_what_loads_onnxruntime_before_usearch() -> None:
    """The only core modules importing usearch themselves import imgsearch._onnx_first before it."""
    usearch = re.compile(r"^\s*(from|import) usearch", re.M)
    importers = {p.name: p.read_text() for p in sorted((REPO / "imgsearch").glob("*.py"))}
    importers = {name: text for name, text in importers.items() if usearch.search(text)}
    assert importers, "no core module imports usearch: this guard has nothing left to guard"
    for name, text in importers.items():
        first = usearch.search(text)
        assert first is not None
        assert 0 <= text.find("import imgsearch._onnx_first") < first.start(), name


@pytest.mark.parametrize("module", LIGHT)
def test_the_package_and_its_settings_load_neither_onnxruntime_nor_usearch_nor_boto3(module: str) -> None:
    """What the CDK app imports from the core (settings, constants) needs no native library and no AWS SDK."""
    done = run_python(IMPORT_ORDER, module)
    assert done.returncode == 0, describe(done)
    assert json.loads(done.stdout) == {}, f"importing {module} loaded {done.stdout}"


def test_the_cdk_app_loads_neither_onnxruntime_nor_usearch() -> None:
    done = run_python(IMPORT_ORDER, "stacks.imgsearch_stack")
    assert done.returncode == 0, describe(done)
    assert json.loads(done.stdout) == {}, f"importing the stacks loaded {done.stdout}"
