#!/usr/bin/env python3
"""Build the Lambda layers and the function code without Docker.

    python layers/build.py --arch arm64            # layers/build/arm64/{deps,model,code}
    python layers/build.py --arch x86_64 --sizes    # ... and print unzipped sizes

- deps:  `pip install --platform manylinux_2_28_<machine> --only-binary=:all: --python-version 3.12
          --implementation cp --target layers/build/<arch>/deps/python` of layers/requirements*.txt,
         then tests, caches, headers and type stubs are stripped.
- model: the ONNX model and its model.json from imgsearch.modelspec.default_model_dir(), at /opt/model.
- code:  the imgsearch package and lambdas/ (what every function's handler imports).

A stamp file records the inputs, so an unchanged layer is not rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "layers" / "build"
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
PYTHON_VERSION = "3.12"
LAMBDA_LIMIT_BYTES = 250 * 1024 * 1024  # function + layers, unzipped

STRIP_DIRS = {"tests", "test", "testing", "__pycache__", "benchmarks", "include", "examples"}
STRIP_SUFFIXES = (".pyc", ".pyo", ".pyi", ".pxd", ".c", ".cpp", ".h", ".hpp")
KEEP_DIRS = {"numpy/testing", "numpy/_core/include"}  # numpy imports numpy.testing lazily in places


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def strip(site: Path) -> None:
    """Remove what a running function never reads."""
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(site).as_posix()
        if any(rel == keep or rel.startswith(keep + "/") for keep in KEEP_DIRS):
            continue
        if path.is_dir() and path.name in STRIP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in STRIP_SUFFIXES:
            path.unlink()
    for dist_info in site.glob("*.dist-info"):
        for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            (dist_info / name).unlink(missing_ok=True)
    shutil.rmtree(site / "bin", ignore_errors=True)


def _stamp(inputs: list[Path], extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in inputs:
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(file.as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _fresh(target: Path, stamp: str) -> bool:
    marker = target.parent / f".{target.name}.stamp"
    return target.is_dir() and marker.is_file() and marker.read_text() == stamp


def _mark(target: Path, stamp: str) -> None:
    (target.parent / f".{target.name}.stamp").write_text(stamp)


def build_deps(arch: str, *, force: bool = False) -> Path:
    out = BUILD / arch / "deps"
    requirements = [ROOT / "layers" / "requirements.txt", ROOT / "layers" / "requirements-nodeps.txt"]
    stamp = _stamp(requirements, f"{arch}|{PYTHON_VERSION}")
    if not force and _fresh(out, stamp):
        return out
    shutil.rmtree(out, ignore_errors=True)
    site = out / "python"
    common = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        f"manylinux_2_28_{MACHINES[arch]}",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--target",
        str(site),
    ]
    subprocess.run([*common, "-r", str(requirements[0])], check=True)
    subprocess.run([*common, "--no-deps", "-r", str(requirements[1])], check=True)
    strip(site)
    _mark(out, stamp)
    return out


def build_model(arch: str, model_dir: Path | None = None) -> Path:
    from imgsearch.modelspec import ModelSpec, default_model_dir

    source = Path(model_dir) if model_dir else default_model_dir()
    spec = ModelSpec.load(source)  # raises ModelNotFound with how to build it
    out = BUILD / arch / "model"
    shutil.rmtree(out, ignore_errors=True)
    (out / "model").mkdir(parents=True)
    for name in ("model.json", spec.onnx_file):
        shutil.copy2(source / name, out / "model" / name)
    return out


def build_code(arch: str) -> Path:
    out = BUILD / arch / "code"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "README.md")
    shutil.copytree(ROOT / "imgsearch", out / "imgsearch", ignore=ignore)
    shutil.copytree(ROOT / "lambdas", out / "lambdas", ignore=ignore)
    return out


def sizes(arch: str) -> dict[str, int]:
    parts = {name: tree_size(BUILD / arch / name) for name in ("deps", "model", "code")}
    parts["total"] = sum(parts.values())
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(MACHINES), action="append", help="default: both")
    parser.add_argument("--force", action="store_true", help="rebuild the dependency layer even if unchanged")
    parser.add_argument("--model-dir", type=Path, help="default: imgsearch.modelspec.default_model_dir()")
    parser.add_argument("--sizes", action="store_true", help="print unzipped sizes as JSON")
    args = parser.parse_args()
    report = {}
    for arch in args.arch or sorted(MACHINES):
        build_deps(arch, force=args.force)
        build_model(arch, args.model_dir)
        build_code(arch)
        report[arch] = sizes(arch)
        if report[arch]["total"] > LAMBDA_LIMIT_BYTES:
            print(
                f"{arch}: function + layers are {report[arch]['total']} bytes unzipped, over Lambda's "
                f"{LAMBDA_LIMIT_BYTES}",
                file=sys.stderr,
            )
            return 1
    if args.sizes:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
