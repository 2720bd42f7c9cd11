"""Backfill at 5,000 objects on the local stack (moto over real HTTP on 127.0.0.1); prints every figure.

    .venv/bin/python scripts/backfill_bench.py                    # 5,000 objects, 3 random SIGKILLs
    .venv/bin/python scripts/backfill_bench.py --objects 1000 --kills 1

A bucket holding real images (Corel-1k and CIFAR-10 from ../shared/datasets), non-images and zero-byte
objects, put before the bucket notification exists, is backfilled with `imgsearch backfill` through the
local ingest queue and the real ingest handler. The backfill is SIGKILLed at random points and resumed
with the same command; between runs an object already queued is deleted, one not yet listed is deleted,
one is overwritten and a new one is uploaded (real S3 events). At the end the index must hold every
image of the bucket exactly once at its current ETag, the non-images as rejections, and nothing deleted.

Figures: time per 1,000 objects for listing, queueing and indexing, measured here, and the model for
1,000,000 objects on AWS (docs/DEPLOY.md, backfill). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

RECORDS_PER_MESSAGE = 10  # the backfill's default
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASETS = ROOT.parent / "shared" / "datasets"

# --- the AWS model's assumptions (docs/DEPLOY.md, backfill explains each) -------------------------------------------
AWS = {
    "list_seconds_per_call": 0.15,  # ListObjectsV2, 1,000 keys, laptop → S3 in region or nearby
    "send_seconds_per_call": 0.05,  # SendMessageBatch, 10 messages, laptop → SQS
    "get_seconds": 0.03,  # S3 GET of a photo from Lambda, in region (sequential in the handler)
    "records_per_invocation": 100,  # batchSize 10 messages × 10 records a message
    "ingest_gb": 3008 / 1024,  # ingestMemoryMb 3008 (about 2 vCPUs)
    "lambda_gb_second_usd": 0.0000133334,  # arm64, us-east-1
    "lambda_request_usd": 0.20 / 1e6,
    "list_usd": 0.005 / 1000,
    "get_usd": 0.0004 / 1000,
    "put_usd": 0.005 / 1000,
    "sqs_request_usd": 0.40 / 1e6,
    "puts_per_segment": 3,  # query.npz + raw.npy + the manifest (CAS)
}


def build_objects(count: int, folder: Path) -> tuple[dict[str, str], set[str]]:
    """Write count objects under folder: images (key → label), plus 1 % non-images and 1 % zero-byte."""
    odd = max(2, count // 100)
    images = count - 2 * odd
    labels: dict[str, str] = {}
    with zipfile.ZipFile(DATASETS / "corel1k.zip") as corel:
        rows = [r.split(",") for r in corel.read("corel1k/labels.csv").decode().splitlines()[1:]]
        for path, label, _ in rows[: min(images, len(rows))]:
            key = f"photos/corel/{label.replace(' ', '-')}/{Path(path).name}"
            write(folder / key, corel.read(f"corel1k/{path}"))
            labels[key] = label
    with zipfile.ZipFile(DATASETS / "cifar10.zip") as cifar:
        rows = [r.split(",") for r in cifar.read("cifar10/labels.csv").decode().splitlines()[1:]]
        for path, label, split in rows[: images - len(labels)]:
            key = f"photos/cifar {split}/{label}/{Path(path).name}"  # a space in every key
            write(folder / key, cifar.read(f"cifar10/{path}"))
            labels[key] = label
    rejects = set()
    rng = random.Random(1)
    for i in range(odd):
        key = f"misc/notes-{i:03d}.txt" if i % 2 else f"misc/broken-{i:03d}.jpg"
        write(folder / key, b"not an image\n" if i % 2 else b"\xff\xd8\xff\xe0" + rng.randbytes(200))
        rejects.add(key)
        write(folder / f"misc/empty-{i:03d}.jpg", b"")
        rejects.add(f"misc/empty-{i:03d}.jpg")
    return labels, rejects


def handler_lines(log: Path) -> list[tuple[int, float]]:
    """(messages, seconds) of every "ingest: N message(s) handled in X s" line of the stack's log."""
    found = re.findall(r"ingest: (\d+) message\(s\) handled in ([\d.]+) s", log.read_text(errors="replace"))
    return [(int(n), float(t)) for n, t in found]


def handler_time(log: Path) -> tuple[int, float]:
    lines = handler_lines(log)
    return sum(n for n, _ in lines), sum(t for _, t in lines)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def per_thousand(seconds: float, count: int) -> float:
    return seconds / max(count, 1) * 1000


def measure_listing(stack: Any, repeats: int = 3) -> tuple[float, int]:
    from imgsearch.bucket import S3Source, list_pages

    s3 = stack.s3()
    times, count = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = sum(len(page) for page in list_pages(s3, S3Source(stack.bucket)))
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def measure_queueing(stack: Any) -> tuple[float, int, int]:
    """Every listed object as backfill records onto a scratch queue nobody reads: (seconds, records, calls)."""
    from imgsearch.backfill import Checkpoint, Plan, Queue, backfill

    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName="bench-scratch")["QueueUrl"]
    plan = Plan(bucket=stack.bucket, queue_url=url, rate=0, max_queued=0)
    with tempfile.TemporaryDirectory() as folder:
        progress = backfill(
            s3=stack.s3(),
            queue=Queue(sqs, url),
            plan=plan,
            checkpoint=Checkpoint.open(Path(folder) / "s.json", plan),
        )
    sqs.delete_queue(QueueUrl=url)
    return progress.sending_seconds, progress.queued, progress.calls


class Sampler(threading.Thread):
    """Polls GET /health: (seconds since start, live count, rejected) every half second."""

    def __init__(self, stack: Any) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.samples: list[tuple[float, int, int]] = []
        self.started = time.monotonic()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                health = self.stack.health()
            except Exception:
                continue
            self.samples.append((time.monotonic() - self.started, health["count"], health["rejected"]))

    def first_at(self, count: int) -> float | None:
        return next((t for t, c, _ in self.samples if c >= count), None)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--max-queued", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    args = parser.parse_args()
    if not (DATASETS / "corel1k.zip").is_file() or not (DATASETS / "cifar10.zip").is_file():
        print(f"needs {DATASETS}/corel1k.zip and cifar10.zip (see its README)", file=sys.stderr)
        return 2

    from tests.e2e.existing_stack import (
        CLI,
        aws_env,
        bucket_etags,
        index_uri,
        launch_existing,
        live_entries,
        queue_url,
        rejected_keys,
        state_counts,
        stop,
    )

    rng = random.Random(args.seed)
    figures: dict[str, Any] = {"objects": args.objects, "kills": args.kills, "seed": args.seed}
    figures["load_average_at_start"] = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as tmp_name:
        tmp = Path(tmp_name)
        labels, rejects = build_objects(args.objects, tmp / "existing")
        print(
            f"objects: {len(labels)} images, {len(rejects)} non-images and zero-byte objects in {tmp / 'existing'}"
        )
        started = time.monotonic()
        stack = launch_existing(
            tmp, bucket="bench-images", existing=tmp / "existing", threads=None, compact_every=30
        )
        figures["stack_start_seconds"] = round(time.monotonic() - started, 1)
        env = aws_env(tmp)
        for name, value in env.items():
            if name.startswith("AWS_"):
                os.environ[name] = value
        try:
            listing, listed = measure_listing(stack)
            sending, records, calls = measure_queueing(stack)
            figures.update(
                listing_seconds_per_1000=round(per_thousand(listing, listed), 4),
                queueing_seconds_per_1000=round(per_thousand(sending, records), 4),
                queueing_calls=calls,
            )
            print(
                f"listing:  {listed} objects in {listing:.3f} s → {figures['listing_seconds_per_1000']:.3f} s per 1,000"
            )
            print(
                f"queueing: {records} records in {calls} SendMessageBatch calls, {sending:.3f} s → "
                f"{figures['queueing_seconds_per_1000']:.3f} s per 1,000"
            )

            state = tmp / "backfill.json"
            command = [str(CLI), "backfill", f"s3://{stack.bucket}", "--queue-url", queue_url(stack)]
            command += [
                "--index",
                index_uri(stack),
                "--endpoint-url",
                stack.s3_endpoint,
                "--state",
                str(state),
            ]
            command += ["--rate", str(args.rate), "--max-queued", str(args.max_queued)]
            keys = sorted(labels)
            changes: list[str] = []
            sampler = Sampler(stack)
            sampler.start()
            run_started = time.monotonic()
            for kill in range(args.kills):
                process = subprocess.Popen(
                    command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                after = rng.uniform(1.0, 12.0)
                time.sleep(after)
                if process.poll() is not None:
                    print(f"kill {kill + 1}: the run had already finished after {after:.1f} s")
                    break
                process.send_signal(signal.SIGKILL)
                process.wait()
                counts = state_counts(state)
                position = json.loads(state.read_text())["positions"][""]["after"] if state.is_file() else ""
                print(f"kill {kill + 1}: SIGKILL after {after:.1f} s; checkpoint {counts} after {position!r}")
                changes.append(change(stack, kill, keys, position, labels))
            final = subprocess.run(
                [*command, "--wait", "--json"], env=env, cwd=ROOT, capture_output=True, text=True
            )
            if final.returncode:
                print(final.stderr[-3000:], file=sys.stderr)
                return 1
            facts = json.loads(final.stdout.strip().splitlines()[-1])
            queued_at = time.monotonic() - run_started  # the final run returns once the queue is empty
            wanted = {k: e for k, e in bucket_etags(stack).items() if k not in rejects}
            deadline = time.monotonic() + 600
            while (found := live_entries(stack)) != wanted and time.monotonic() < deadline:
                time.sleep(1)
            done_at = time.monotonic() - run_started
            sampler.stopping.set()
            health = stack.health()
            handled, handler_seconds = handler_time(stack.log)
            bad_rejects = rejected_keys(stack) ^ rejects
            first = sampler.first_at(1) or 0.0
            indexing = (done_at - first) if first else done_at
            figures.update(
                changes=changes,
                final_run=facts,
                backfill_wall_seconds=round(done_at, 1),
                queued_by_seconds=round(queued_at, 1),
                indexing_seconds_per_1000=round(per_thousand(indexing, len(wanted)), 2),
                handler_seconds_per_1000=round(
                    per_thousand(handler_seconds, handled * RECORDS_PER_MESSAGE), 2
                ),
                handler_invocations=sum(1 for _ in handler_lines(stack.log)),
                live=health["count"],
                expected=len(wanted),
                rejected_recorded=health["rejected"],
                rejected_expected=len(rejects),
                entries_written=health["entries"],
                missing=len(set(wanted) - set(found)),
                extra=len(set(found) - set(wanted)),
                wrong_etag=sum(1 for k in wanted if k in found and found[k] != wanted[k]),
                rejection_mismatch=len(bad_rejects),
            )
            ok = found == wanted and not bad_rejects
            print(
                f"backfill: {args.kills} SIGKILLs + resume; the final run returned (queue empty) at {queued_at:.1f} s, "
                "index equal to "
                f"the bucket at {done_at:.1f} s (indexing {figures['indexing_seconds_per_1000']:.2f} s per 1,000 "
                "on this machine's 2 cores)"
            )
            print(
                f"index: {health['count']} live (expected {len(wanted)}), {figures['missing']} missing, "
                f"{figures['extra']} extra (deleted ones resurrected), {figures['wrong_etag']} at a stale ETag; "
                f"{health['rejected']} rejections recorded for {len(rejects)} non-images "
                f"(set equal: {not bad_rejects}); {health['entries']} entries written"
            )
            print(
                f"ingest handler: {figures['handler_invocations']} invocations, "
                f"{figures['handler_seconds_per_1000']:.2f} s of handler time per 1,000 records "
                "(fetch from moto + embed + encode + write a segment)"
            )
            print(f"changes meanwhile: {'; '.join(changes)}")
            again_started = time.monotonic()
            again = subprocess.run(
                [*command, "--restart", "--json"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            rerun = json.loads(again.stdout.strip().splitlines()[-1])
            figures["rerun"] = {
                "seconds": round(time.monotonic() - again_started, 1),
                "listed": rerun["listed"],
                "skipped": rerun["skipped"],
                "queued": rerun["queued"],
            }
            print(
                f"re-run from the start (--restart) on the complete index: listed {rerun['listed']}, skipped "
                f"{rerun['skipped']}, queued {rerun['queued']} in {figures['rerun']['seconds']} s (CLI start, model-free "
                "index load and listing included)"
            )
        finally:
            stop(stack.process)
    model = aws_model(figures)
    figures["aws_model_1m"] = model
    print("AWS model for 1,000,000 objects:")
    for key, value in model.items():
        print(f"  {key}: {value}")
    print("RESULT:", "ok" if ok else "FAILED")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if ok else 1


def change(stack: Any, kill: int, keys: list[str], position: str, labels: dict[str, str]) -> str:
    """One change with a real S3 event between runs: deletes (queued / not yet listed), overwrite, upload."""
    from tests.imagegen import synthetic_image

    s3 = stack.s3()
    queued = [k for k in keys if k <= position]
    later = [k for k in keys if k > position]
    if kill == 0 and queued:
        key = rng_pick(queued)
        s3.delete_object(Bucket=stack.bucket, Key=key)
        return f"deleted {key} (already queued)"
    if kill == 1 and later:
        key = later[len(later) // 2]
        s3.put_object(Bucket=stack.bucket, Key=key, Body=synthetic_image(4242, fmt="JPEG"))
        s3.put_object(
            Bucket=stack.bucket, Key="uploads/new during backfill.jpg", Body=synthetic_image(4343, fmt="JPEG")
        )
        return f"overwrote {key} (not listed yet) and uploaded uploads/new during backfill.jpg"
    if later:
        key = later[-1]
        s3.delete_object(Bucket=stack.bucket, Key=key)
        return f"deleted {key} (not listed yet)"
    return "none"


def rng_pick(keys: list[str]) -> str:
    return keys[len(keys) * 2 // 3]


def aws_model(figures: dict[str, Any]) -> dict[str, Any]:
    """1,000,000 objects on AWS from the assumptions in AWS and this machine's measured embedding cost."""
    n = 1_000_000
    list_calls = n / 1000
    send_calls = n / 100  # 10 messages × 10 records a call
    laptop_seconds = list_calls * AWS["list_seconds_per_call"] + send_calls * AWS["send_seconds_per_call"]
    # per image: the handler's own time here (decode + embed + encode + write on 2 cores, about a 3008 MB
    # Lambda), less its GETs from moto on loopback (counted at the AWS figure instead)
    embed_seconds = figures["handler_seconds_per_1000"] / 1000
    per_invocation = AWS["records_per_invocation"] * (AWS["get_seconds"] + embed_seconds)
    throughput_per_instance = AWS["records_per_invocation"] / per_invocation
    gb_seconds = n / AWS["records_per_invocation"] * per_invocation * AWS["ingest_gb"]
    segments = n / AWS["records_per_invocation"]
    cost = {
        "lambda compute": gb_seconds * AWS["lambda_gb_second_usd"],
        "lambda requests": segments * AWS["lambda_request_usd"],
        "S3 LIST": list_calls * AWS["list_usd"],
        "S3 GET": n * AWS["get_usd"],
        "index PUTs": segments * AWS["puts_per_segment"] * AWS["put_usd"],
        "SQS": (send_calls + 3 * segments) * AWS["sqs_request_usd"],  # send + receive + delete + empty polls
    }
    return {
        "laptop (list + queue, --rate 0 --max-queued 0)": f"{laptop_seconds / 60:.0f} min",
        "laptop at the default --rate 500": f"{max(laptop_seconds, n / 500) / 60:.0f} min",
        "per ingest invocation (100 images)": f"{per_invocation:.1f} s",
        "images/s per concurrent invocation": f"{throughput_per_instance:.0f}",
        "indexing time at concurrency 10 / 50": f"{n / (10 * throughput_per_instance) / 60:.0f} / "
        f"{n / (50 * throughput_per_instance) / 60:.0f} min",
        "segments written": f"{segments:,.0f} (compaction folds them)",
        "cost USD": {k: round(v, 3) for k, v in cost.items()} | {"total": round(sum(cost.values()), 2)},
    }


if __name__ == "__main__":
    sys.exit(main())
