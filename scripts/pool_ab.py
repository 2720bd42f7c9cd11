#!/usr/bin/env python3
"""A/B of the small-segment pool on a built index: float32 rows ranked by one BLAS product (now) against
float16 rows with Hamming candidates and USearch's exact kernel (before), query by query alternating in
one process, plus the hybrid search step's parts (each graph and the pool) timed on their own.

    .venv/bin/python scripts/pool_ab.py --index /tmp/scale-1m-slots/index --queries 400

Queries are the last CIFAR-10 embeddings of bench-out/cifar-raw.npy (the scale benchmark's queries).
Prints p50 / p99 of the hybrid search step both ways and recall@10 of each against the searcher's exact
mode.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
from benchlib import index_ab, say


def main() -> None:
    args, queries = index_ab(__doc__)
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.index import ImageIndex
    from imgsearch.search import MIN_CANDIDATES, POOL_FRACTION, Searcher

    searcher = Searcher(ImageIndex.open(args.index))
    searcher.refresh(force=True)
    searcher.search(queries[0][None], k=10)  # builds the pool
    now = dict(searcher._pooled)
    before = {
        version: dataclasses.replace(group, segment=dataclasses.replace(group.segment, floats=group.segment.floats.astype(np.float16)))  # type: ignore[union-attr]
        for version, group in now.items()
    }
    say("segments", [len(live.segment) for live in searcher.live.segments])
    say("pool_rows", [len(group.segment) for group in now.values()])
    ways = {"float32_pool": now, "float16_pool": before}

    def use(way: str) -> None:
        searcher._pooled = dict(ways[way])

    truth = [{h.key for h in searcher.search(q[None], k=10, metric="cosine", exact=True, expand=0)[0]} for q in queries[:200]]
    times: dict[str, list[float]] = {way: [] for way in ways}
    recall: dict[str, list[float]] = {way: [] for way in ways}
    for way in ways:  # warm both
        use(way)
        for q in queries[:20]:
            searcher.search(q[None], k=10, expand=0)
    for i, q in enumerate(queries):
        for way in (tuple(ways) if i % 2 else tuple(reversed(ways))):
            use(way)
            started = time.perf_counter()
            hits = searcher.search(q[None], k=10, expand=0)[0]
            times[way].append((time.perf_counter() - started) * 1000)
            if i < len(truth):
                recall[way].append(len({h.key for h in hits} & truth[i]) / 10)
    for way in ways:
        say(f"hybrid_{way}_ms_p50_p99", f"{np.percentile(times[way], 50):.2f} / {np.percentile(times[way], 99):.2f}")
        say(f"hybrid_{way}_recall@10_vs_exact", round(statistics.mean(recall[way]), 4))

    # the parts of one hybrid query, each on its own (one thread), current pool
    use("float32_pool")
    encoder = searcher.index.encoder(searcher.live.segments[0].segment.encoder)
    floats, codes = encoder.floats(queries), encoder.codes(queries)
    for live in searcher.live.segments:
        segment = live.segment
        if segment.has_hnsw:
            spent = []
            for j in range(len(queries)):
                started = time.perf_counter()
                segment.search_floats(floats[j : j + 1], 10)
                spent.append((time.perf_counter() - started) * 1000)
            say(f"part_graph_{len(segment)}_ms_p50", round(float(np.percentile(spent, 50)), 3))
    for way in ways:
        for group in ways[way].values():
            pool = sum(max(MIN_CANDIDATES, int(np.ceil(len(s) * POOL_FRACTION))) for _, s in group.members)  # as _ranked
            spent = []
            for j in range(len(queries)):
                started = time.perf_counter()
                searcher._rank(group.segment, floats[j : j + 1], codes[j : j + 1], 10, pool, "hybrid", False, 0)
                spent.append((time.perf_counter() - started) * 1000)
            say(f"part_pool_{way}_{len(group.segment)}_ms_p50", round(float(np.percentile(spent, 50)), 3))


if __name__ == "__main__":
    main()
