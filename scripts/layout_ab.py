#!/usr/bin/env python3
"""A/B of the order a graph's rows are added in (`layout.order`) against their arrival order, on the largest
base of a built index: the same int8 rows, two graphs built here, searched query by query alternating.

    .venv/bin/python scripts/layout_ab.py --index /tmp/scale-1m-lda2/index --queries 400

Prints each graph's build time, recall@10 against exact search over the same int8 rows (200 queries),
and the p50 / p90 of one search at the base's beam, warm and with the caches flushed before each query
(a 48 MB sweep, as the other bases' searches and the pool leave them in a hybrid query).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from benchlib import index_ab, say


def main() -> None:
    args, queries = index_ab(__doc__)
    import imgsearch._onnx_first  # noqa: F401  # isort: skip  # onnxruntime before usearch
    from usearch.index import Index

    from imgsearch import layout
    from imgsearch.index import ImageIndex
    from imgsearch.search import graph_expansion
    from imgsearch.segment import CONNECTIVITY, EXPANSION_ADD, Segment, quantise

    index = ImageIndex.open(args.index)
    largest = max(index.manifest().segments, key=lambda s: s.count)
    base = Segment.from_file(Path(args.index) / "segments" / largest.name / "query.npz")
    if base.float_rows is None or base.float_slots is None or base.rotation is None:
        raise SystemExit(f"{largest.name} is not an int8 graph with a slot map: build the index with this version")
    rows = np.asarray(base.float_rows[base.float_slots[np.arange(len(base))]])  # int8, in arrival (row) order
    unit = rows.astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    beam = graph_expansion(len(rows))
    say("base_rows_dims_beam", [len(rows), rows.shape[1], beam])

    def build(name: str, order: np.ndarray) -> Index:
        graph = Index(ndim=rows.shape[1], metric="cos", dtype="i8", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD)
        started = time.perf_counter()
        for start in range(0, len(order), layout.CHUNK):
            at = order[start : start + layout.CHUNK]
            graph.add(at.astype(np.uint64), rows[at], threads=0)
        say(f"build_seconds_{name}", round(time.perf_counter() - started, 1))
        graph.expansion_search = beam
        return graph

    started = time.perf_counter()
    grouped = layout.order(unit)
    say("layout_order_seconds", round(time.perf_counter() - started, 2))
    graphs = {}
    for name, order in (("arrival_order", np.arange(len(rows))), ("layout_order", grouped)):
        graphs[name] = build(name, order)
    q = quantise(index.encoder(base.encoder).floats(queries), base.rotation)
    qf = q.astype(np.float32) / np.linalg.norm(q.astype(np.float32), axis=1, keepdims=True)
    truth = [set(np.argsort(-(unit @ v))[:10].tolist()) for v in qf[:200]]
    for name, graph in graphs.items():
        got = [set(np.asarray(graph.search(v, 10).keys, dtype=np.int64).tolist()) for v in q[:200]]
        say(f"recall@10_vs_exact_{name}", round(float(np.mean([len(a & b) / 10 for a, b in zip(got, truth, strict=True)])), 4))
    sweep = np.ones(48 * 2**20 // 8)
    names = list(graphs)
    for flush in (False, True):
        spent: dict[str, list[float]] = {name: [] for name in names}
        for i, v in enumerate(q):
            for name in names if i % 2 else names[::-1]:
                if flush:
                    sweep += 1.0
                started = time.perf_counter()
                graphs[name].search(v, 10)
                spent[name].append((time.perf_counter() - started) * 1000)
        for name, values in spent.items():
            say(f"search_{'flushed' if flush else 'warm'}_{name}_ms_p50_p90",
                f"{np.percentile(values, 50):.3f} / {np.percentile(values, 90):.3f}")


if __name__ == "__main__":
    main()
