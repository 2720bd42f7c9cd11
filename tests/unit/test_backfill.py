"""Backfill without the model: S3 listing → S3-event messages on a real (moto) SQS queue, resumable, bounded.

Also the sequencer rules of listing-derived entries and CLI tombstones (imgsearch/known.py), checked
through the index's own live-entry resolution.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from imgsearch.backfill import Checkpoint, Plan, Queue, backfill, covering, event_body, event_record
from imgsearch.bucket import Listed, SourceError
from imgsearch.cli import app
from imgsearch.index import ImageIndex
from imgsearch.known import Known, is_cli_order
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.writer import BatchWriter
from lambdas.common.s3events import CREATED, parse_body

REAL_SEQUENCER = "0055AED6DCD90281E5"  # the shape of a real S3 event's sequencer (AWS documentation)


def client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def queue_url(moto_endpoint: str, aws_env: None) -> str:
    sqs = client("sqs", moto_endpoint)
    dead = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
    url: str = sqs.create_queue(
        QueueName=f"ingest-{uuid.uuid4().hex[:8]}", Attributes={"RedrivePolicy": redrive}
    )["QueueUrl"]
    return url


def fill(endpoint: str, bucket: str, count: int, *, prefix: str = "photos/") -> dict[str, str]:
    """count small objects (key → ETag), keys with spaces, '+' and unicode among them."""
    s3 = client("s3", endpoint)
    etags = {}
    for i in range(count):
        key = f"{prefix}{i:04d}{' été+1' if i % 7 == 0 else ''}.jpg"
        etags[key] = s3.put_object(Bucket=bucket, Key=key, Body=f"object {i}".encode())["ETag"].strip('"')
    return etags


def drain(endpoint: str, url: str) -> list[dict[str, Any]]:
    """Every message body on the queue, parsed (the messages are deleted)."""
    sqs = client("sqs", endpoint)
    bodies: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def queued_keys(bodies: list[dict[str, Any]]) -> Counter[str]:
    return Counter(c.ref.key for body in bodies for c in parse_body(json.dumps(body)))


def plan(bucket: str, url: str, **changes: Any) -> Plan:
    return Plan(bucket=bucket, queue_url=url, **{"rate": 0, "max_queued": 0, **changes})


def fake_index(tmp_path: Path, spec: Any) -> ImageIndex:
    index = ImageIndex.open(str(tmp_path / "index"))
    index.ensure(spec)
    return index


def add(index: ImageIndex, refs: list[ObjectRef]) -> None:
    rng = np.random.default_rng(len(refs))
    vectors = rng.standard_normal((len(refs), 64)).astype(np.float32)
    batch = BatchWriter(index)
    batch.add(refs, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    batch.commit()


def live(index: ImageIndex) -> dict[tuple[str, str], ObjectRef]:
    known = Known.load(index)
    return {(r.bucket, r.key): r for b in known.buckets() for r in known.entries(b)}


# --- messages -----------------------------------------------------------------------------------------


def test_a_backfill_record_parses_like_an_s3_notification_with_the_listing_sequencer() -> None:
    item = Listed(
        key="a dir/é+b.jpg", etag="9b2cf535f27731c974343645a3985328", size=1234, time=1_700_000_000.5
    )

    (change,) = parse_body(event_body([event_record("photos", item)]))

    assert change.kind == CREATED and change.event_name == "ObjectCreated:Put"
    assert (change.ref.bucket, change.ref.key, change.ref.etag, change.ref.size) == (
        "photos",
        "a dir/é+b.jpg",
        item.etag,
        1234,
    )
    assert change.ref.sequencer == "0" and change.ref.time == pytest.approx(item.time, abs=0.001)


def test_covering_prefixes_drops_the_ones_another_covers() -> None:
    assert covering(["a/b/", "a/", "c/"]) == ("a/", "c/")
    assert covering([]) == ("",) and covering(["x/", ""]) == ("",)


# --- listing → queue ------------------------------------------------------------------------------------


def test_backfill_queues_every_object_once_and_skips_those_indexed_at_the_same_etag(
    moto_endpoint: str, s3_bucket: str, queue_url: str, tmp_path: Path, spec: Any
) -> None:
    etags = fill(moto_endpoint, s3_bucket, 130)
    keys = sorted(etags)
    index = fake_index(tmp_path, spec)
    same = [ObjectRef(bucket=s3_bucket, key=k, etag=etags[k], size=8) for k in keys[:20]]
    stale = [ObjectRef(bucket=s3_bucket, key=k, etag="old", size=8) for k in keys[20:25]]
    add(index, same + stale)
    p = plan(s3_bucket, queue_url, records_per_message=7)

    done = backfill(
        s3=client("s3", moto_endpoint),
        queue=Queue(client("sqs", moto_endpoint), queue_url),
        plan=p,
        checkpoint=Checkpoint.open(tmp_path / "state.json", p),
        known=Known.load(index),
        wait=False,
    )

    bodies = drain(moto_endpoint, queue_url)
    assert (done.listed, done.skipped, done.queued) == (130, 20, 110)
    assert queued_keys(bodies) == Counter({k: 1 for k in keys[20:]})  # the stale ETags are queued again
    assert max(len(b["Records"]) for b in bodies) == 7 and done.messages == len(bodies) == 16
    records = {unquote(r["s3"]["object"]["key"]): r["s3"]["object"] for b in bodies for r in b["Records"]}
    assert all(r["sequencer"] == "0" and r["eTag"] == etags[k] for k, r in records.items())


def unquote(key: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(key)


@pytest.mark.parametrize("where", ["before_send", "after_send"])
def test_an_interrupted_backfill_resumes_without_gaps_and_repeats_at_most_one_call(
    moto_endpoint: str, s3_bucket: str, queue_url: str, tmp_path: Path, where: str
) -> None:
    etags = fill(moto_endpoint, s3_bucket, 240)
    p = plan(s3_bucket, queue_url, records_per_message=3, page_size=50)
    state = tmp_path / "state.json"
    sqs = client("sqs", moto_endpoint)

    class Interrupting(Queue):
        calls = 0

        def send(self, bodies: list[str], *, attempts: int = 6) -> None:
            Interrupting.calls += 1
            if where == "before_send" and Interrupting.calls == 4:
                raise KeyboardInterrupt
            super().send(bodies)

    class Crashing(Checkpoint):
        def save(self, progress: Any) -> None:
            if where == "after_send" and progress.calls == 4:
                raise KeyboardInterrupt  # sent, but killed before the checkpoint
            super().save(progress)

    def run(queue: Queue, checkpoint: Checkpoint) -> Any:
        return backfill(s3=client("s3", moto_endpoint), queue=queue, plan=p, checkpoint=checkpoint)

    with pytest.raises(KeyboardInterrupt):
        first = Crashing.open(state, p)
        run(Interrupting(sqs, queue_url), first)
    resumed = Checkpoint.open(state, p)
    assert resumed.started and not resumed.finished
    done = run(Queue(sqs, queue_url), resumed)

    counts = queued_keys(drain(moto_endpoint, queue_url))
    assert set(counts) == set(etags)  # no gap
    repeated = sum(n - 1 for n in counts.values())
    assert repeated == (0 if where == "before_send" else 30)  # one SendMessageBatch call: 10 × 3 records
    assert done.done and Checkpoint.open(state, p).finished


def test_the_rate_and_the_queue_bound_pace_the_sends(
    moto_endpoint: str, s3_bucket: str, queue_url: str, tmp_path: Path
) -> None:
    fill(moto_endpoint, s3_bucket, 300)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    class Deep(Queue):
        looks = 0

        def visible(self) -> int:
            Deep.looks += 1
            return 500 if Deep.looks <= 3 else 0  # full for three looks, then drained

    p = plan(s3_bucket, queue_url, rate=100, max_queued=50, records_per_message=10)
    done = backfill(
        s3=client("s3", moto_endpoint),
        queue=Deep(client("sqs", moto_endpoint), queue_url),
        plan=p,
        checkpoint=Checkpoint.open(tmp_path / "state.json", p),
        sleep=sleep,
        clock=lambda: now[0],
    )

    assert done.queued == 300 and done.calls == 3
    assert done.waited >= 3.0  # paused while the queue held more than max_queued
    assert now[0] >= 2.0  # 300 records at 100 a second: the third call is not sent before t = 2 s


# --- errors ------------------------------------------------------------------------------------------------


def test_a_wrong_queue_url_or_bucket_says_what_to_do(
    moto_endpoint: str, s3_bucket: str, queue_url: str, aws_env: None
) -> None:
    sqs = client("sqs", moto_endpoint)
    missing = queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    with pytest.raises(SourceError, match="does not exist: use the stack's IngestQueueUrl"):
        Queue(sqs, missing).check()
    with pytest.raises(SourceError, match="is not an SQS queue URL"):
        Queue(sqs, "ingest-queue").check()
    endpoint = ["--endpoint-url", moto_endpoint, "--queue-url", queue_url]

    nobucket = CliRunner().invoke(app, ["backfill", "s3://no-such-bucket-here", *endpoint])
    noqueue = CliRunner().invoke(
        app, ["backfill", f"s3://{s3_bucket}", "--endpoint-url", moto_endpoint, "--queue-url", missing]
    )
    noargs = CliRunner().invoke(app, ["backfill"])

    assert nobucket.exit_code == 1 and "'no-such-bucket-here' does not exist" in nobucket.stderr
    assert noqueue.exit_code == 1 and "does not exist: use the stack's IngestQueueUrl" in noqueue.stderr
    assert noargs.exit_code == 2 and "--queue-url, or pass --stack" in noargs.stderr


def test_a_state_file_of_another_backfill_is_refused(tmp_path: Path) -> None:
    first = Plan(bucket="photos", queue_url="http://127.0.0.1:1/123456789012/q")
    Checkpoint.open(tmp_path / "s.json", first).save(__import__("imgsearch.backfill").backfill.Progress())

    with pytest.raises(SourceError, match="belongs to another backfill"):
        Checkpoint.open(tmp_path / "s.json", Plan(bucket="other", queue_url=first.queue_url))
    assert not Checkpoint.open(tmp_path / "s.json", first, restart=True).started


def test_the_cli_backfill_prints_its_figures_and_resumes_to_complete(
    moto_endpoint: str, s3_bucket: str, queue_url: str, tmp_path: Path
) -> None:
    fill(moto_endpoint, s3_bucket, 25, prefix="a/")
    fill(moto_endpoint, s3_bucket, 5, prefix="b/")
    args = ["backfill", f"s3://{s3_bucket}", "--prefix", "a/", "--queue-url", queue_url]
    args += ["--endpoint-url", moto_endpoint, "--state", str(tmp_path / "st.json"), "--rate", "0"]

    first = CliRunner().invoke(app, [*args, "--json"])
    again = CliRunner().invoke(app, args)

    assert first.exit_code == 0, first.output
    facts = json.loads(first.stdout.strip().splitlines()[-1])
    assert (facts["listed"], facts["queued"], facts["done"]) == (25, 25, True)
    assert again.exit_code == 0 and "already complete" in again.stderr
    assert set(queued_keys(drain(moto_endpoint, queue_url))) == {
        f"a/{i:04d}{' été+1' if i % 7 == 0 else ''}.jpg" for i in range(25)
    }


# --- sequencers (known.py) --------------------------------------------------------------------------------


def test_a_real_event_always_beats_a_listing_entry_and_a_rerun_records_the_new_etag(
    tmp_path: Path, spec: Any
) -> None:
    index = fake_index(tmp_path, spec)
    add(index, [ObjectRef(bucket="b", key="k", etag="e1", sequencer="0")])
    add(index, [ObjectRef(bucket="b", key="k", etag="e2", sequencer="0")])  # re-run after a change: the tie
    assert live(index)[("b", "k")].etag == "e2"  # ... goes to the later row

    add(index, [ObjectRef(bucket="b", key="k", etag="e3", sequencer=REAL_SEQUENCER)])
    add(
        index,
        [ObjectRef(bucket="b", key="k", etag="e4", sequencer=Known.load(index).listing_sequencer("b", "k"))],
    )
    assert live(index)[("b", "k")].etag == "e3"  # a listing written later still loses to the event
    assert not is_cli_order(REAL_SEQUENCER)


def test_a_cli_tombstone_hides_its_entry_and_an_object_that_comes_back_is_indexed_above_it(
    tmp_path: Path, spec: Any
) -> None:
    index = fake_index(tmp_path, spec)
    add(index, [ObjectRef(bucket="b", key="k", etag="e1", sequencer="0")])
    entry = Known.load(index).entry("b", "k")
    assert entry is not None
    index.delete([entry])  # what `delete` and `--prune` write: the entry's own sequencer
    assert ("b", "k") not in live(index)

    again = Known.load(index).listing_sequencer("b", "k")
    add(index, [ObjectRef(bucket="b", key="k", etag="e1", sequencer=again)])

    assert again == "1" and live(index)[("b", "k")].etag == "e1"
    index.delete([ObjectRef(bucket="b", key="k", sequencer=REAL_SEQUENCER)])  # then a real S3 delete
    add(
        index,
        [ObjectRef(bucket="b", key="k", etag="e1", sequencer=Known.load(index).listing_sequencer("b", "k"))],
    )
    assert ("b", "k") not in live(index)  # a listing never undoes a real delete


def test_a_restored_local_file_with_its_old_mtime_is_indexed_above_the_prune_tombstone(
    tmp_path: Path, spec: Any
) -> None:
    index = fake_index(tmp_path, spec)
    mtime = f"{1_700_000_000 * 10**9:x}"
    add(index, [ObjectRef(bucket="local", key="a.jpg", etag="e", sequencer=mtime)])
    entry = Known.load(index).entry("local", "a.jpg")
    assert entry is not None
    index.delete([entry])

    bumped = Known.load(index).file_sequencer("a.jpg", mtime)
    add(index, [ObjectRef(bucket="local", key="a.jpg", etag="e", sequencer=bumped)])

    assert int(bumped, 16) == int(mtime, 16) + 1 and ("local", "a.jpg") in live(index)
    searcher = Searcher(index)
    searcher.refresh(force=True)
    assert searcher.count == 1


def test_stack_outputs_give_the_queue_and_the_bucket(
    moto_endpoint: str, s3_bucket: str, queue_url: str, tmp_path: Path
) -> None:
    fill(moto_endpoint, s3_bucket, 3)
    outputs = {"IngestQueueUrl": {"Value": queue_url}, "ImagesBucketName": {"Value": s3_bucket}}
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
    client("cloudformation", moto_endpoint).create_stack(
        StackName="ImgSearch-test", TemplateBody=json.dumps(template)
    )
    args = ["backfill", "--stack", "ImgSearch-test", "--endpoint-url", moto_endpoint, "--rate", "0"]

    found = CliRunner().invoke(app, [*args, "--state", str(tmp_path / "s.json"), "--json"])
    missing = CliRunner().invoke(
        app, ["backfill", "--stack", "No-Such-Stack", "--endpoint-url", moto_endpoint]
    )

    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout.strip().splitlines()[-1])["queued"] == 3
    assert len(queued_keys(drain(moto_endpoint, queue_url))) == 3
    assert missing.exit_code == 1 and "no stack named 'No-Such-Stack'" in missing.stderr


def test_access_denied_names_the_permission_the_credentials_need() -> None:
    from botocore.exceptions import ClientError

    from imgsearch.backfill import explain_queue
    from imgsearch.bucket import explain

    def denied(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")

    listing = explain(denied("AccessDenied", 403), action="list", target="s3://photos/2024/")
    reading = explain(denied("AccessDenied", 403), action="read", target="s3://photos/2024/a.jpg")
    queue = explain_queue(denied("AccessDenied", 403), "https://sqs.eu-west-1.amazonaws.com/123456789012/q")

    assert "the credentials need s3:ListBucket on arn:aws:s3:::photos" in str(listing)
    assert "the credentials need s3:GetObject on arn:aws:s3:::photos/*" in str(reading)
    assert "sqs:SendMessage and sqs:GetQueueAttributes" in str(queue)
