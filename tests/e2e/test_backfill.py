"""Backfill end to end on the local stack: a bucket that already holds objects (put before notifications),
`imgsearch backfill` through the real ingest queue and handler, killed once and resumed, with a delete,
an overwrite and an upload happening meanwhile. scripts/backfill_bench.py runs the same at 5,000 objects.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .conftest import sample_images, synthetic_image
from .existing_stack import (
    CLI,
    ROOT,
    aws_env,
    bucket_etags,
    index_uri,
    launch_existing,
    live_entries,
    queue_url,
    rejected_keys,
    state_counts,
    stop,
    write_folder,
)

pytestmark = pytest.mark.slow

IMAGES = 190
NON_IMAGES = {f"old/notes-{i}.txt": f"not an image {i}\n".encode() for i in range(5)}
EMPTY = {f"old/empty-{i}.jpg": b"" for i in range(5)}


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process reads the stack's index on moto too: throwaway credentials, no machine profile."""
    for name, value in aws_env(tmp_path).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def existing(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    images = sample_images(IMAGES, prefix="old", per_class=IMAGES // 10)
    if len(images) < IMAGES:  # generated images when ../shared/datasets is absent
        images = {f"old/{i:03d}.jpg": synthetic_image(2000 + i) for i in range(IMAGES)}
    folder = tmp_path / "existing"
    write_folder(folder, {**images, **NON_IMAGES, **EMPTY})
    return folder, images


def test_backfill_killed_and_resumed_with_changes_meanwhile_ends_in_the_bucket_state(
    tmp_path: Path, existing: tuple[Path, dict[str, bytes]]
) -> None:
    folder, images = existing
    stack = launch_existing(tmp_path, bucket="bf-images", existing=folder)
    try:
        assert stack.health()["count"] == 0  # the existing objects sent no events
        state = tmp_path / "backfill.json"
        command = [str(CLI), "backfill", f"s3://{stack.bucket}", "--queue-url", queue_url(stack)]
        command += ["--index", index_uri(stack), "--endpoint-url", stack.s3_endpoint]
        command += ["--state", str(state), "--records-per-message", "5"]
        env = aws_env(tmp_path)

        first = subprocess.Popen([*command, "--rate", "40"], env=env, cwd=ROOT, stderr=subprocess.PIPE)
        queued = stack.wait_for(lambda: queued_so_far(state) >= 60 and queued_so_far(state), "60 queued", 60)
        first.send_signal(signal.SIGKILL)  # interrupted hard, between any two instructions
        first.wait(timeout=10)
        assert queued < IMAGES + 10, "the first run finished before it could be interrupted"

        position = json.loads(state.read_text())["positions"][""]["after"]
        keys = sorted(images)
        gone_queued = max(k for k in keys if k <= position)  # queued before the kill: must not come back
        gone_later = min(k for k in keys if k > position)  # not listed yet
        overwritten = sorted(k for k in keys if k > position)[1]
        s3 = stack.s3()
        s3.delete_object(Bucket=stack.bucket, Key=gone_queued)
        s3.delete_object(Bucket=stack.bucket, Key=gone_later)
        s3.put_object(
            Bucket=stack.bucket, Key=overwritten, Body=synthetic_image(7777), ContentType="image/jpeg"
        )
        s3.put_object(
            Bucket=stack.bucket, Key="new/upload.jpg", Body=synthetic_image(8888), ContentType="image/jpeg"
        )

        resumed = subprocess.run(
            [*command, "--rate", "0", "--wait", "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        facts = json.loads(resumed.stdout.strip().splitlines()[-1])
        assert facts["resumed"] and facts["done"]
        assert "resuming from" in resumed.stderr

        wanted = {k: e for k, e in bucket_etags(stack).items() if k not in NON_IMAGES and k not in EMPTY}
        stack.wait_for(lambda: live_entries(stack) == wanted, "the index to match the bucket", 90)
        assert gone_queued not in wanted and gone_later not in wanted  # deletes are never resurrected
        assert "new/upload.jpg" in wanted and len(wanted) == IMAGES - 2 + 1
        assert rejected_keys(stack) == set(NON_IMAGES) | set(EMPTY)  # non-images: recorded rejections
        key, data = next((k, v) for k, v in images.items() if k in wanted and k != overwritten)
        hits = [h["key"] for h in stack.search_image(data, k="10")]
        assert hits[0] == key and hits.count(key) == 1  # searchable, exactly once
    finally:
        stop(stack.process)


def test_local_up_existing_with_backfill_indexes_what_was_there(tmp_path: Path) -> None:
    folder = tmp_path / "existing"
    write_folder(folder, {**sample_images(10, prefix="p", per_class=1), "p/readme.txt": b"text"})
    stack = launch_existing(tmp_path, bucket="bf-local", existing=folder, backfill=True)
    try:
        health = stack.wait_for(
            lambda: (h := stack.health())["count"] == 10 and h["rejected"] == 1 and h, "10 + 1"
        )
        assert health["status"] == "ok"
        stack.wait_for(lambda: "backfill: done" in stack.log.read_text(), "the backfill to finish")
    finally:
        stop(stack.process)


def queued_so_far(state: Path) -> int:
    return int(state_counts(state).get("queued", 0))


def test_the_cli_indexes_an_s3_bucket_into_the_deployed_index_with_working_urls_and_backfill_skips_it(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from imgsearch.cli import app

    folder = tmp_path / "existing"
    images = sample_images(6, prefix="cli", per_class=1)
    write_folder(folder, images)
    stack = launch_existing(tmp_path, bucket="bf-cli", existing=folder)
    try:
        where = ["--index", index_uri(stack), "--endpoint-url", stack.s3_endpoint]
        indexed = CliRunner().invoke(
            app, ["index", *where, f"s3://{stack.bucket}/cli/", "--json", "--no-compact"]
        )
        assert indexed.exit_code == 0, indexed.output
        assert json.loads(indexed.stdout.strip().splitlines()[-1])["indexed"] == 6

        key, data = next(iter(images.items()))
        hit = stack.wait_for(
            lambda: (hits := stack.search_image(data, k="1")) and hits[0], "the API to see it"
        )
        with urllib.request.urlopen(hit["url"], timeout=10) as response:  # presigned for the real bucket
            assert hit["key"] == key and response.read() == data

        args = ["backfill", f"s3://{stack.bucket}", "--queue-url", queue_url(stack), *where]
        backfilled = CliRunner().invoke(app, [*args, "--state", str(tmp_path / "st.json"), "--json"])
        assert backfilled.exit_code == 0, backfilled.output
        facts = json.loads(backfilled.stdout.strip().splitlines()[-1])
        assert (facts["listed"], facts["skipped"], facts["queued"]) == (6, 6, 0)
    finally:
        stop(stack.process)
