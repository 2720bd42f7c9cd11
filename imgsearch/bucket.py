"""S3 sources: `s3://bucket[/prefix]` parsed, listed a page at a time, read bounded; AWS errors explained.

The CLI's `index` and `backfill` read buckets through these functions, so both list the same objects,
record the same ETags and turn the same AWS errors into messages that say what to do. boto3 is
imported inside the functions: the core package imports without the AWS SDK.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import ImgSearchError, InvalidImage
from .segment import ObjectRef

SCHEME = "s3://"
PAGE_SIZE = 1000  # ListObjectsV2's maximum: 1,000 keys per request
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]$")


class SourceError(ImgSearchError):
    """A bucket, prefix or queue that cannot be used (the message says why and what to do)."""


def is_s3(text: object) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class S3Source:
    """A bucket and a key prefix ("" for the whole bucket)."""

    bucket: str
    prefix: str = ""

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"

    @classmethod
    def parse(cls, text: str) -> S3Source:
        """`s3://bucket`, `s3://bucket/` or `s3://bucket/some/prefix` (the prefix is kept as written).

        >>> S3Source.parse("s3://photos/2024/")
        S3Source(bucket='photos', prefix='2024/')
        """
        if not is_s3(text):
            raise SourceError(f"{text!r} is not an S3 location: write s3://BUCKET or s3://BUCKET/PREFIX")
        bucket, _, prefix = text[len(SCHEME) :].partition("/")
        if not BUCKET_NAME.match(bucket):
            raise SourceError(
                f"{text!r}: {bucket!r} is not a valid bucket name (3-255 characters: lowercase letters, "
                "digits, dots, hyphens); write s3://BUCKET/PREFIX"
            )
        return cls(bucket, prefix)

    def name(self, key: str) -> str:
        return f"{SCHEME}{self.bucket}/{key}"


@dataclass(frozen=True)
class Listed:
    """One object as ListObjectsV2 reports it (ETag without its quotes, LastModified as epoch seconds)."""

    key: str
    etag: str
    size: int
    time: float

    def ref(self, bucket: str, *, sequencer: str) -> ObjectRef:
        return ObjectRef(
            bucket=bucket, key=self.key, etag=self.etag, size=self.size, sequencer=sequencer, time=self.time
        )


def client(service: str, *, endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 client with standard retries (throttling backs off instead of failing the run)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=32)
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)


def list_pages(
    s3: Any, source: S3Source, *, start_after: str = "", page_size: int = PAGE_SIZE
) -> Iterator[list[Listed]]:
    """The objects under the source, one ListObjectsV2 page (up to `page_size` keys) at a time, in key order.

    `start_after` resumes a listing after that key. Raises SourceError for a bucket that does not
    exist, missing permission or an endpoint that cannot be reached.
    """
    args: dict[str, Any] = {"Bucket": source.bucket, "PaginationConfig": {"PageSize": page_size}}
    if source.prefix:
        args["Prefix"] = source.prefix
    if start_after:
        args["StartAfter"] = start_after
    pages = iter(s3.get_paginator("list_objects_v2").paginate(**args))
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except Exception as error:
            raise explain(error, action="list", target=source.uri) from None
        yield [
            Listed(
                key=item["Key"],
                etag=str(item.get("ETag", "")).strip('"'),
                size=int(item.get("Size", 0)),
                time=item["LastModified"].timestamp() if "LastModified" in item else time.time(),
            )
            for item in page.get("Contents", [])
        ]


def read_object(s3: Any, bucket: str, key: str, *, etag: str, limit: int) -> bytes | None:
    """The bytes of exactly the listed version (GET If-Match: etag), at most `limit` + 1 of them read.

    None if the object was deleted or replaced since it was listed (a later run, or its S3 event,
    takes the new version). InvalidImage (code "too_large") over `limit`.
    """
    from botocore.exceptions import ClientError

    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        args["IfMatch"] = etag
    try:
        with s3.get_object(**args)["Body"] as body:
            data: bytes = body.read(limit + 1)
    except ClientError as error:
        if _code(error) in ("NoSuchKey", "PreconditionFailed") or _status(error) in (404, 412):
            return None
        raise explain(error, action="read", target=f"{SCHEME}{bucket}/{key}") from None
    if len(data) > limit:
        raise InvalidImage(f"object is over the {limit}-byte limit", code="too_large")
    return data


def check_bucket(s3: Any, source: S3Source) -> None:
    """Fail early, with a message saying what to do, if the source's bucket cannot be listed."""
    args: dict[str, Any] = {"Bucket": source.bucket, "MaxKeys": 1}
    if source.prefix:
        args["Prefix"] = source.prefix
    try:
        s3.list_objects_v2(**args)
    except Exception as error:
        raise explain(error, action="list", target=source.uri) from None


def explain(error: Exception, *, action: str, target: str) -> Exception:
    """A SourceError that says what went wrong with `action` on `target` and what to do; other errors as they are."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return SourceError(
            f"cannot {action} {target}: no AWS credentials found; configure them (aws configure, "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(error, NoRegionError):
        return SourceError(
            f"cannot {action} {target}: no AWS region set; set AWS_REGION or AWS_DEFAULT_REGION"
        )
    if isinstance(error, EndpointConnectionError):
        return SourceError(f"cannot {action} {target}: {error}; check --endpoint-url and the network")
    if not isinstance(error, ClientError):
        return error
    code, status = _code(error), _status(error)
    bucket = target[len(SCHEME) :].split("/", 1)[0] if is_s3(target) else ""
    if code == "NoSuchBucket" or (status == 404 and action == "list"):
        return SourceError(
            f"cannot {action} {target}: the bucket {bucket!r} does not exist (check its name, "
            "the account and --endpoint-url)"
        )
    if (
        code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch")
        or status == 403
    ):
        needed = {
            "list": f"s3:ListBucket on arn:aws:s3:::{bucket}",
            "read": f"s3:GetObject on arn:aws:s3:::{bucket}/*",
        }.get(action, "the permission for this call")
        return SourceError(f"cannot {action} {target}: access denied ({code}); the credentials need {needed}")
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
        return SourceError(
            f"cannot {action} {target}: the bucket is in another region ({code}); set AWS_REGION to it"
        )
    return SourceError(f"cannot {action} {target}: {code or status}: {error}")


def _code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: Any) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
