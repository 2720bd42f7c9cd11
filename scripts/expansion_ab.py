#!/usr/bin/env python3
"""A/B of the graphs' search beam on a built index: one `expansion_search` for every graph (the old rule)
against `search.graph_expansion` (scaled by each graph's size), query by query alternating in one process.

    .venv/bin/python scripts/expansion_ab.py --index /tmp/scale-1m-i8/index --queries 400

Queries are the last CIFAR-10 embeddings of bench-out/cifar-raw.npy (the scale benchmark's queries);
recall@10 is against the same searcher's exact mode (int8 rows compared exhaustively). Prints p50 / p99
of the hybrid search step for both rules and their recall.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
from benchlib import index_ab


def main() -> None:
    args, queries = index_ab(__doc__)
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.index import ImageIndex
    from imgsearch.search import EXPANSION_SEARCH, Searcher, graph_expansion

    searcher = Searcher(ImageIndex.open(args.index))
    searcher.refresh(force=True)
    graphs = [live.segment for live in searcher.live.segments if live.segment.has_hnsw]
    rules = {
        "uniform": [EXPANSION_SEARCH] * len(graphs),
        "scaled": [graph_expansion(len(g)) for g in graphs],
    }
    print(json.dumps({"graphs": [len(g) for g in graphs], "beams": rules}))

    def use(rule: str) -> None:
        for graph, beam in zip(graphs, rules[rule], strict=True):
            graph.float_index.expansion_search = beam  # type: ignore[union-attr]

    truth = [{h.key for h in searcher.search(q[None], k=10, metric="cosine", exact=True, expand=0)[0]} for q in queries[:200]]
    times: dict[str, list[float]] = {rule: [] for rule in rules}
    recall: dict[str, list[float]] = {rule: [] for rule in rules}
    for rule in rules:  # warm both
        use(rule)
        for q in queries[:20]:
            searcher.search(q[None], k=10, expand=0)
    for i, q in enumerate(queries):
        for rule in (("uniform", "scaled") if i % 2 else ("scaled", "uniform")):
            use(rule)
            started = time.perf_counter()
            hits = searcher.search(q[None], k=10, expand=0)[0]
            times[rule].append((time.perf_counter() - started) * 1000)
            if i < len(truth):
                recall[rule].append(len({h.key for h in hits} & truth[i]) / 10)
    for rule in rules:
        values = sorted(times[rule])
        print(json.dumps({
            "rule": rule,
            "hybrid_p50_ms": round(statistics.median(values), 3),
            "hybrid_p99_ms": round(values[int(0.99 * (len(values) - 1))], 3),
            "recall@10_vs_exact": round(float(np.mean(recall[rule])), 4),
        }))


if __name__ == "__main__":
    main()
