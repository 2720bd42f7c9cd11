#!/usr/bin/env python3
"""Warm query latency (embed + search) with OpenBLAS on all cores against one thread, CIFAR-10 59,000.

    .venv/bin/python scripts/blas_threads_ab.py --datasets ../shared/datasets --raw bench-out/cifar-raw.npy \
        --work /tmp/blas-ab --out bench-out [--queries 300] [--rounds 2]

A query embeds one image (onnxruntime's threads) and then searches (usearch, and numpy for the
re-ranking's small matrices). OpenBLAS reads OPENBLAS_NUM_THREADS once, when numpy loads, so each
variant runs in its own child process; children alternate (unset, 1, unset, 1, …) on one index built
once from bench.py's cached embeddings (`--raw`, written by `scripts/bench.py --only cifar`). Each
child prints p50 / p99 of the embed, the search step and the whole, with and without re-ranking, over
the same test images (query by query the two re-ranking settings alternate). Figures in
docs/BENCHMARKS.md ("OpenBLAS threads on the query path").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATABASE = 59_000  # bench.py's CIFAR-10 split: the first 59,000 cached rows are the database


def child(args: argparse.Namespace) -> None:
    from benchlib import p50_p99, read_zip

    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.embed import Embedder
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher

    embedder = Embedder.load(threads=2)
    searcher = Searcher(ImageIndex.open(str(args.work / "index")))
    searcher.refresh(force=True)
    archive, root, rows = read_zip(args.datasets / "cifar10.zip")
    images = [archive.read(f"{root}/{r['path']}") for r in rows[: args.queries]]
    figures: dict[str, list[float]] = {}
    for i, data in enumerate(images):
        for expand in (None, 0) if i % 2 == 0 else (0, None):
            started = time.perf_counter()
            vector, _ = embedder.embed_bytes([data])
            embedded = time.perf_counter()
            searcher.search(vector, k=10, metric="hybrid", expand=expand)
            done = time.perf_counter()
            name = "reranked" if expand is None else "no_rerank"
            for part, ms in (("embed", embedded - started), ("step", done - embedded), ("total", done - started)):
                figures.setdefault(f"{name}.{part}", []).append(ms * 1000)
    print(json.dumps({name: p50_p99(values) for name, values in figures.items()}))


def build(args: argparse.Namespace) -> None:
    import numpy as np
    from bench import build_index

    import imgsearch._onnx_first  # noqa: F401
    from imgsearch.embed import Embedder
    from imgsearch.segment import ObjectRef

    raw = np.load(args.raw)[:DATABASE].astype(np.float32)
    refs = [ObjectRef(bucket="cifar", key=f"db/{i:05d}", sequencer="1") for i in range(len(raw))]
    build_index(args.work / "index", refs, raw, Embedder.load(threads=2), bits=256, dims=256, whiten=0.0, hnsw_min=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--raw", type=Path, default=Path("bench-out/cifar-raw.npy"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from benchlib import save_results, say

    say("command", " ".join(sys.argv))
    if not (args.work / "index").exists():
        started = time.perf_counter()
        build(args)
        say("build_index_s", round(time.perf_counter() - started, 1))
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for round_ in range(args.rounds):
        for threads in ("default", "1"):
            env = base if threads == "default" else {**base, "OPENBLAS_NUM_THREADS": threads}
            command = [sys.executable, __file__, "--child", "--datasets", str(args.datasets), "--work", str(args.work),
                       "--queries", str(args.queries)]
            answer = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            for name, value in json.loads(answer.strip().splitlines()[-1]).items():
                say(f"round{round_}.openblas_{threads}.{name}", value)
    save_results(args.out, "blas-threads-ab.json")


if __name__ == "__main__":
    main()
