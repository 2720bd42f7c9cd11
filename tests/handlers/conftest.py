"""A local AWS for the handlers: moto's server on 127.0.0.1 with the images bucket, the index bucket,
the ingest queue and the S3 → SQS notification, and the real handlers imported against it.

The `aws` fixture runs a test once per index backend (`[segments]`, `[s3vectors]`): the ingest and query
handlers are imported twice, once with INDEX_URI (segments) and once with INDEX_BACKEND=s3vectors and
VECTOR_INDEX_ARN (an S3 Vectors index in the same moto server). What S3 Vectors does differently is
marked: `segments_only(reason)` and `s3vectors_only` (docs/S3VECTORS.md, "When to choose").

Everything here is package-scoped: the environment it sets is restored before other test packages run.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from imgsearch.modelspec import default_model_dir

from ..imagegen import synthetic_image

EVENTS = Path(__file__).resolve().parents[1] / "events"
ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
BACKENDS = ("segments", "s3vectors")
VECTOR_INDEX = "s3vectors://imgsearch-vectors-test/images"
THUMBNAILS_BUCKET = "imgsearch-thumbnails-test"  # the S3 Vectors handlers' THUMBNAIL_URI


def segments_only(reason: str) -> pytest.MarkDecorator:
    """Run a test on the segment backend only; the id says what S3 Vectors does instead."""
    return pytest.mark.parametrize("backend", [pytest.param("segments", id=f"segments-only: {reason}")])


s3vectors_only = pytest.mark.parametrize("backend", ["s3vectors"])


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@dataclass
class FakeContext:
    """What Powertools reads from the Lambda context."""

    function_name: str = "imgsearch-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:imgsearch-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/imgsearch-test"
    log_stream_name: str = "2025/03/14/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def make_image(seed: int, *, size: int = 128, fmt: str = "PNG") -> bytes:
    """A small image whose content differs clearly from every other seed's."""
    return synthetic_image(seed, size=size, fmt=fmt)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalAws:
    endpoint: str
    images_bucket: str
    index_bucket: str
    queue_url: str
    queue_arn: str
    s3: Any
    sqs: Any
    ingest: ModuleType
    query: ModuleType
    compact: ModuleType  # the segment index's compaction (the s3vectors stack has none)
    backend: str = "segments"

    # --- S3 → SQS → ingest -------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        return dict(self.s3.put_object(Bucket=self.images_bucket, Key=key, Body=data))

    def drain(self) -> list[dict[str, Any]]:
        """Every message waiting in the ingest queue, as Lambda's SQS event records."""
        records = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            )
            messages = got.get("Messages", [])
            if not messages:
                return records
            for message in messages:
                records.append(
                    {
                        "messageId": message["MessageId"],
                        "receiptHandle": message["ReceiptHandle"],
                        "body": message["Body"],
                        "attributes": message.get("Attributes", {}),
                        "messageAttributes": {},
                        "md5OfBody": message["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": self.queue_arn,
                        "awsRegion": REGION,
                    }
                )
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def ingest_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self.ingest.handler({"Records": records}, FakeContext())
        return result

    def ingest_queue(self) -> dict[str, Any]:
        """Deliver everything waiting in the queue to the ingest handler as one batch."""
        return self.ingest_records(self.drain())

    def count(self) -> int:
        """Live images: GET /health's count, or (S3 Vectors, whose count is null) every vector listed."""
        status, health = self.api("apigw_rest_health.json")
        assert status == 200, health
        if health["count"] is None:
            return int(self.query.backend.scan_count())
        return int(health["count"])

    # --- API Gateway → query -----------------------------------------------------------------------

    def api(
        self,
        sample: str,
        *,
        body: bytes | str | None = None,
        content_type: str | None = None,
        query: dict[str, str] | None = None,
        path: str | None = None,
        key: str | None = None,
        content_type_header: str = "Content-Type",
    ) -> tuple[int, dict[str, Any]]:
        event = load_event(sample)
        if body is not None:
            if isinstance(body, bytes):
                import base64

                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
            else:
                event["body"], event["isBase64Encoded"] = body, False
        if content_type is not None:
            for name in ("Content-Type", "content-type"):
                event["headers"].pop(name, None)
                event["multiValueHeaders"].pop(name, None)
            event["headers"][content_type_header] = content_type
            event["multiValueHeaders"][content_type_header] = [content_type]
        if query is not None:
            event["queryStringParameters"] = query or None
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
        if path is not None:
            event["path"] = path
            event["requestContext"]["path"] = "/dev" + path
        if key is not None:
            event["pathParameters"] = {"key": key}
        response = self.query.handler(event, FakeContext())
        return int(response["statusCode"]), json.loads(response["body"])


def s3_event(
    sample: str,
    *,
    bucket: str,
    key: str,
    sequencer: str,
    etag: str | None = None,
    size: int | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """One SQS record built from a real sample, with the object fields replaced (key URL-encoded)."""
    record = copy.deepcopy(load_event(sample)["Records"][0])
    body = json.loads(record["body"])
    s3 = body["Records"][0]["s3"]
    s3["bucket"]["name"], s3["bucket"]["arn"] = bucket, f"arn:aws:s3:::{bucket}"
    s3["object"]["key"], s3["object"]["sequencer"] = quote_plus(key), sequencer
    if etag is not None:
        s3["object"]["eTag"] = etag
    if size is not None:
        s3["object"]["size"] = size
    record["body"] = json.dumps(body)
    record["messageId"] = message_id or str(uuid.uuid4())
    return record


def load_handler(name: str, environment: dict[str, str], *, suffix: str) -> ModuleType:
    """lambdas/<name>/handler.py imported as a module of its own (lambdas.<name>.handler_<suffix>), with
    these environment variables during its cold start: a second copy next to the usual one."""
    module_name = f"lambdas.{name}.handler_{suffix}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "lambdas" / name / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environment)
    sys.modules[module_name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


@pytest.fixture(scope="package")
def local_aws() -> Iterator[LocalAws]:
    from moto.server import ThreadedMotoServer

    from imgsearch.local import s3vectors_query

    s3vectors_query.install()  # before the server's first S3 Vectors request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    images_bucket, index_bucket = "imgsearch-images-test", "imgsearch-index-test"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "imgsearch",
        "POWERTOOLS_METRICS_NAMESPACE": "ImgSearchTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "INDEX_URI": f"s3://{index_bucket}/index",
        "IMAGES_BUCKET": images_bucket,
        "MODEL_DIR": str(default_model_dir()),
        "PRESIGN_SECONDS": "300",
        "DEFAULT_METRIC": "hybrid",
        "REFRESH_SECONDS": "0",
        "IMGSEARCH_THREADS": "1",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        s3.create_bucket(Bucket=images_bucket)
        s3.create_bucket(Bucket=index_bucket)
        queue_url = sqs.create_queue(QueueName="imgsearch-ingest")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3.put_bucket_notification_configuration(
            Bucket=images_bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        modules = {
            name: importlib.reload(importlib.import_module(f"lambdas.{name}.handler"))
            for name in ("ingest", "query", "compact")
        }
        yield LocalAws(
            endpoint=endpoint,
            images_bucket=images_bucket,
            index_bucket=index_bucket,
            queue_url=queue_url,
            queue_arn=queue_arn,
            s3=s3,
            sqs=sqs,
            **modules,
        )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture(scope="package")
def local_aws_s3vectors(local_aws: LocalAws) -> Iterator[LocalAws]:
    """The same local AWS with ingest and query handlers on an S3 Vectors index (INDEX_BACKEND=s3vectors)."""
    from imgsearch.modelspec import ModelSpec
    from imgsearch.s3vectors import S3VectorsBackend
    from stacks.wiring import backend_environment

    index = S3VectorsBackend.open(VECTOR_INDEX, endpoint_url=local_aws.endpoint, region=REGION)
    index.create(dimension=ModelSpec.load(default_model_dir()).output_dim)
    local_aws.s3.create_bucket(Bucket=THUMBNAILS_BUCKET)  # as the stack gives an index off S3 (storage.py)
    environment = {
        **{name: value for name, value in os.environ.items() if name != "INDEX_URI"},
        **backend_environment(index_backend="s3vectors", vector_index_arn=index.info()["indexArn"]),
        "THUMBNAIL_URI": f"s3://{THUMBNAILS_BUCKET}",
    }
    modules = {name: load_handler(name, environment, suffix="s3vectors") for name in ("ingest", "query")}
    yield dataclasses.replace(local_aws, **modules, backend="s3vectors")
    for name in modules:
        sys.modules.pop(f"lambdas.{name}.handler_s3vectors", None)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The index backend a test runs on (override with segments_only / s3vectors_only)."""
    return str(request.param)


@pytest.fixture
def aws(backend: str, request: pytest.FixtureRequest) -> LocalAws:
    """The local AWS on this backend with empty buckets, an empty index and queue, fresh handler state."""
    from imgsearch.backend import SegmentBackend

    local: LocalAws = request.getfixturevalue("local_aws" if backend == "segments" else "local_aws_s3vectors")
    for bucket in (local.images_bucket, local.index_bucket):
        listed = local.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        for obj in listed:
            local.s3.delete_object(Bucket=bucket, Key=obj["Key"])
    local.drain()
    local.ingest._ensured = False
    if backend == "segments":
        local.query.backend = SegmentBackend(local.query.backend.index, refresh_seconds=0)
        local.compact.index = local.query.backend.index.__class__.open(os.environ["INDEX_URI"])
    else:
        vectors = local.query.backend
        keys = list(vectors.keys())
        for start in range(0, len(keys), 500):
            vectors.client.delete_vectors(**vectors.where.params, keys=keys[start : start + 500])
    return local
