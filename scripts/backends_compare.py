#!/usr/bin/env python3
"""The same Corel-1k ranking through both index backends: top-10 "more like this" for every image,
segments against S3 Vectors (moto on 127.0.0.1 with imgsearch's QueryVectors, exact search).

    .venv/bin/python scripts/backends_compare.py --index /tmp/text-cli/corel1k-index

`--index` is a segment index of Corel-1k built by the CLI (`imgsearch index`; scripts/text_cli_bench.py
--keep leaves one). Its live entries are exported to S3 Vectors with `export_index` (raw embeddings,
no image read), then each key's top 10 is asked from:

- the index as the CLI built it (fitted: PCA-256 floats, hybrid and cosine),
- a segment index of the same raw embeddings left unfitted (its floats are the raw embeddings, as in
  S3 Vectors, stored as float16), cosine, exact,
- the S3 Vectors index (float32 raw embeddings, cosine).

Prints how many of the 1,000 top-10 lists are identical, and for the others where they first differ and
by how much the scores there differ.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import save_results, say

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.backend import Batch, SegmentBackend
from imgsearch.export import export_index
from imgsearch.index import ImageIndex
from imgsearch.local import s3vectors_query
from imgsearch.modelspec import ModelSpec, default_model_dir
from imgsearch.options import SearchOptions
from imgsearch.s3vectors import S3VectorsBackend, VectorIndexRef
from imgsearch.segment import table_refs


def unfitted_copy(source: ImageIndex, target: Path, spec: ModelSpec) -> SegmentBackend:
    """A segment index of the source's live raw embeddings, never fitted (LSH: floats = raw embeddings)."""
    index = ImageIndex.open(str(target))
    index.ensure(spec)
    backend = SegmentBackend(index, refresh_seconds=0)
    searcher = SegmentBackend(source, refresh_seconds=0).searcher
    searcher.refresh(force=True)
    assert searcher.manifest is not None
    for info, live in zip(searcher.manifest.segments, searcher.live.segments, strict=True):
        rows = np.flatnonzero(live.alive)
        if len(rows):
            batch = Batch()
            batch.add(table_refs(live.segment.table.take(rows)), source.load_raw(info)[rows])
            backend.write(batch)
    return backend


def compare(name: str, left: object, right: S3VectorsBackend, keys: list[str], options: SearchOptions) -> None:
    same, first_diff, gaps, took = 0, [], [], []
    for key in keys:
        t0 = time.perf_counter()
        a = left.search_key(key, None, options)  # type: ignore[attr-defined]
        took.append(time.perf_counter() - t0)
        b = right.search_key(key, None, SearchOptions(k=options.k, metric="cosine"))
        ka, kb = [h.key for h in a], [h.key for h in b]
        if ka == kb:
            same += 1
            continue
        at = next(i for i, (x, y) in enumerate(zip(ka, kb, strict=False)) if x != y)
        first_diff.append(at)
        scores_b = {h.key: h.score for h in b}
        gaps.append(abs(a[at].score - b[at].score) if at < min(len(a), len(b)) else 0.0)
        if a[at].key in scores_b:  # the swapped pair's scores on the S3 Vectors side
            gaps[-1] = max(gaps[-1], abs(scores_b[a[at].key] - b[at].score))
    say(f"{name}.identical_top10", f"{same} / {len(keys)}")
    if first_diff:
        say(f"{name}.first_difference_rank", {"median": float(np.median(first_diff)) + 1, "min": min(first_diff) + 1})
        say(f"{name}.score_gap_at_first_difference", {"median": round(float(np.median(gaps)), 5), "max": round(float(np.max(gaps)), 5)})
    say(f"{name}.search_key_ms_p50", round(float(np.median(took)) * 1000, 2))


def overlap_at_10(left: object, right: S3VectorsBackend, keys: list[str], options: SearchOptions) -> float:
    shared = []
    for key in keys:
        a = {h.key for h in left.search_key(key, None, options)}  # type: ignore[attr-defined]
        b = {h.key for h in right.search_key(key, None, SearchOptions(k=options.k, metric="cosine"))}
        shared.append(len(a & b) / max(len(b), 1))
    return round(float(np.mean(shared)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="a segment index of Corel-1k built by the CLI")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    say("command", " ".join(sys.argv))
    from moto.server import ThreadedMotoServer

    s3vectors_query.install()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        import boto3

        client = boto3.client("s3vectors", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        source = ImageIndex.open(str(args.index))
        fitted = SegmentBackend(source, refresh_seconds=0)
        fitted.searcher.refresh(force=True)
        manifest = fitted.searcher.manifest
        assert manifest is not None
        spec = ModelSpec.load(default_model_dir())
        vectors = S3VectorsBackend(VectorIndexRef("compare", "corel"), client=client)
        vectors.create(dimension=spec.output_dim)
        vectors.ensure(spec)
        bucket = fitted.searcher.live.segments[0].segment.table.buckets[0]
        started = time.perf_counter()
        report = export_index(source, vectors, bucket=bucket, state=Path(tempfile.mkdtemp()) / "state.json")
        say("export", {"exported": report.exported, "seconds": round(time.perf_counter() - started, 2)})
        vectors.bucket = bucket
        keys = sorted(ref.key for ref in fitted.searcher.live_refs().values())
        say("keys", len(keys))
        say("fitted.encoder", manifest.encoder)
        with tempfile.TemporaryDirectory() as scratch:
            raw = unfitted_copy(source, Path(scratch) / "unfitted", spec)
            raw.searcher.refresh(force=True)
            say("unfitted.encoder", raw.searcher.manifest.encoder if raw.searcher.manifest else "")
            exact = SearchOptions(k=10, metric="cosine", exact=True, expand=0)
            compare("unfitted_cosine_vs_s3vectors", raw, vectors, keys, exact)
            compare("fitted_cosine_vs_s3vectors", fitted, vectors, keys, SearchOptions(k=10, metric="cosine", expand=0))
            say("fitted_cosine_vs_s3vectors.overlap@10", overlap_at_10(fitted, vectors, keys, SearchOptions(k=10, metric="cosine", expand=0)))
            compare("fitted_hybrid_vs_s3vectors", fitted, vectors, keys, SearchOptions(k=10, expand=0))
            say("fitted_hybrid_vs_s3vectors.overlap@10", overlap_at_10(fitted, vectors, keys, SearchOptions(k=10, expand=0)))
    finally:
        server.stop()
    save_results(args.out, "backends-compare.json")


if __name__ == "__main__":
    main()
