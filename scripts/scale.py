"""Scale benchmark: the index at N images through the library API, every figure of the scale issue printed.

    .venv/bin/python scripts/scale.py --size 1000000                  # CIFAR-10 embeddings + perturbed copies
    .venv/bin/python scripts/scale.py --size 1000000 --data clusters  # synthetic clusters instead
    make scale                                                         # the first, written to bench-out/

Data: the 60,000 real CIFAR-10 embeddings (bench-out/cifar-raw.npy, made by `make bench` or by this
script) and copies perturbed by Gaussian noise at the scale of the within-class spread, L2-normalised;
or synthetic clusters. Queries are the 1,000 CIFAR-10 test queries (or held-out cluster points).
The index is built the way a deployment grows: segments of --segment images appended by CAS, the
maintenance policy (imgsearch.maintain, the compaction Lambda's) run after each, so the encoder is
fitted early and bases merge size-tiered. Peak memory of a step is the rise of the process's peak RSS
(reset before the step). Loopback and local disk only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import imgsearch._onnx_first  # noqa: E402,F401  (onnxruntime before usearch)
from imgsearch import maintain  # noqa: E402
from imgsearch.index import ImageIndex  # noqa: E402
from imgsearch.modelspec import ModelSpec, default_model_dir  # noqa: E402
from imgsearch.search import Searcher  # noqa: E402
from imgsearch.segment import ObjectRef  # noqa: E402
from imgsearch.store import LocalStore  # noqa: E402
from tests.memory import peak_mb_since, reset_peak, status_kb  # noqa: E402

FIGURES: dict[str, object] = {}


def say(name: str, value: object) -> None:
    FIGURES[name] = value
    print(f"{name}: {value}", flush=True)


class Peak:
    """Peak RSS added and seconds taken by a block of work."""

    def __enter__(self) -> Peak:
        reset_peak()
        self.before = status_kb("VmRSS")
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.mb = peak_mb_since(self.before)


class Steal:
    """The share of the machine's CPU time the hypervisor gave to others during a block (the `steal`
    column of /proc/stat): the part of a slow run that is not this code's."""

    @staticmethod
    def _now() -> tuple[float, float]:
        """(steal, all) CPU ticks so far; zeros where there is no /proc/stat."""
        stat = Path("/proc/stat")
        if not stat.exists():
            return 0.0, 0.0
        ticks = [float(f) for f in stat.read_text().split("\n", 1)[0].split()[1:]]
        return ticks[7] if len(ticks) > 7 else 0.0, sum(ticks[:8])

    def __enter__(self) -> Steal:
        self.before = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        after = self._now()
        total = after[1] - self.before[1]
        self.share = (after[0] - self.before[0]) / total if total > 0 else 0.0


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Data:
    """Embeddings by chunk (deterministic), with labels, and the queries."""

    def __init__(self, kind: str, datasets: Path, out: Path, seed: int = 0) -> None:
        self.kind, self.seed = kind, seed
        if kind == "cifar":
            import bench

            from imgsearch.embed import Embedder

            cached = (out / "cifar-raw.npy").exists()  # the model runs only when the cache is missing
            raw, db, _queries, label_of = bench.cifar_raw(datasets, None if cached else Embedder.load(), out)  # type: ignore[arg-type]
            self.base = raw[: len(db)]
            self.queries = raw[len(db) :]
            labels = sorted({label_of[r["path"]] for r in db})
            self.base_labels = np.array([labels.index(label_of[r["path"]]) for r in db])
            # the within-class spread: per class, the RMS distance of a member from its class mean, per dim
            spread = [
                float(np.sqrt(((self.base[self.base_labels == c] - self.base[self.base_labels == c].mean(0)) ** 2).mean()))
                for c in range(len(labels))
            ]
            self.sigma = float(np.mean(spread))
        else:
            rng = np.random.default_rng(seed)
            self.centres = normalise(rng.standard_normal((1000, 1280)).astype(np.float32))
            self.sigma = 0.02
            self.base = None  # type: ignore[assignment]
            self.queries = self.points(rng, 1000)

    def points(self, rng: np.random.Generator, n: int) -> np.ndarray:
        centres = self.centres[rng.integers(0, len(self.centres), n)]
        return normalise(centres + rng.standard_normal(centres.shape).astype(np.float32) * self.sigma)

    def chunk(self, start: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        if self.kind != "cifar":
            return self.points(rng, count).astype(np.float16)
        rows = np.arange(start, start + count) % len(self.base)
        copy = (np.arange(start, start + count) // len(self.base)) > 0  # the first pass is the real set
        x = self.base[rows].copy()
        x[copy] += rng.standard_normal((int(copy.sum()), x.shape[1])).astype(np.float32) * self.sigma
        return normalise(x).astype(np.float16)


class WholeStore(LocalStore):
    """A directory read the way a remote store is: every object read whole (no memory map)."""

    def local_path(self, name: str) -> None:
        return None


def refs(start: int, count: int, sequencer: str = "1") -> list[ObjectRef]:
    """Objects as S3 names them: keys under 100 prefixes, and an MD5 ETag each (a single-part upload's)."""
    keys = [f"p{(start + i) % 100:02d}/{start + i:08d}.jpg" for i in range(count)]
    return [ObjectRef(bucket="scale", key=k, etag=hashlib.md5(k.encode()).hexdigest(), sequencer=sequencer) for k in keys]


def spec_of(dim: int) -> ModelSpec:
    model = default_model_dir()
    if (model / "model.json").is_file():
        loaded = ModelSpec.load(model)
        if loaded.output_dim == dim:
            return loaded
    return ModelSpec(
        name="scale", onnx_file="none.onnx", input_name="pixels", input_size=176, mean=(0, 0, 0), std=(1, 1, 1),
        resize="crop", crop_ratio=1.0, output_name="features", output_dim=dim, opset=17, sha256="5" * 64,
    )


def exact_float_top10(index: ImageIndex, searcher: Searcher, queries: np.ndarray) -> list[list[str]]:
    """Keys of the exact top 10 by float cosine, from the raw embeddings re-encoded (not the int8 graph).

    The ground truth the issue asks for: the encoder's float vectors of every live entry, compared with
    each query exactly, segment by segment (a chunk of rows at a time, so memory stays bounded).
    """
    from usearch.index import search as exact_search

    best: list[list[tuple[float, str]]] = [[] for _ in queries]
    info = {s.name: s for s in searcher.manifest.segments}  # type: ignore[union-attr]
    for live in searcher.live.segments:
        segment = live.segment
        encoder = index.encoder(segment.encoder)
        wanted = encoder.floats(queries.astype(np.float32)).astype(np.float16)
        raw = index.load_raw(info[segment.name])
        rows = np.flatnonzero(live.alive)
        for start in range(0, len(rows), 65536):
            part = rows[start : start + 65536]
            floats = encoder.floats(np.asarray(raw[part], dtype=np.float32)).astype(np.float16)
            found = exact_search(floats, wanted, min(10, len(part)), "cos", exact=True)
            for q in range(len(queries)):
                keys, distances = np.atleast_2d(found.keys)[q], np.atleast_2d(found.distances)[q]
                best[q].extend((float(d), segment.table.keys[int(part[k])]) for k, d in zip(keys, distances, strict=True))
                best[q] = sorted(best[q])[:10]
    return [[key for _, key in found] for found in best]


def bytes_by_part(searcher: Searcher) -> dict[str, float]:
    """What each byte of the query path is, per live image: graphs, vectors, codes, key-table columns."""
    parts: dict[str, int] = {"reader (sorted ids, where, alive)": searcher.live.nbytes}
    for live in searcher.live.segments:
        s = live.segment
        add = {
            "float graph (int8 vectors + links)" if s.rotation is not None else "float graph (f16)": (
                0 if s.float_index is None else int(s.float_index.serialized_length)
            ),
            "float graph slot map (row → slot, graphrows.py)": 0 if s.float_slots is None else s.float_slots.nbytes,
            "float16 vectors (segments without a graph)": 0 if s.floats is None else s.floats.nbytes,
            "codes": s.codes.nbytes,
            "tombstones": s.dead.nbytes,
            "reader (sorted ids, where, alive)": live.alive.nbytes,
        }
        add |= {f"table.{name}": size for name, size in s.table.column_bytes().items()}
        for name, size in add.items():
            parts[name] = parts.get(name, 0) + size
    return {name: round(size / searcher.count, 1) for name, size in parts.items() if size}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--segment", type=int, default=50_000, help="images per appended segment while building")
    parser.add_argument("--data", choices=("cifar", "clusters"), default="cifar")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--work", type=Path, default=None, help="where the index is built [a temporary folder]")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-build", action="store_true", help="measure the reader on the index in --work")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="imgsearch-scale-"))
    say("size", args.size)
    say("data", args.data)
    data = Data(args.data, args.datasets, args.out)
    say("perturbation_sigma_per_dim", round(data.sigma, 5))
    queries = data.queries[: args.queries].astype(np.float32)

    index = ImageIndex(LocalStore(work / "index"))
    index.ensure(spec_of(queries.shape[1]))
    policy = maintain.Policy()
    if not args.skip_build:
        build(index, data, policy, args)
    reader(index, work, data, queries, args)
    (args.out / f"scale-{args.data}-{args.size}.json").write_text(json.dumps(FIGURES, indent=1))
    print(f"figures written to {args.out / f'scale-{args.data}-{args.size}.json'}; index left in {work}")


def build(index: ImageIndex, data: Data, policy: maintain.Policy, args: argparse.Namespace) -> None:
    say("policy", json.dumps({"max_base": policy.max_base, "tier_unit": policy.tier_unit,
                              "tier_factor": policy.tier_factor, "merge_at": policy.merge_at}))

    # --- build: appends of --segment images, maintenance after each ---------------------------------
    appends, merges, small_append = [], [], {}
    built = 0
    started = time.perf_counter()
    while built < args.size:
        count = min(args.segment, args.size - built)
        raw = data.chunk(built, count)
        with Peak() as step:
            index.append(refs(built, count), raw)
        appends.append(step.seconds)
        built += count
        with Peak() as run:
            steps = maintain.run(index, policy=policy, threads=args.threads)
        for done in steps:
            merges.append((done.action, done.segments, done.entries, round(done.seconds, 1), round(run.mb)))
            print(f"  maintenance at {built}: {done.action} {done.reason}: {done.entries} entries in "
                  f"{done.seconds:.1f} s (run peak {run.mb:.0f} MB)", flush=True)
        if built in (args.segment, args.size) or built % (args.size // 4 or 1) < args.segment:
            with Peak() as small:
                index.append(refs(10**9 + built, 1000, "2"), data.chunk(10**8 + built, 1000))
            small_append[built] = round(small.seconds, 3)
    say("build_seconds", round(time.perf_counter() - started, 1))
    say("append_50k_seconds_median", round(statistics.median(appends), 2))
    say("append_1000_seconds_by_index_size", json.dumps(small_append))
    say("maintenance_steps_action_segments_entries_seconds_runpeakmb", json.dumps(merges))

    # --- the largest compaction run: measured as it happened (time) and once more (peak memory) ------
    manifest = index.manifest()
    say("segments", json.dumps([(s.kind, s.count) for s in manifest.segments]))
    largest = max((m for m in merges if m[0] == "merge"), key=lambda m: m[2], default=None)
    say("largest_merge_entries_seconds", json.dumps(largest))

    # --- merge of 1,000 new images into the index: ten appends of 100, then maintenance ---------------
    for i in range(10):
        index.append(refs(2 * 10**9 + i * 100, 100, "3"), data.chunk(2 * 10**8 + i * 100, 100))
    with Peak() as merge:
        steps = maintain.run(index, policy=policy, threads=args.threads)
    say("merge_1000_new_seconds", round(merge.seconds, 2))
    say("merge_1000_new_peak_mb", round(merge.mb, 1))
    say("merge_1000_new_steps", json.dumps([(s.action, s.segments, s.entries) for s in steps]))


def hybrid_loop(searcher: Searcher, queries: np.ndarray, name: str, expand: int | None = None) -> None:
    """p50 / p99 of hybrid queries one after another (after 20 to warm), as a query function serving the
    default metric runs them (with its default re-ranking unless `expand` says otherwise), and the
    hypervisor's steal share meanwhile."""
    for q in queries[:20]:
        searcher.search(q[None, :], k=10, metric="hybrid", expand=expand)
    took = []
    with Steal() as steal:
        for q in queries:
            t = time.perf_counter()
            searcher.search(q[None, :], k=10, metric="hybrid", expand=expand)
            took.append((time.perf_counter() - t) * 1000)
    say(f"search_hybrid_{name}_ms_p50_p99", f"{percentile(took, 50):.2f} / {percentile(took, 99):.2f}")
    say(f"cpu_steal_share_{name}_loop", round(steal.share, 3))


def reader(index: ImageIndex, work: Path, data: Data, queries: np.ndarray, args: argparse.Namespace) -> None:
    # --- reader: cold load, memory, refresh after an append -----------------------------------------
    with Peak() as whole:
        read = Searcher(ImageIndex(WholeStore(work / "index")))
        read.refresh(force=True)
    say("cold_load_read_whole_seconds", round(whole.seconds, 2))
    say("query_path_bytes_per_image_rss_read_whole", round(whole.mb * 2**20 / read.count, 1))  # peak while loading
    say("query_path_bytes_per_image_rss_read_whole_resident", round((status_kb("VmRSS") - whole.before) * 1024 / read.count, 1))
    # the search step as a query function runs it: segments read whole (into huge pages: hugepages.py)
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    say("transparent_hugepage", thp.read_text().strip() if thp.exists() else "absent")
    hybrid_loop(read, queries, "read_whole")
    del read
    with Peak() as load:
        searcher = Searcher(ImageIndex(LocalStore(work / "index")))
        searcher.refresh(force=True)
    live = searcher.count
    say("live", live)
    say("cold_load_memory_mapped_seconds", round(load.seconds, 2))
    say("query_path_bytes_per_image_counted", round(searcher.memory_bytes() / live, 1))
    say("query_path_bytes_per_image_by_part", bytes_by_part(searcher))
    refreshes = []
    for i in range(5):
        index.append(refs(3 * 10**9 + i * 100, 100, "4"), data.chunk(3 * 10**8 + i * 100, 100))
        t = time.perf_counter()
        searcher.refresh(force=True)
        refreshes.append((time.perf_counter() - t) * 1000)
    say("refresh_after_100_append_ms_median", round(statistics.median(refreshes), 2))

    # --- search step (no CNN), recall against exact cosine, prefix filter -----------------------------
    hybrid_loop(searcher, queries, "mapped_alone")
    hybrid_loop(searcher, queries, "mapped_alone_no_rerank", expand=0)  # the index search alone, same run
    # the mixed loop: each hybrid query follows a Hamming scan of every code (32 MB at 1M), which leaves
    # the caches cold for the graphs. It and the recall figures measure the index's own ranking: no
    # re-ranking (expand=0), which orders hits by more than their cosine on purpose.
    timings: dict[str, list[float]] = {"hybrid": [], "cosine": [], "hamming": [], "hybrid_prefix": []}
    found: dict[str, list[list[str]]] = {"hybrid": [], "cosine": []}
    with Steal() as steal:
        for q in queries:
            for metric in ("hybrid", "cosine", "hamming"):
                t = time.perf_counter()
                hits = searcher.search(q[None, :], k=10, metric=metric, expand=0)[0]
                timings[metric].append((time.perf_counter() - t) * 1000)
                if metric in found:
                    found[metric].append([h.key for h in hits])
            t = time.perf_counter()
            searcher.search(q[None, :], k=10, metric="hybrid", prefix="p07/", expand=0)
            timings["hybrid_prefix"].append((time.perf_counter() - t) * 1000)
    say("cpu_steal_share_mixed_loop", round(steal.share, 3))
    say("query_path_bytes_per_image_rss_mapped_after_queries_peak", round(peak_mb_since(load.before) * 2**20 / live, 1))
    say("query_path_bytes_per_image_rss_mapped_after_queries_now", round((status_kb("VmRSS") - load.before) * 1024 / live, 1))
    for name, values in timings.items():
        say(f"search_{name}_ms_p50_p99", f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f}")
    sample = queries[: min(200, len(queries))]
    exact = exact_float_top10(index, searcher, sample)
    for metric in ("hybrid", "cosine"):
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found[metric], exact, strict=False)])
        say(f"recall@10_{metric}_vs_exact_cosine", round(float(recall), 4))
    def sweep(**settings: object) -> str:
        """Recall@10 against exact cosine and p50 of hybrid on a fresh searcher with these settings."""
        tuned = Searcher(ImageIndex(LocalStore(work / "index")), **settings)  # type: ignore[arg-type]
        tuned.refresh(force=True)
        got, took = [], []
        for q in sample:
            t = time.perf_counter()
            got.append([h.key for h in tuned.search(q[None, :], k=10, metric="hybrid", expand=0)[0]])
            took.append((time.perf_counter() - t) * 1000)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact, strict=False)])
        return f"{recall:.4f} / {percentile(took, 50):.2f}"

    for ef in (64, 128, 256):  # HNSW expansion_search
        say(f"hybrid_expansion_search_{ef}_recall_p50_ms", sweep(expansion_search=ef))
    # what hybrid searches on graph segments, and how many Hamming candidates (Searcher oversample)
    for graph, oversample in (("floats", 10), ("codes", 10), ("codes", 30), ("codes", 100)):
        say(f"hybrid_{graph}_graph_oversample_{oversample}_recall_p50_ms",
            sweep(oversample=oversample, hybrid_graph=graph))

if __name__ == "__main__":
    main()
