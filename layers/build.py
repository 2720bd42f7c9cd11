#!/usr/bin/env python3
"""Build the Lambda layers and the function code without Docker.

    python layers/build.py --arch arm64            # layers/build/arm64/{deps,model,code}
    python layers/build.py --arch x86_64 --sizes    # ... and print unzipped sizes
    python layers/build.py --smoke python3.12       # ... and run this machine's build under CPython 3.12

- deps:  `pip install --platform manylinux_2_28_<machine> --only-binary=:all: --python-version 3.12
          --implementation cp --target layers/build/<arch>/deps/python` of layers/requirements*.txt,
         then tests, caches, headers, type stubs and the libraries' debug symbols are stripped.
- model: model.json and every file it names (the image ONNX model with its concept head, the concept
         vocabulary, the MiniLM text encoder, its tokenizer and concept vectors) from
         imgsearch.modelspec.default_model_dir(), at /opt/model.
- code:  the imgsearch package and lambdas/ (what every function's handler imports).

A stamp file records the inputs, so an unchanged layer is not rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
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


def strip(site: Path, arch: str) -> None:
    """Remove what a running function never reads."""
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(site).as_posix()
        if any(rel == keep or rel.startswith(keep + "/") for keep in KEEP_DIRS):
            continue
        if path.is_dir() and path.name in STRIP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in STRIP_SUFFIXES:
            path.unlink()
    strip_symbols(site, arch)
    for dist_info in site.glob("*.dist-info"):
        for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            (dist_info / name).unlink(missing_ok=True)
    shutil.rmtree(site / "bin", ignore_errors=True)


STRIP_TOOLS = {"arm64": ("aarch64-linux-gnu-strip", "strip"), "x86_64": ("x86_64-linux-gnu-strip", "strip")}


def strip_symbols(site: Path, arch: str) -> None:
    """Debug symbols out of the shared libraries (`strip --strip-unneeded`: the dynamic symbols stay).
    The wheels ship some unstripped: numkong's extension is 45.5 MB with them and 4.0 MB without, usearch's
    10.8 → 2.8 MB (x86_64). Another architecture's libraries need its binutils (Debian:
    binutils-aarch64-linux-gnu); a library the strip found cannot read is left as it is. The `*.libs` folders
    are skipped: auditwheel rewrote those with patchelf, and stripping one made numpy's OpenBLAS fail to load
    ("ELF load command address/offset not page-aligned"); `--smoke` runs the result to catch such a break."""
    tool = next((found for name in STRIP_TOOLS[arch] if (found := shutil.which(name))), None)
    if tool is None:
        print("strip not found: shared libraries keep their debug symbols", file=sys.stderr)
        return
    for path in sorted(site.rglob("*.so*")):
        if path.parent.name.endswith(".libs"):  # auditwheel's patchelf'd copies: stripping breaks them (numpy.libs)
            continue
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            subprocess.run([tool, "--strip-unneeded", str(path)], check=False, capture_output=True)


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
        "--platform",  # pip does not take manylinux_2_28 as allowing the manylinux2014 tag alone (tokenizers)
        f"manylinux2014_{MACHINES[arch]}",
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
    strip(site, arch)
    _mark(out, stamp)
    return out


def build_model(arch: str, model_dir: Path | None = None) -> Path:
    from imgsearch.modelspec import ModelSpec, default_model_dir

    source = Path(model_dir) if model_dir else default_model_dir()
    spec = ModelSpec.load(source)  # raises ModelNotFound with how to build it
    out = BUILD / arch / "model"
    shutil.rmtree(out, ignore_errors=True)
    (out / "model").mkdir(parents=True)
    missing = spec.missing(source)
    if missing:  # the image model alone would embed, but text search and tags need the rest
        raise SystemExit(f"{source} lacks {', '.join(missing)}: run `imgsearch build-model` first")
    for name in ("model.json", *spec.files()):
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


SMOKE = """
import io, json, sys
import numpy as np
from PIL import Image
import imgsearch  # onnxruntime before usearch
from imgsearch.embed import Embedder
from imgsearch.text import TextSearch
from usearch.index import Index
model = sys.argv[1]
image = io.BytesIO(); Image.new("RGB", (64, 48), (200, 30, 30)).save(image, "JPEG")
vectors, failures = Embedder.load(model).embed_bytes([image.getvalue()])
words = TextSearch.load(model).query("a dog on a beach")
index = Index(ndim=vectors.shape[1], metric="cos"); index.add(np.arange(1), vectors)
found = index.search(words.direction, 1)
print(json.dumps({"python": sys.version.split()[0], "dim": int(vectors.shape[1]), "failures": len(failures),
                  "matched": words.matched[0][0], "found": int(found.keys[0])}))
"""


def smoke(arch: str, python: str) -> dict[str, object]:
    """Run the built layers under a CPython 3.12 of this machine's architecture: embed an image, turn words
    into concepts (tokenizers + MiniLM), search a USearch index. Catches a library the stripping broke."""
    out = BUILD / arch
    env = {
        "PYTHONPATH": f"{out / 'deps' / 'python'}:{out / 'code'}",
        "PATH": "/usr/bin:/bin",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the layers must stay as built (no __pycache__)
    }
    done = subprocess.run(
        [python, "-s", "-c", SMOKE, str(out / "model" / "model")],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode:
        raise SystemExit(f"{arch} layers fail under {python}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(MACHINES), action="append", help="default: both")
    parser.add_argument("--force", action="store_true", help="rebuild the dependency layer even if unchanged")
    parser.add_argument("--model-dir", type=Path, help="default: imgsearch.modelspec.default_model_dir()")
    parser.add_argument("--sizes", action="store_true", help="print unzipped sizes as JSON")
    parser.add_argument(
        "--smoke",
        metavar="PYTHON",
        help="after building, run the layers of this machine's architecture under this CPython 3.12 (e.g. python3.12)",
    )
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
        if args.smoke and MACHINES[arch] == platform.machine():
            report[arch]["smoke"] = smoke(arch, args.smoke)  # type: ignore[assignment]
    if args.sizes or args.smoke:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
