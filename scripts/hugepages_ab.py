#!/usr/bin/env python3
"""A/B of huge pages under a graph search, on a built index (scripts/scale.py --work DIR keeps one).

    .venv/bin/python scripts/hugepages_ab.py --index /tmp/scale-1m-etag/index --queries 600

1. The largest graph segment loaded four ways: memory-mapped from its file, read whole into bytes, read
   whole into an anonymous mapping with small pages, and into one advised for huge pages (what
   `hugepages.buffer` gives, so what S3Store and a directory read whole now use). One float-graph search
   of k = 10 per query on each, the four in rotating order query by query, in one process.
2. The whole hybrid search step on two searchers over the index read whole, one with huge-page buffers
   and one without, alternating query by query (each loaded fresh; the order of loading swapped halfway).

3. Cold load of the searcher read whole, with huge or small pages, and read on one thread or one per core
   (hugepages.read_file), three times each in rotating order, each after `--pause` seconds so that memory
   freed by the previous load has gone back to the host (see below).

Prints p50 / p90 of each way, the load times, and the kernel's transparent-huge-page mode and AnonHugePages.
"""

from __future__ import annotations

import functools
import mmap
import time
from pathlib import Path
from unittest import mock

import numpy as np
from benchlib import index_ab, say


def anon_huge_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def small_pages(size: int) -> bytearray:
    return bytearray(size)


def main() -> None:
    args, queries = index_ab(__doc__, pause=True)
    from scale import WholeStore  # a directory read the way S3 is: every object read whole

    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch import hugepages
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher, graph_expansion
    from imgsearch.segment import Segment

    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    say("transparent_hugepage", mode.read_text().strip() if mode.exists() else "absent")
    index = ImageIndex.open(args.index)
    manifest = index.manifest()
    largest = max(manifest.segments, key=lambda s: s.count)  # a base with a graph
    path = Path(args.index) / "segments" / largest.name / "query.npz"
    data = path.read_bytes()
    beam = graph_expansion(largest.count)
    say("segment_rows_beam_bytes", [largest.count, beam, len(data)])

    def anon(advise: bool) -> mmap.mmap:
        mapping = mmap.mmap(-1, len(data), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if advise:
            mapping.madvise(mmap.MADV_HUGEPAGE)
        mapping[:] = data
        return mapping

    before = anon_huge_kb()
    ways = {
        "file_mapped": Segment.from_file(path, expansion_search=beam),
        "bytes": Segment.from_bytes(data, expansion_search=beam),
        "anon_small_pages": Segment.from_bytes(anon(False), expansion_search=beam),  # type: ignore[arg-type]
        "anon_huge_pages": Segment.from_bytes(anon(True), expansion_search=beam),  # type: ignore[arg-type]
    }
    say("anon_huge_pages_mb_gained", round((anon_huge_kb() - before) / 1024, 1))
    floats = index.encoder(ways["bytes"].encoder).floats(queries)
    names = list(ways)
    for segment in ways.values():  # warm
        for q in floats[:50]:
            segment.search_floats(q[None], 10)
    spent: dict[str, list[float]] = {name: [] for name in names}
    for i, q in enumerate(floats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            ways[name].search_floats(q[None], 10)
            spent[name].append((time.perf_counter() - started) * 1000)
    for name in names:
        say(f"graph_search_{name}_ms_p50_p90", f"{np.percentile(spent[name], 50):.3f} / {np.percentile(spent[name], 90):.3f}")
    del ways

    # --- the whole hybrid step, two searchers read whole -----------------------------------------------
    def load(huge: bool) -> Searcher:
        with mock.patch.object(hugepages, "buffer", hugepages.buffer if huge else small_pages):
            searcher = Searcher(ImageIndex(WholeStore(Path(args.index))))
            searcher.refresh(force=True)
        return searcher

    steps: dict[str, list[float]] = {"huge_pages": [], "small_pages": []}
    half = len(queries) // 2
    for order in (("huge_pages", "small_pages"), ("small_pages", "huge_pages")):
        searchers = {name: load(name == "huge_pages") for name in order}
        for q in queries[:20]:
            for searcher in searchers.values():
                searcher.search(q[None], k=10, expand=0)
        part = queries[:half] if order[0] == "huge_pages" else queries[half:]
        for i, q in enumerate(part):
            for name in order if i % 2 else order[::-1]:
                started = time.perf_counter()
                searchers[name].search(q[None], k=10, expand=0)
                steps[name].append((time.perf_counter() - started) * 1000)
        del searchers
    for name, values in steps.items():
        say(f"hybrid_step_{name}_ms_p50_p99", f"{np.percentile(values, 50):.2f} / {np.percentile(values, 99):.2f}")

    # --- cold load read whole: huge or small pages, one thread or one per core, from cold memory ---------
    # Under Firecracker the kernel hands free memory back to the host (page_reporting), so the first touch
    # of it faults on the host: the pause lets what the previous load freed go back, and every load then
    # pays for cold memory, as a fresh sandbox does.
    reads = hugepages.read_file
    loads: dict[str, list[float]] = {}
    ways_of_loading = [(huge, threads) for huge in (True, False) for threads in (1, 0)]
    for i in range(3 * len(ways_of_loading)):
        huge, threads = ways_of_loading[(i + i // len(ways_of_loading)) % len(ways_of_loading)]
        name = f"{'huge' if huge else 'small'}_pages_{'one_thread' if threads else 'thread_per_core'}"
        time.sleep(args.pause)
        started = time.perf_counter()
        with mock.patch.object(hugepages, "read_file", functools.partial(reads, threads=threads or None)):
            searcher = load(huge)
        loads.setdefault(name, []).append(round(time.perf_counter() - started, 2))
        del searcher
    for name, values in loads.items():
        say(f"cold_load_read_whole_{name}_seconds", values)

if __name__ == "__main__":
    main()
