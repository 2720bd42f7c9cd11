"""Float-graph layouts compared on one large segment: f16 against int8 (plain, scaled, rotated + scaled).

    .venv/bin/python scripts/graph_dtypes.py --index /tmp/scale-1m-i8/index   # after scripts/scale.py

Takes the largest segment of --index whose size is at most --rows, re-encodes its raw embeddings to
float vectors, builds one HNSW graph per layout and prints bytes a row, recall@10 against exact float
cosine and p50 of one search at expansion_search 128 and 256 (queries: CIFAR-10 test embeddings).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imgsearch._onnx_first  # noqa: E402,F401  (onnxruntime before usearch)
from imgsearch.index import ImageIndex  # noqa: E402
from imgsearch.segment import CONNECTIVITY, EXPANSION_ADD, quantise, random_rotation  # noqa: E402
from imgsearch.store import LocalStore  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=Path, default=ROOT / "bench-out" / "cifar-raw.npy")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    from usearch.index import Index
    from usearch.index import search as exact_search

    index = ImageIndex(LocalStore(args.index))
    manifest = index.manifest()
    info = max((s for s in manifest.segments if s.count <= args.rows), key=lambda s: s.count)
    encoder = index.encoder(info.encoder)
    raw = index.load_raw(info)
    floats = unit(np.concatenate([encoder.floats(np.asarray(raw[i : i + 65536], np.float32)) for i in range(0, len(raw), 65536)]))
    queries = unit(encoder.floats(np.asarray(np.load(args.queries, mmap_mode="r")[-args.count :], np.float32)))
    truth = exact_search(floats, queries, 10, "cos", exact=True).keys
    print(f"segment {info.name}: {len(floats)} rows, {floats.shape[1]}-d; {len(queries)} queries")
    rotation = random_rotation(floats.shape[1], seed=0)
    scaled = lambda x: np.clip(np.rint(x * (127 / np.abs(x).max(1, keepdims=True))), -127, 127).astype(np.int8)  # noqa: E731
    layouts = {
        "f16": ("f16", floats, queries),
        "i8, USearch's own cast": ("i8", floats, queries),
        "i8, scaled per vector": ("i8", scaled(floats), scaled(queries)),
        "i8, rotated + scaled (kept)": ("i8", quantise(floats, rotation), quantise(queries, rotation)),
    }
    for name, (dtype, rows, asked) in layouts.items():
        graph = Index(ndim=floats.shape[1], metric="cos", dtype=dtype, connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)
        started = time.perf_counter()
        graph.add(np.arange(len(rows), dtype=np.uint64), rows, threads=0)
        built = time.perf_counter() - started
        line = [f"{name}: build {built:.1f} s, {graph.memory_usage / len(rows):.0f} B/row in memory, "
                f"{graph.serialized_length / len(rows):.0f} B/row stored"]
        for ef in (128, 256):
            graph.expansion_search = ef
            took, got = [], []
            for q in asked:
                t = time.perf_counter()
                got.append(graph.search(q, 10).keys)
                took.append(time.perf_counter() - t)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)])
            line.append(f"ef {ef}: recall@10 {recall:.3f}, p50 {np.percentile(took, 50) * 1000:.2f} ms")
        print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
