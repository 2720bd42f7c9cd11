#!/usr/bin/env python3
"""What thumbnails add to ingest: the embed pipeline on Corel-1k with and without them, alternating.

    .venv/bin/python scripts/thumbs_bench.py --datasets ../shared/datasets --rounds 3

Each round embeds all 1,000 images (decode + preprocess + forward pass + top concepts, 2 threads) once
without and once with a thumbnail of each (imgsearch.thumbnails, from the same decode). Prints the
images/s of each run, the medians, and the thumbnails' sizes. Writing them (one PUT each, 8 at a time,
in the ingest function) is not included: that is S3 latency, not CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zipfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}")
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.embed import Embedder

    with zipfile.ZipFile(args.datasets / "corel1k.zip") as archive:
        images = [archive.read(n) for n in sorted(archive.namelist()) if n.endswith(".jpg")]
    embedder = Embedder.load(threads=args.threads)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    sizes: list[int] = []
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            started = time.perf_counter()
            done = embedder.embed_all(lambda i: images[i], len(images), thumbnails=mode == "on")
            rates[mode].append(round(len(done.indices) / (time.perf_counter() - started), 1))
            if done.thumbnails:
                sizes = [len(t) for t in done.thumbnails]
    figures = {
        "images": len(images),
        "img_per_s_off": rates["off"],
        "img_per_s_on": rates["on"],
        "median_off": statistics.median(rates["off"]),
        "median_on": statistics.median(rates["on"]),
        "cost": round(1 - statistics.median(rates["on"]) / statistics.median(rates["off"]), 4),
        "thumb_bytes_mean": round(statistics.mean(sizes)),
        "thumb_bytes_max": max(sizes),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
