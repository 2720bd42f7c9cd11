#!/usr/bin/env python3
"""Reading a segment-sized object from S3: one GET against parallel ranged GETs (imgsearch/s3read.py).

    .venv/bin/python scripts/s3_read_bench.py --mb 64 420                      # moto on 127.0.0.1
    .venv/bin/python scripts/s3_read_bench.py --bucket MY-BUCKET --mb 420      # a real bucket (your credentials)

Writes one object of each size, then reads it alternately both ways (`--rounds` times each) and prints
the median seconds and MB/s. moto is a Python server on the same 2 cores, so on loopback the figures
measure its CPU, not S3's per-connection bandwidth; on a real bucket they measure what a query
function's cold start waits for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from benchlib import say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[64, 420], help="object sizes in MB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bucket", help="a real bucket to use (default: a moto server on 127.0.0.1)")
    parser.add_argument("--prefix", default="imgsearch-s3-read-bench")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}")
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch import s3read
    from imgsearch.store import S3Store

    server = None
    endpoint = None
    bucket = args.bucket
    if bucket is None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            os.environ.setdefault(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint, bucket = f"http://{host}:{port}", "bench"
    store = S3Store(bucket, args.prefix, endpoint_url=endpoint)
    if server is not None:
        store.client.create_bucket(Bucket=bucket)
    say("target", "moto on 127.0.0.1" if server else f"s3://{bucket}")
    say("part_bytes_and_threads", f"{s3read.PART_BYTES} / {s3read.READ_THREADS}")
    try:
        for mb in args.mb:
            name = f"bench-{mb}mb"
            data = np.random.default_rng(mb).integers(0, 256, mb * 2**20, dtype=np.uint8).tobytes()
            store.write(name, data)
            del data
            times: dict[str, list[float]] = {"one_get": [], "ranged": []}
            for _ in range(args.rounds):
                for way, part in (("one_get", 2**62), ("ranged", s3read.PART_BYTES)):
                    started = time.perf_counter()
                    got = s3read.read_object(store.client, bucket, store.object_key(name), part_bytes=part)
                    times[way].append(time.perf_counter() - started)
                    assert len(got) == mb * 2**20
                    del got
            for way, values in times.items():
                median = statistics.median(values)
                say(f"read_{mb}mb_{way}_seconds_median", round(median, 2))
                say(f"read_{mb}mb_{way}_mb_per_s", round(mb / median, 1))
            store.client.delete_object(Bucket=bucket, Key=store.object_key(name))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
