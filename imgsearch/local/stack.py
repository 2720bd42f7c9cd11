"""`imgsearch local up`: moto (S3 + SQS) on 127.0.0.1, wired like the CDK stack, with the real handlers.

Order: moto → buckets, queues (dead-letter queue, redrive) → restored images (--data) and objects
already in the bucket (--existing) → bucket notification → handlers imported with each function's environment → ingest and compaction workers →
seed upload → backfill started (--backfill, in the background) → local API. GET /health answers once
all of that is done (the backfill may still be running).

Names come from stacks/wiring.py and the stage settings from cdk.json (stacks/config.py: its defaults and
any overrides in cdk.json), the same sources the CDK app reads; each handler's environment is built by the
builders the CDK constructs use, from each function's settings definitions (imgsearch/settings.py). With --data DIR the index lives in DIR/index (a local directory index) and
every image is mirrored to DIR/images; the next start puts the mirror back into moto before the bucket
notification exists, then re-sends only what the index lacks, so unchanged images are not re-embedded.

With --index-backend s3vectors the index is an S3 Vectors index in moto (QueryVectors added by
imgsearch.local.s3vectors_query), created as the CDK stack creates it; the handlers get INDEX_BACKEND and
VECTOR_INDEX_ARN instead of INDEX_URI, and there is no compaction worker (docs/S3VECTORS.md).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import mimetypes
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import settings

REGION = "us-east-1"
HOST = "127.0.0.1"
PARTIAL = ".partial"  # suffix of a mirror file being written

# The default ports (the only definition: `imgsearch local up` and Options read these). 18470 and 18480
# are in a range none of the tools a user of this stack already runs listen on: LocalStack 4566 (and
# its 4510-4559), moto server 5000, MinIO 9000/9001, ElasticMQ 9324, DynamoDB Local 8000, `sam local`
# 3000/3001, the usual 3000/8000/8080 dev servers, Spark's 18080. Both are below every OS's ephemeral
# range (Linux 32768+, macOS and Windows 49152+), so no outgoing connection can hold them.
S3_PORT = 18470  # S3 + SQS (moto)
API_PORT = 18480  # the API and the search page: ends in 80, the HTTP one

# Who usually listens on a port, to say so when it is taken.
KNOWN_PORTS = {
    4566: "LocalStack",
    5000: "a moto server (or macOS AirPlay)",
    3000: "a dev server (or sam local)",
    8000: "a dev server (or DynamoDB Local)",
    8080: "a dev server",
    9000: "MinIO",
    S3_PORT: "another `imgsearch local up`",
    API_PORT: "another `imgsearch local up`",
}


class LocalStackError(RuntimeError):
    """The local stack cannot start (the message says why and what to do)."""


@dataclass
class Options:
    s3_port: int = S3_PORT
    api_port: int = API_PORT
    bucket: str = "images"
    api_key: str | None = None
    seed: Path | None = None
    data: Path | None = None
    compact_every: float = 60.0
    log_level: str = "WARNING"
    existing: Path | None = None  # objects already in the bucket before deployment (no notifications)
    backfill: bool = False  # backfill the bucket through the ingest queue once everything runs
    index_backend: str = "segments"  # or "s3vectors": an S3 Vectors index in moto (backend.BACKENDS)

    @property
    def vector_index(self) -> str:
        """The S3 Vectors index of --index-backend s3vectors: vector bucket <bucket>-vectors, index images."""
        return f"s3vectors://{self.bucket}-vectors/images"


def repo_root() -> Path:
    """The source checkout holding lambdas/ and stacks/ next to the imgsearch package."""
    import imgsearch

    root = Path(imgsearch.__file__).resolve().parent.parent
    missing = [p for p in ("lambdas/ingest/handler.py", "stacks/wiring.py") if not (root / p).is_file()]
    if missing:
        raise LocalStackError(
            f"{root / missing[0]} not found: `imgsearch local up` runs the Lambda handlers from the "
            "repository's lambdas/ folder, so install imgsearch from a source checkout "
            "(`make setup`, i.e. `pip install -e '.[dev]'` in the repository)"
        )
    return root


def port_taken(flag: str, port: int) -> str:
    """What to do when `port` (given by `flag`) is in use, e.g. "port 4566 is in use (is LocalStack
    running?): pass --s3-port N"."""
    who = KNOWN_PORTS.get(port)
    return f"port {port} is in use" + (f" (is {who} running?)" if who else "") + f": pass {flag} N"


def port_free(port: int) -> bool:
    """Whether a server can listen on the port now (connections of a stopped run in TIME_WAIT do not count:
    the servers set SO_REUSEADDR, and so does this check)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


_sequencer_lock = threading.Lock()
_last_sequencer = [0]


def next_sequencer() -> str:
    """A sequencer greater than every one this process gave before (time-based: it grows across restarts)."""
    with _sequencer_lock:
        _last_sequencer[0] = max(_last_sequencer[0] + 1, time.time_ns())
        return f"{_last_sequencer[0]:020X}"


def patch_moto_sequencer() -> None:
    """Give moto's S3 event records the `sequencer` real S3 always sends (moto 5.2 leaves it out).

    The index orders changes to one key by sequencer (a delete hides only older uploads); without it a
    key deleted once could never come back. Values grow with time, so they also grow across restarts.
    """
    from moto.s3 import notifications

    original = notifications._get_s3_event
    if getattr(original, "imgsearch_sequencer", False):
        return

    def with_sequencer(*args: Any, **kwargs: Any) -> dict[str, Any]:
        event: dict[str, Any] = original(*args, **kwargs)
        value = next_sequencer()
        for record in event.get("Records", []):
            record["s3"]["object"].setdefault("sequencer", value)
        return event

    with_sequencer.imgsearch_sequencer = True  # type: ignore[attr-defined]
    notifications._get_s3_event = with_sequencer


def removed_event(bucket: str, key: str) -> str:
    """The body S3 sends to SQS when an object is deleted (for a delete the stack must replay itself)."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "eventName": "ObjectRemoved:Delete",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "sequencer": next_sequencer()},
        },
    }
    return json.dumps({"Records": [record]})


def content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def safe_path(folder: Path, key: str) -> Path | None:
    """Where key is mirrored under folder; None for keys that would escape it."""
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return folder.joinpath(*parts)


def handler_environments(
    config: Any,
    *,
    index_uri: str,
    images_bucket: str,
    index_backend: str,
    vector_index_arn: str,
    model_dir: str,
    thumbnail_uri: str = "",
) -> dict[Any, dict[str, str]]:
    """Each handler's environment (stacks.wiring.FunctionSpec → variables), built from the stage settings
    (`config`, a stacks.config.StageConfig) by the builders the CDK constructs use, as the CDK stack sets it
    but for where the index and model are. No COMPACT_FUNCTION_NAME: the compaction worker runs on a timer.
    With an S3 Vectors index there is no compaction function, as in the CDK stack."""
    from stacks import wiring

    backend = {"index_backend": index_backend, "vector_index_arn": vector_index_arn, "thumbnail_uri": thumbnail_uri}
    environments = {
        wiring.INGEST: wiring.ingest_environment(
            index_uri=index_uri,
            code_bits=config.codeBits,
            watch_prefixes=config.watched_prefixes,
            watch_suffixes=config.watched_suffixes,
            **backend,
        ),
        wiring.QUERY: wiring.query_environment(
            index_uri=index_uri,
            images_bucket=images_bucket,
            default_metric=config.defaultMetric,
            presign_seconds=config.presignSeconds,
            cors_origins=config.corsOrigins,
            watch_prefixes=config.watched_prefixes,
            watch_suffixes=config.watched_suffixes,
            **backend,
        ),
    }
    if index_backend != "s3vectors":
        environments[wiring.COMPACT] = wiring.compact_environment(
            index_uri=index_uri, retired_grace_days=config.retiredGraceDays
        )
    return {
        spec: wiring.function_environment(spec, environment, model_dir=model_dir)
        for spec, environment in environments.items()
    }


class LocalStack:
    def __init__(self, options: Options, *, out: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.out = out or (lambda line: print(line, flush=True))
        self.api_key = options.api_key or secrets.token_urlsafe(24)
        self.stopping = threading.Event()
        self._stops: list[Callable[[], None]] = []
        self.modules: dict[str, ModuleType] = {}

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.options.s3_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.options.api_port}"

    # --- start --------------------------------------------------------------------------------------

    def start(self) -> None:
        o = self.options
        root = repo_root()
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        from stacks import wiring
        from stacks.config import ContextError, from_cdk_json

        from ..modelspec import default_model_dir

        try:
            self.config = config = from_cdk_json(root / "cdk.json")
        except ContextError as error:
            raise LocalStackError(f"cdk.json: {error}") from None
        model_dir = default_model_dir()
        if not (model_dir / "model.json").is_file():
            raise LocalStackError(
                f"no model at {model_dir}: build it with `imgsearch build-model` (make setup)"
            )
        if o.seed is not None and not o.seed.is_dir():
            raise LocalStackError(f"--seed {o.seed} is not a folder")
        if o.existing is not None and not o.existing.is_dir():
            raise LocalStackError(f"--existing {o.existing} is not a folder")
        for name, port in (("--s3-port", o.s3_port), ("--api-port", o.api_port)):
            if not port_free(port):
                raise LocalStackError(port_taken(name, port))
        from ..backend import check_backend
        from ..errors import BadParameter

        try:
            check_backend(o.index_backend)
        except BadParameter as error:
            raise LocalStackError(f"--index-backend: {error}") from None
        vectors = o.index_backend == "s3vectors"
        if vectors and o.data is not None:
            raise LocalStackError(
                "--data keeps a segment index on disk, but moto keeps S3 Vectors in memory: "
                "drop --data, or use --index-backend segments"
            )
        data = o.data.resolve() if o.data else None
        if data is not None:
            self._check_data_dir(data)

        self._isolate_environment()
        patch_moto_sequencer()
        from .s3vectors_query import install as install_query_vectors

        install_query_vectors()  # moto has S3 Vectors without QueryVectors; before the server's first request
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address=HOST, port=o.s3_port, verbose=False)
        moto.start()

        def stop_moto() -> None:
            moto.stop()
            moto._server.server_close()  # type: ignore[union-attr]  # moto's stop leaves the socket open

        self._stops.append(stop_moto)

        import boto3

        self.s3 = s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION)
        sqs = boto3.client("sqs", endpoint_url=self.endpoint, region_name=REGION)
        s3.create_bucket(Bucket=o.bucket)
        self.vector_index_arn = ""
        self.thumbnail_uri = ""  # beside the index, but for S3 Vectors: a bucket of their own, as the stack makes
        if vectors:
            self.index_uri = ""  # no segment index: the functions get VECTOR_INDEX_ARN instead
            self.vector_index_arn = self._create_vector_index(model_dir)
            s3.create_bucket(Bucket=f"{o.bucket}-thumbnails")
            self.thumbnail_uri = f"s3://{o.bucket}-thumbnails"
        elif data is None:
            index_bucket = f"{o.bucket}-index"
            s3.create_bucket(Bucket=index_bucket)
            self.index_uri = wiring.index_uri(index_bucket)
        else:
            self.index_uri = str(data / "index")
        dead = sqs.create_queue(
            QueueName=f"{o.bucket}-ingest-dead-letters",
            Attributes={"MessageRetentionPeriod": str(wiring.DEAD_LETTER_RETENTION_DAYS * 86400)},
        )["QueueUrl"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        queue_url = sqs.create_queue(
            QueueName=f"{o.bucket}-ingest",
            Attributes={
                "VisibilityTimeout": str(wiring.visibility_timeout_seconds(config.ingestTimeoutSeconds)),
                "MessageRetentionPeriod": str(wiring.QUEUE_RETENTION_DAYS * 86400),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(config.maxReceiveCount)}
                ),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.queue_url, self.dead_letters_url = queue_url, dead
        self.sqs = sqs
        if data is not None:
            # Last thing before moto stops (the stops later inserted at the front run first): the mirror
            # takes the bucket's state, whatever the ingest worker had seen of it.
            self._stops.insert(0, lambda: self._sync_mirror(data / "images"))

        restored: dict[str, str] = {}
        if data is not None:
            restored = self._restore(data / "images")
        if o.existing is not None:
            self._put_existing(o.existing)

        # One notification per watched prefix × suffix, as the CDK stack makes (stacks/ingest.py).
        queue_configs: list[dict[str, Any]] = []
        for prefix, suffix in wiring.watch_filters(config.watched_prefixes, config.watched_suffixes):
            queue_config: dict[str, Any] = {"QueueArn": queue_arn, "Events": list(wiring.NOTIFICATION_EVENTS.values())}
            rules = wiring.notification_filter_rules(prefix, suffix)
            if rules:
                queue_config["Filter"] = {"Key": {"FilterRules": rules}}
            queue_configs.append(queue_config)
        s3.put_bucket_notification_configuration(
            Bucket=o.bucket, NotificationConfiguration={"QueueConfigurations": queue_configs}
        )

        environments = handler_environments(
            config,
            index_uri=self.index_uri,
            images_bucket=o.bucket,
            index_backend=o.index_backend,
            vector_index_arn=self.vector_index_arn,
            model_dir=str(model_dir),
            thumbnail_uri=self.thumbnail_uri,
        )
        base = dict(os.environ)
        # only the stack says where the index is
        where = (settings.INDEX_URI.env, settings.INDEX_BACKEND.env, settings.VECTOR_INDEX_ARN.env, settings.THUMBNAIL_URI.env)
        inherited = {name: value for name, value in base.items() if name not in where}
        for spec, environment in environments.items():
            os.environ.clear()
            os.environ.update({**inherited, **environment})
            try:
                self.modules[spec.name] = importlib.import_module(spec.module)
            except Exception as error:
                raise LocalStackError(
                    f"the {spec.name} handler ({spec.module}) failed to start: {error}"
                ) from error
        os.environ.clear()
        os.environ.update(base)

        from .workers import CompactionWorker, IngestWorker

        self.ingest = IngestWorker(
            sqs=sqs,
            queue_url=queue_url,
            queue_arn=queue_arn,
            handler=getattr(self.modules["ingest"], wiring.INGEST.handler.rsplit(".", 1)[1]),
            batch_size=config.batchSize,
            batch_window_seconds=config.batchWindowSeconds,
            timeout_seconds=config.ingestTimeoutSeconds,
            before=(lambda records: self._mirror(data / "images", records)) if data is not None else None,
        )
        self.ingest.start()
        self._stops.insert(0, self.ingest.stop)
        if "compact" in self.modules:
            compaction = CompactionWorker(
                handler=getattr(self.modules["compact"], wiring.COMPACT.handler.rsplit(".", 1)[1]),
                every=o.compact_every,
                timeout_seconds=config.compactTimeoutSeconds,
            )
            compaction.start()
            self._stops.insert(0, compaction.stop)

        if data is not None:
            self._reconcile(restored)
        if o.seed is not None:
            self._seed(o.seed)
        if o.backfill:
            threading.Thread(target=self._backfill, name="backfill", daemon=True).start()

        from .api import LocalApi

        api = LocalApi(
            handler=getattr(self.modules["query"], wiring.QUERY.handler.rsplit(".", 1)[1]),
            api_key=self.api_key,
            routes=wiring.ROUTES,
            binary_media_types=wiring.BINARY_MEDIA_TYPES,
            port=o.api_port,
            timeout_seconds=config.queryTimeoutSeconds,
        )
        api.start()
        self._stops.insert(0, api.stop)
        self._banner()

    def _create_vector_index(self, model_dir: Path) -> str:
        """The S3 Vectors index of --index-backend s3vectors, made as the CDK stack makes it; its ARN."""
        from ..modelspec import ModelSpec
        from ..s3vectors import S3VectorsBackend

        index = S3VectorsBackend.open(self.options.vector_index, endpoint_url=self.endpoint, region=REGION)
        index.create(dimension=ModelSpec.load(model_dir).output_dim)
        return str(index.info()["indexArn"])

    def _isolate_environment(self) -> None:
        """Fake credentials and moto's endpoint for every boto3 client, whatever the user's AWS set-up."""
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,  # boto3 >= 1.28 reads it for every client
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
                "POWERTOOLS_METRICS_DISABLED": "true",  # no CloudWatch: keep EMF lines off the console
                "POWERTOOLS_LOG_LEVEL": self.options.log_level.upper(),
                "POWERTOOLS_DEV": "false",
                # Not set by the CDK stack (the handler's default is 5 s): new images show up within a second.
                settings.REFRESH_SECONDS.env: os.environ.get(settings.REFRESH_SECONDS.env, "1"),
            }
        )

    # --- --data: the index on disk and a mirror of the images ---------------------------------------

    def _check_data_dir(self, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        marker = data / "local-stack.json"
        if marker.is_file():
            bucket = json.loads(marker.read_text()).get("bucket")
            if bucket != self.options.bucket:
                raise LocalStackError(
                    f"--data {data} holds the bucket {bucket!r}, not {self.options.bucket!r}: "
                    f"pass --bucket {bucket} or another --data folder"
                )
        else:
            marker.write_text(json.dumps({"bucket": self.options.bucket}) + "\n")
        (data / "images").mkdir(exist_ok=True)

    def _restore(self, folder: Path) -> dict[str, str]:
        """Put the mirrored images back (before the notification exists: no events). key → etag."""
        restored: dict[str, str] = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.name.endswith(PARTIAL):  # a copy cut short by a kill: the next sync rewrites it
                path.unlink(missing_ok=True)
                continue
            key = path.relative_to(folder).as_posix()
            body = path.read_bytes()
            self.s3.put_object(Bucket=self.options.bucket, Key=key, Body=body, ContentType=content_type(key))
            restored[key] = hashlib.md5(body).hexdigest()
        if restored:
            self.out(f"restored {len(restored)} image(s) from {folder}")
        return restored

    def _reconcile(self, restored: dict[str, str]) -> None:
        """Re-send S3 events for what the index lacks, holds stale or holds though the bucket does not."""
        from ..errors import IndexNotFound
        from ..index import ImageIndex
        from ..search import Searcher

        searcher = Searcher(ImageIndex.open(self.index_uri))
        try:
            searcher.refresh(force=True)
            live = {k: r for k, r in searcher.live_refs().items() if r.bucket == self.options.bucket}
        except IndexNotFound:
            live = {}
        bucket = self.options.bucket
        stale = [k for k, etag in restored.items() if k not in live or live[k].etag != etag]
        gone = [k for k in live if k not in restored]
        for key in stale:  # the same bytes again: ObjectCreated → the ingest worker indexes it
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type(key))
        for start in range(0, len(gone), 10):  # the ObjectRemoved event S3 would have sent → a tombstone
            self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": removed_event(bucket, key)}
                    for i, key in enumerate(gone[start : start + 10])
                ],
            )
        if stale or gone:
            self.out(f"re-sent events for {len(stale)} image(s) missing from the index, {len(gone)} removed")

    def _sync_mirror(self, folder: Path) -> None:
        """Make the mirror equal to the bucket (at a clean stop): what the next start restores."""
        from ..store import prune_empty

        bucket = self.options.bucket
        keys: dict[str, str] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.update((o["Key"], o["ETag"].strip('"')) for o in page.get("Contents", []))
        on_disk = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
        for key, stale in on_disk.items():
            if key not in keys:
                stale.unlink(missing_ok=True)
                prune_empty(stale.parent, folder)
        copied = 0
        for key, etag in keys.items():
            path = on_disk.get(key) or safe_path(folder, key)
            if path is None:
                self.out(f"warning: {key!r} cannot be mirrored under {folder}; it will not survive a restart")
                continue
            if path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() == etag:
                continue
            self._write_mirror(bucket, key, path)
            copied += 1
        self.out(f"mirror: {len(keys)} object(s) kept in {folder} ({copied} copied at stop)")

    def _write_mirror(self, bucket: str, key: str, path: Path) -> None:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            path.unlink(missing_ok=True)
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + PARTIAL)
            partial.write_bytes(body)
            partial.replace(path)
        except OSError as error:  # e.g. key "a" and key "a/b": a folder cannot also be a file
            self.out(f"warning: {key!r} cannot be mirrored ({error}); it will not survive a restart")

    def _mirror(self, folder: Path, records: list[dict[str, Any]]) -> None:
        """Make folder match the bucket for every key the batch names (state, not event order)."""
        from lambdas.common.s3events import MalformedEvent, parse_body

        keys: set[str] = set()
        for record in records:
            try:
                keys.update(
                    c.ref.key for c in parse_body(record["body"]) if c.ref.bucket == self.options.bucket
                )
            except MalformedEvent:
                continue
        for key in keys:
            path = safe_path(folder, key)
            if path is None:
                self.out(f"warning: {key!r} cannot be mirrored under {folder}; it will not survive a restart")
                continue
            self._write_mirror(self.options.bucket, key, path)

    # --- an existing bucket and its backfill ----------------------------------------------------------

    def _upload(self, folder: Path) -> list[Any]:
        """Every file under a folder put into the bucket (key = path relative to it); the files put."""
        from ..ingest import scan

        files = scan([folder])
        for file in files:
            self.s3.put_object(
                Bucket=self.options.bucket,
                Key=file.key,
                Body=file.path.read_bytes(),
                ContentType=content_type(file.key),
            )
        return files

    def _put_existing(self, folder: Path) -> None:
        """Objects that were in the bucket before the stack: put before the notification exists (no events)."""
        files = self._upload(folder)
        self.out(
            f"existing: {len(files)} object(s) from {folder} put into s3://{self.options.bucket}/ without "
            "notifications (not indexed until a backfill)"
        )

    def _backfill(self) -> None:
        """`imgsearch backfill` of the whole bucket through the local ingest queue (progress every 5 s)."""
        import tempfile

        from ..backfill import Checkpoint, Plan, Progress, Queue, backfill
        from ..index import ImageIndex
        from ..known import Known

        plan = Plan(bucket=self.options.bucket, queue_url=self.queue_url, rate=0, max_queued=100)
        with tempfile.TemporaryDirectory(prefix="imgsearch-backfill-") as folder:
            checkpoint = Checkpoint.open(Path(folder) / "state.json", plan, restart=True)

            def show(p: Progress) -> None:
                self.out(
                    f"backfill: listed {p.listed}, skipped {p.skipped}, queued {p.queued}, "
                    f"indexed +{p.indexed}, rejected +{p.rejected}, in queue {p.in_queue}"
                )

            try:
                # Same-ETag objects are skipped by what a segment index knows; on S3 Vectors every object is
                # queued (the ordering rule skips what is already held).
                known = Known.load(ImageIndex.open(self.index_uri)) if self.index_uri else None
                done = backfill(
                    s3=self.s3,
                    queue=Queue(self.sqs, self.queue_url),
                    plan=plan,
                    checkpoint=checkpoint,
                    known=known,
                    report=show,
                    report_every=5.0,
                    wait=True,
                )
            except Exception as error:  # e.g. stopped meanwhile: the endpoint is gone
                if not self.stopping.is_set():
                    self.out(f"backfill failed: {error}")
                return
        show(done)
        self.out("backfill: done")

    # --- seed and banner ----------------------------------------------------------------------------

    def _seed(self, folder: Path) -> None:
        files = self._upload(folder)
        self.out(f"seeded {len(files)} file(s) from {folder} into s3://{self.options.bucket}/ (indexing now)")

    def _banner(self) -> None:
        o = self.options
        key = self.api_key
        where = f"{o.data.resolve()} (kept between runs)" if o.data else "in memory (gone when stopped)"
        lines = [
            "",
            "imgsearch local stack is up",
            f"  search page   {self.api_url}/#key={key}",
            f"  API           {self.api_url}   (x-api-key: {key})",
            f"  S3 + SQS      {self.endpoint}   (moto; any credentials)",
            f"  bucket        s3://{o.bucket}/",
            f"  index         {self.index_uri or o.vector_index + '  (S3 Vectors in moto)'}",
            f"  state         {where}",
            "",
            "upload an image:",
            f"  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws s3 cp photo.jpg s3://{o.bucket}/photo.jpg "
            f"--endpoint-url {self.endpoint} --region {REGION}",
            "search with it:",
            f"  curl -s -H 'x-api-key: {key}' -H 'Content-Type: image/jpeg' --data-binary @photo.jpg "
            f"'{self.api_url}/search?k=5'",
            "health:",
            f"  curl -s -H 'x-api-key: {key}' {self.api_url}/health",
            "",
            "Ctrl-C stops everything.",
        ]
        self.out("\n".join(lines))

    # --- run and stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        for stop in self._stops:
            try:
                stop()
            except Exception as error:  # keep stopping the rest
                print(f"while stopping: {error}", file=sys.stderr)
        self._stops.clear()

    def _watch_parent(self) -> None:
        """With IMGSEARCH_LOCAL_PARENT_PID set (the tests do), stop when that process is gone."""
        text = os.environ.get("IMGSEARCH_LOCAL_PARENT_PID", "")
        if not text.isdigit():
            return
        parent = int(text)

        def watch() -> None:
            while not self.stopping.wait(1.0):
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    self.out(f"parent process {parent} is gone: stopping")
                    self.stopping.set()
                except PermissionError:
                    pass

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()

    def run(self) -> None:
        """Start, then block until Ctrl-C or SIGTERM; always stop what was started."""

        def ask_to_stop(signum: int, _frame: Any) -> None:
            self.stopping.set()

        previous = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        self._watch_parent()
        try:
            self.start()
            while not self.stopping.wait(0.5):
                pass
            self.out("stopping…")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.out("stopped")
