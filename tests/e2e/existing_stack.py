"""The local stack started on a bucket that already holds objects (`imgsearch local up --existing FOLDER`).

Used by tests/e2e/test_backfill.py and scripts/backfill_bench.py; like tests/localstack.py's `launch`,
plus the --existing and --backfill flags, and helpers to read the stack's index and queue.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stacks import wiring
from tests.localstack import API_KEY, CLI, ROOT, Stack, launch, stop

__all__ = ["API_KEY", "CLI", "ROOT", "Stack", "aws_env", "launch_existing", "queue_url", "stop"]


def launch_existing(
    tmp: Path,
    *,
    bucket: str,
    existing: Path,
    backfill: bool = False,
    threads: int | None = 1,
    compact_every: float = 5,
    ready_seconds: float = 300,
) -> Stack:
    """Start `imgsearch local up --existing FOLDER` on free ports and wait until GET /health answers."""
    return launch(
        log=tmp / "stack.log",
        bucket=bucket,
        compact_every=compact_every,
        extra=["--existing", str(existing)] + (["--backfill"] if backfill else []),
        threads=threads,
        ready_seconds=ready_seconds,
    )


def aws_env(tmp: Path) -> dict[str, str]:
    """The environment of a CLI run against moto: throwaway credentials, no profile, its own cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": "e2e",
        "AWS_SECRET_ACCESS_KEY": "e2e",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "XDG_CACHE_HOME": str(tmp / "cache"),
    }


def index_uri(stack: Stack) -> str:
    return wiring.index_uri(f"{stack.bucket}-index")


def queue_url(stack: Stack) -> str:
    url: str = stack.client("sqs").get_queue_url(QueueName=f"{stack.bucket}-ingest")["QueueUrl"]
    return url


def live_entries(stack: Stack) -> dict[str, str]:
    """key → ETag of every live entry of the stack's index (one per object, checked)."""
    from imgsearch.index import ImageIndex
    from imgsearch.known import Known

    known = Known.load(ImageIndex.open(index_uri(stack), endpoint_url=stack.s3_endpoint))
    entries = list(known.entries(stack.bucket))
    if len(entries) != len({r.key for r in entries}):
        raise AssertionError("an object has two live entries")
    return {r.key: r.etag for r in entries}


def rejected_keys(stack: Stack) -> set[str]:
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher

    searcher = Searcher(ImageIndex.open(index_uri(stack), endpoint_url=stack.s3_endpoint))
    searcher.refresh(force=True)
    return {r.key for r in searcher.rejections()}


def bucket_etags(stack: Stack) -> dict[str, str]:
    pages = stack.s3().get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
    return {o["Key"]: o["ETag"].strip('"') for page in pages for o in page.get("Contents", [])}


def state_counts(state: Path) -> dict[str, int]:
    """The counters a backfill's checkpoint holds (empty before its first save)."""
    try:
        return dict(json.loads(state.read_text())["counts"])
    except (OSError, ValueError, KeyError):
        return {}


def write_folder(folder: Path, objects: dict[str, bytes]) -> None:
    """Each key → bytes as a file under folder (what --existing puts into the bucket)."""
    for key, data in objects.items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
