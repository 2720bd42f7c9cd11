#!/usr/bin/env python3
"""Cold start of the query handler, in process: imports + model, index load, first query.

    .venv/bin/python scripts/coldstart.py --raw bench-out/cifar-raw.npy --sizes 10000 60000

Builds an index of N entries from cached raw embeddings (scripts/bench.py writes them) on moto's S3
server (127.0.0.1), then, for each size, starts a fresh Python process that imports
lambdas/query/handler.py (what Lambda does at cold start) and answers GET /health (loads the index)
and one POST /search. Prints the figures for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import base64, io, json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, os.environ["REPO_ROOT"])
from lambdas.query import handler as h
t1 = time.perf_counter()
class Context:
    function_name = "query"; memory_limit_in_mb = 3008; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:query"
    def get_remaining_time_in_millis(self): return 29000
events = os.environ["EVENTS"]
health = json.load(open(os.path.join(events, "apigw_rest_health.json")))
answer = h.handler(health, Context())
t2 = time.perf_counter()
search = json.load(open(os.path.join(events, "apigw_rest_search_binary.json")))
from PIL import Image
buffer = io.BytesIO(); Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "PNG")
search["body"] = base64.b64encode(buffer.getvalue()).decode(); search["isBase64Encoded"] = True
search["queryStringParameters"] = {"k": "10"}; search["multiValueQueryStringParameters"] = {"k": ["10"]}
result = h.handler(search, Context())
t3 = time.perf_counter()
print(json.dumps({"import_and_model_s": t1 - t0, "index_load_s": t2 - t1, "first_query_s": t3 - t2,
                  "count": json.loads(answer["body"])["count"], "search_status": result["statusCode"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, default=ROOT / "bench-out" / "cifar-raw.npy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000])
    args = parser.parse_args()

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.embed import Embedder
    from imgsearch.index import ImageIndex
    from imgsearch.segment import ObjectRef
    from imgsearch.store import S3Store

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    raw = np.load(args.raw).astype(np.float32)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    s3 = boto3.client("s3", endpoint_url=endpoint)
    spec = Embedder.load().spec
    try:
        for size in args.sizes:
            bucket = f"coldstart-{size}"
            s3.create_bucket(Bucket=bucket)
            index = ImageIndex(S3Store(bucket, "index", client=s3))
            index.ensure(spec)
            vectors = raw[: min(size, len(raw))]
            refs = [
                ObjectRef(bucket="images", key=f"img/{i:06d}.jpg", sequencer="1") for i in range(len(vectors))
            ]
            for start in range(0, len(refs), 5000):
                index.append(refs[start : start + 5000], vectors[start : start + 5000])
            started = time.perf_counter()
            index.fit(min_count=1)
            built = time.perf_counter() - started
            child_env = {
                **env,
                "REPO_ROOT": str(ROOT),
                "EVENTS": str(ROOT / "tests" / "events"),
                "INDEX_URI": f"s3://{bucket}/index",
                "IMAGES_BUCKET": "images",
                "MODEL_DIR": str(Path(spec_dir())),
                "POWERTOOLS_METRICS_NAMESPACE": "ImgSearch",
                "POWERTOOLS_SERVICE_NAME": "imgsearch",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
            out = (
                subprocess.run(
                    [sys.executable, "-c", CHILD],
                    env=child_env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            figures = json.loads(out)
            figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
            print(json.dumps({"size": size, "fit_and_compact_s": round(built, 1), **figures}), flush=True)
    finally:
        server.stop()


def spec_dir() -> Path:
    from imgsearch.modelspec import default_model_dir

    return default_model_dir()


if __name__ == "__main__":
    main()
