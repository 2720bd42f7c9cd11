#!/usr/bin/env python3
"""Retrieval quality and speed on ../shared/datasets (Corel-1k, CIFAR-10), per their README protocols.

    .venv/bin/python scripts/bench.py --datasets ../shared/datasets --out bench-out [--only corel|cifar]

Prints every figure and writes bench-out/results.json. Raw CIFAR embeddings are cached in --out so
that encoder sweeps do not re-embed 60,000 images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import average_precision, p50_p99, read_zip, save_results, say

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.embed import Embedder
from imgsearch.encode import fit_itq
from imgsearch.index import ImageIndex
from imgsearch.ingest import index_files
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef


def rankings(searcher: Searcher, queries: np.ndarray, *, k: int, metric: str, exact: bool = False,
             expand: int | None = 0) -> list[list[str]]:
    """Each query's ranked keys; without re-ranking unless `expand` asks (None: the default, re-ranked)."""
    out: list[list[str]] = []
    for start in range(0, len(queries), 100):
        for hits in searcher.search(queries[start : start + 100], k=k, metric=metric, exact=exact, expand=expand):
            out.append([h.key for h in hits])
    return out


def quality(ranked: list[list[str]], query_labels: list[str], label_of: dict[str, str], k: int) -> dict[str, float]:
    aps, p10 = [], []
    for keys, label in zip(ranked, query_labels, strict=True):
        relevant = np.array([label_of[key] == label for key in keys[:k]], dtype=float)
        aps.append(average_precision(relevant))
        p10.append(float(relevant[:10].mean()))
    return {f"mAP@{k}": round(float(np.mean(aps)), 4), "P@10": round(float(np.mean(p10)), 4)}


def build_index(root: Path, refs: list[ObjectRef], raw: np.ndarray, embedder: Embedder, *, bits: int, dims: int,
                whiten: float, hnsw_min: int, clusters: int | None = None) -> ImageIndex:
    index = ImageIndex.open(str(root))
    index.ensure(embedder.spec, bits=bits)
    for start in range(0, len(refs), 5000):
        index.append(refs[start : start + 5000], raw[start : start + 5000])
    index.fit(bits=bits, dims=dims, whiten=whiten, clusters=clusters, hnsw_min=hnsw_min, min_count=1)
    return index


def corel(datasets: Path, embedder: Embedder, work: Path) -> None:
    archive, root, rows = read_zip(datasets / "corel1k.zip")
    db = [r for r in rows if r["split"] == "db"]
    queries = [r for r in rows if r["split"] == "query"]
    label_of = {r["path"]: r["label"] for r in rows}

    # Ingest throughput: decode + embed + encode + write through the real pipeline, on all 1,000 images.
    folder = work / "corel-files"
    archive.extractall(work / "corel-extract")
    folder = work / "corel-extract" / root
    from imgsearch.ingest import scan

    files = [f for f in scan([folder]) if f.key != "labels.csv"]
    index = ImageIndex.open(str(work / "corel-throughput"))
    started = time.perf_counter()
    report = index_files(index, embedder, files, compact=False)
    seconds = time.perf_counter() - started
    say("corel.ingest_images", report.indexed)
    say("corel.ingest_img_per_s", round(report.indexed / seconds, 1))

    # ONNX Runtime vs PyTorch eager on the same preprocessed images, same run.
    pixels = np.stack([embedder.pixels(archive.read(f"{root}/{r['path']}")) for r in db[:128]])
    started = time.perf_counter()
    for start in range(0, len(pixels), 32):
        embedder.session.run(None, {embedder.spec.input_name: pixels[start : start + 32]})
    ort_rate = len(pixels) / (time.perf_counter() - started)
    try:
        import torch

        from imgsearch.build_model import feature_model

        torch.set_num_threads(2)
        net = feature_model()
        with torch.inference_mode():
            net(torch.from_numpy(pixels[:8]))
            started = time.perf_counter()
            for start in range(0, len(pixels), 32):
                net(torch.from_numpy(pixels[start : start + 32]))
        torch_rate = len(pixels) / (time.perf_counter() - started)
        say("model.onnxruntime_img_per_s", round(ort_rate, 1))
        say("model.pytorch_eager_img_per_s", round(torch_rate, 1))
        say("model.onnxruntime_vs_pytorch", round(ort_rate / torch_rate, 2))
    except ImportError:
        say("model.onnxruntime_img_per_s", round(ort_rate, 1))

    # Quality: 100 queries against the 900 db images.
    vectors_of = {}
    everything = list(db) + list(queries)
    raw, failures = embedder.embed_bytes([archive.read(f"{root}/{r['path']}") for r in everything])
    assert not failures, failures
    for r, v in zip(everything, raw, strict=True):
        vectors_of[r["path"]] = v
    db_raw = np.stack([vectors_of[r["path"]] for r in db])
    q_raw = np.stack([vectors_of[r["path"]] for r in queries])
    q_labels = [r["label"] for r in queries]
    refs = [ObjectRef(bucket="corel", key=r["path"], sequencer="1") for r in db]
    for bits, dims, whiten in [(256, 256, 0.0), (256, 256, 0.5), (256, 256, 1.0), (128, 128, 0.0), (64, 64, 0.0)]:
        index = build_index(work / f"corel-{bits}-{dims}-{whiten}", refs, db_raw, embedder, bits=bits, dims=dims,
                            whiten=whiten, hnsw_min=1 << 40)
        searcher = Searcher(index)
        for metric in ("hamming", "cosine", "hybrid"):
            ranked = rankings(searcher, q_raw, k=900, metric=metric)
            figures = quality(ranked, q_labels, label_of, 100)
            full = [average_precision(np.array([label_of[k] == lab for k in keys], float), 90)
                    for keys, lab in zip(ranked, q_labels, strict=True)]
            figures["mAP(full)"] = round(float(np.mean(full)), 4)
            say(f"corel.{bits}b-{dims}d-w{whiten}.{metric}", figures)
    # Before the encoder is fitted: LSH codes and the raw 1280-d floats.
    index = ImageIndex.open(str(work / "corel-lsh"))
    index.ensure(embedder.spec, bits=256)
    index.append(refs, db_raw)
    searcher = Searcher(index)
    for metric in ("hamming", "cosine", "hybrid"):
        say(f"corel.lsh-256b.{metric}", quality(rankings(searcher, q_raw, k=100, metric=metric), q_labels, label_of, 100))
    # The raw embedding with exact cosine, for reference (what PCA must not lose).
    sims = q_raw @ db_raw.T
    ranked = [[db[j]["path"] for j in np.argsort(-row)] for row in sims]
    say("corel.raw1280.cosine", quality(ranked, q_labels, label_of, 100))


def cifar_raw(
    datasets: Path, embedder: Embedder, out: Path
) -> tuple[np.ndarray, list[dict[str, str]], list[dict[str, str]], dict[str, str]]:
    """Raw embeddings of the CIFAR-10 database then queries (the deep-hashing protocol), cached in `out`."""
    archive, root, rows = read_zip(datasets / "cifar10.zip")
    rows.sort(key=lambda r: r["path"])
    test = [r for r in rows if r["split"] == "test"]
    per_class: dict[str, int] = {}
    queries = []
    for r in test:
        if per_class.get(r["label"], 0) < 100:
            queries.append(r)
            per_class[r["label"]] = per_class.get(r["label"], 0) + 1
    qset = {r["path"] for r in queries}
    db = [r for r in rows if r["path"] not in qset]
    label_of = {r["path"]: r["label"] for r in rows}
    cache = out / "cifar-raw.npy"
    order = db + queries
    if cache.exists():
        raw = np.load(cache).astype(np.float32)
    else:
        started = time.perf_counter()
        raw, failures, done = embedder.embed_stream(lambda i: archive.read(f"{root}/{order[i]['path']}"), len(order))
        seconds = time.perf_counter() - started
        assert not failures and len(done) == len(order)
        say("cifar.embed_img_per_s", round(len(order) / seconds, 1))
        out.mkdir(parents=True, exist_ok=True)
        np.save(cache, raw.astype(np.float16))
    return raw, db, queries, label_of


def cifar(datasets: Path, embedder: Embedder, work: Path, out: Path) -> None:
    raw, db, queries, label_of = cifar_raw(datasets, embedder, out)
    archive, root, _ = read_zip(datasets / "cifar10.zip")
    db_raw, q_raw = raw[: len(db)], raw[len(db) :]
    q_labels = [r["label"] for r in queries]
    refs = [ObjectRef(bucket="cifar", key=r["path"], sequencer="1") for r in db]
    say("cifar.database", len(db))
    say("cifar.queries", len(queries))

    # Code lengths, exact search, mAP@1000: plain PCA + ITQ, and with the default fit's discriminant floats
    # (maintain.fit_clusters: codes of at most 99 bits are ITQ within them)
    from usearch.index import search as exact_search

    from imgsearch.maintain import fit_clusters

    for clusters, name in ((0, ""), (fit_clusters(len(db_raw)), ".discriminant")):
        for bits in (16, 32, 64, 128, 256):
            encoder = fit_itq(db_raw, bits=bits, dims=256, whiten=0.0, clusters=clusters)
            codes, qcodes = encoder.codes(db_raw), encoder.codes(q_raw)
            found = exact_search(codes, qcodes, 1000, "hamming", exact=True)
            ranked = [[db[j]["path"] for j in found.keys[i]] for i in range(len(queries))]
            say(f"cifar.hamming.{bits}b{name}", quality(ranked, q_labels, label_of, 1000))
    for dims, whiten in [(128, 0.0), (256, 0.0), (256, 0.5), (512, 0.0)]:
        encoder = fit_itq(db_raw, bits=64, dims=dims, whiten=whiten)
        sims = encoder.floats(q_raw) @ encoder.floats(db_raw).T
        top = np.argsort(-sims, axis=1)[:, :1000]
        ranked = [[db[j]["path"] for j in row] for row in top]
        say(f"cifar.cosine.{dims}d-w{whiten}", quality(ranked, q_labels, label_of, 1000))
    sims = q_raw @ db_raw.T
    top = np.argsort(-sims, axis=1)[:, :1000]
    say("cifar.cosine.raw1280", quality([[db[j]["path"] for j in row] for row in top], q_labels, label_of, 1000))

    # The full system: one index (default encoder: the policy's clusters), HNSW base segment, all metrics.
    started = time.perf_counter()
    index = build_index(work / "cifar-index", refs, db_raw, embedder, bits=256, dims=256, whiten=0.0, hnsw_min=1)
    say("cifar.build_index_s", round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    searcher = Searcher(index)
    searcher.refresh(force=True)
    say("cifar.index_load_s", round(time.perf_counter() - started, 3))
    say("cifar.query_bytes_per_image", round(searcher.memory_bytes() / searcher.count, 1))
    stored = sum(index.store.size(f"segments/{s.name}/query.npz") for s in index.manifest().segments)
    say("cifar.query_object_bytes_per_image", round(stored / searcher.count, 1))
    for metric in ("hamming", "cosine", "hybrid"):
        ranked = rankings(searcher, q_raw, k=1000, metric=metric)
        say(f"cifar.index.{metric}.hnsw", quality(ranked, q_labels, label_of, 1000))
        exact = rankings(searcher, q_raw, k=1000, metric=metric, exact=True)
        say(f"cifar.index.{metric}.exact", quality(exact, q_labels, label_of, 1000))
        reranked = rankings(searcher, q_raw, k=1000, metric=metric, expand=None)  # the default: re-ranked
        say(f"cifar.index.{metric}.hnsw_reranked", quality(reranked, q_labels, label_of, 1000))
    for oversample in (1, 2, 5, 10, 20):
        searcher.oversample = oversample
        ranked = rankings(searcher, q_raw, k=100, metric="hybrid")
        say(f"cifar.hybrid.oversample{oversample}", quality(ranked, q_labels, label_of, 100))
    searcher.oversample = 10

    # HNSW recall@10 against exact search, per expansion_search, and warm latency per metric.
    for ef in (64, 128, 256, 512):
        probe = Searcher(index, expansion_search=ef)
        probe.refresh(force=True)
        for metric in ("cosine", "hamming"):
            approx = probe.search(q_raw, k=10, metric=metric, expand=0)  # the graph's recall: no re-ranking
            exact = probe.search(q_raw, k=10, metric=metric, exact=True, expand=0)
            recall = np.mean([len({h.key for h in a} & {h.key for h in e}) / 10 for a, e in zip(approx, exact, strict=True)])
            say(f"cifar.recall@10.{metric}.ef{ef}", round(float(recall), 4))
            if metric == "hamming":
                # Hamming distances tie a lot: any hit as close as the exact 10th is a right answer.
                tolerant = np.mean(
                    [sum(h.score >= e[-1].score for h in a) / 10 for a, e in zip(approx, exact, strict=True)]
                )
                say(f"cifar.recall@10_ties.{metric}.ef{ef}", round(float(tolerant), 4))
    # Warm latency, embed + search and the search step alone: the variants of one metric alternate query
    # by query (rotating which goes first), so a slow stretch of the machine falls on all of them alike.
    images = [archive.read(f"{root}/{r['path']}") for r in queries[:200]]
    variants = ((False, None), (False, 0), (True, None))  # (exact, expand); None: the default re-ranking
    for metric in ("hamming", "cosine", "hybrid"):
        times: dict[tuple[bool, int | None], list[float]] = {v: [] for v in variants}
        steps: dict[tuple[bool, int | None], list[float]] = {v: [] for v in variants}
        for i, data in enumerate(images):
            for exact_flag, expand in variants[i % 3 :] + variants[: i % 3]:
                started = time.perf_counter()
                vector, _ = embedder.embed_bytes([data])
                searched = time.perf_counter()
                searcher.search(vector, k=10, metric=metric, exact=exact_flag, expand=expand)
                done = time.perf_counter()
                times[(exact_flag, expand)].append((done - started) * 1000)
                steps[(exact_flag, expand)].append((done - searched) * 1000)
        for (exact_flag, expand), taken in times.items():
            name = ("exact" if exact_flag else "hnsw") + ("_no_rerank" if expand == 0 else "")
            say(f"cifar.latency_ms.{metric}.{name}", p50_p99(taken))
            say(f"cifar.search_step_ms.{metric}.{name}", p50_p99(steps[(exact_flag, expand)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--only", choices=("corel", "cifar"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    embedder = Embedder.load(threads=args.threads)
    say("command", " ".join(sys.argv))
    say("model", {"name": embedder.spec.name, "input_size": embedder.spec.input_size, "resize": embedder.spec.resize})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.only in (None, "corel"):
            corel(args.datasets, embedder, work)
        if args.only in (None, "cifar"):
            cifar(args.datasets, embedder, work, args.out)
    name = f"results-{args.only or 'all'}.json"
    save_results(args.out, name)


if __name__ == "__main__":
    main()
