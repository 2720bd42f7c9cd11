"""Where an index lives: immutable objects plus one manifest changed only by compare-and-swap.

Two stores share one interface: a local directory (CAS by lock file + atomic rename, also right
for EFS) and S3 (conditional PutObject with If-Match / If-None-Match).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import hugepages, s3read
from .errors import ConflictError, ObjectNotFound

MANIFEST = "manifest.json"
RETIRED_TAG = {"Key": "imgsearch-retired", "Value": "true"}
THUMBNAIL_PREFIX = "thumbs/"  # thumbnails in a store (imgsearch.thumbnails); the stack grants on it


class Store(ABC):
    """Storage of one index. Object names are relative paths like `segments/<id>/query.npz`."""

    uri: str

    @abstractmethod
    def read(self, name: str) -> bytes:
        """The bytes of an immutable object (ObjectNotFound when missing)."""

    @abstractmethod
    def write(self, name: str, data: bytes) -> None:
        """Write an immutable object (the name must be new)."""

    @abstractmethod
    def read_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        """(bytes, etag) of the manifest; None if it is missing or still has etag `if_none_match`."""

    @abstractmethod
    def write_manifest(self, data: bytes, *, expected: str | None) -> str:
        """Replace the manifest if its etag is still `expected` (None: only if none exists yet).

        Returns the new etag; raises ConflictError when another writer got there first.
        """

    @abstractmethod
    def retire(self, names: Iterable[str]) -> None:
        """Mark objects no manifest refers to any more; they are removed after a grace period."""

    @abstractmethod
    def names(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        """Names of the objects under `prefix` (retired ones included until removed), in sorted order."""

    def size(self, name: str) -> int:
        return len(self.read(name))

    def local_path(self, name: str) -> Path | None:
        """Where the object is on local disk (so it can be memory-mapped), or None for a remote store."""
        return None

    def write_array(self, name: str, array: np.ndarray) -> None:
        """Write an immutable .npy object."""
        buffer = io.BytesIO()
        np.save(buffer, array)
        self.write(name, buffer.getbuffer().tobytes())


class LocalStore(Store):
    """A directory (local disk or EFS). Readers never see a half-written file."""

    def __init__(self, root: Path | str, *, grace_seconds: float = 3600.0) -> None:
        self.root = Path(root)
        self.uri = str(self.root)
        self.grace_seconds = grace_seconds

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"object name {name!r} escapes the index directory")
        return path

    def local_path(self, name: str) -> Path | None:
        path = self._path(name)
        if not path.is_file():
            raise ObjectNotFound(f"{name} is missing from {self.root}")
        return path

    def read(self, name: str) -> bytes:
        """The file's bytes; a large one into a huge-page buffer, as S3Store reads it (hugepages.py)."""
        path = self._path(name)
        try:
            return hugepages.read_file(str(path), path.stat().st_size)  # type: ignore[return-value]  # bytes-like
        except FileNotFoundError:
            raise ObjectNotFound(f"{name} is missing from {self.root}") from None

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"{name} is missing from {self.root}") from None

    def write(self, name: str, data: bytes) -> None:
        _atomic_write(self._path(name), data)

    def write_array(self, name: str, array: np.ndarray) -> None:
        _atomic_write(self._path(name), lambda handle: np.save(handle, array))  # streamed: no copy in memory

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".manifest.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        try:
            data = (self.root / MANIFEST).read_bytes()
        except FileNotFoundError:
            return None
        etag = _etag(data)
        return None if etag == if_none_match else (data, etag)

    def write_manifest(self, data: bytes, *, expected: str | None) -> str:
        with self._locked():
            current = self.read_manifest()
            current_etag = current[1] if current else None
            if current_etag != expected:
                raise ConflictError(f"manifest changed (expected {expected}, found {current_etag})")
            _atomic_write(self.root / MANIFEST, data)
        return _etag(data)

    def names(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        top = self.root / prefix
        if not top.is_dir():
            return iter(())
        found = sorted(
            p.relative_to(self.root).as_posix()
            for p in top.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")  # a write in progress (or cut short)
        )
        return (name for name in found if name > start_after)

    def remove_temporaries(self, *, older_than: float) -> int:
        """Delete files of writes cut short (`.tmp-*`, left by a kill) last touched before `older_than`."""
        removed = 0
        for path in self.root.rglob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
        return removed

    def retire(self, names: Iterable[str]) -> None:
        bin_dir = self.root / ".retired"
        now = time.time()
        batch = bin_dir / f"{now:.6f}"
        for name in names:
            source = self._path(name)
            if source.exists():
                target = batch / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                prune_empty(source.parent, self.root)
        if bin_dir.is_dir():
            for old in bin_dir.iterdir():
                with contextlib.suppress(ValueError):
                    if now - float(old.name) > self.grace_seconds:
                        shutil.rmtree(old, ignore_errors=True)


class S3Store(Store):
    """A prefix of an S3 bucket (or any S3-compatible endpoint that honours conditional writes)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, endpoint_url: str | None = None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        from botocore.config import Config

        # a connection for each ranged GET in flight (s3read.READ_THREADS), beside botocore's default 10
        pool = Config(max_pool_connections=max(10, s3read.READ_THREADS))
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, config=pool)

    def object_key(self, name: str) -> str:
        """The S3 key of a store object (to presign it)."""
        return self._key(name)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def read(self, name: str) -> bytes:
        """The object's bytes; a large one by parallel ranged GETs (s3read.py)."""
        try:
            return s3read.read_object(self.client, self.bucket, self._key(name))
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(f"{name} is missing from {self.uri}") from None

    def size(self, name: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"])
        except ClientError as error:
            if _status(error) == 404:
                raise ObjectNotFound(f"{name} is missing from {self.uri}") from None
            raise

    def write(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def read_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        args = {"Bucket": self.bucket, "Key": self._key(MANIFEST)}
        if if_none_match:
            args["IfNoneMatch"] = if_none_match
        try:
            response = self.client.get_object(**args)
        except self.client.exceptions.NoSuchKey:
            return None
        except ClientError as error:
            if _status(error) == 304:
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def write_manifest(self, data: bytes, *, expected: str | None) -> str:
        from botocore.exceptions import ClientError

        condition = {"IfMatch": expected} if expected else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(MANIFEST),
                Body=data,
                ContentType="application/json",
                **condition,
            )
        except ClientError as error:
            # 412: the condition failed; 409: a concurrent conditional write is in flight.
            if _status(error) in (409, 412):
                raise ConflictError(f"manifest at {self.uri} changed (expected {expected})") from None
            raise
        return str(response["ETag"])

    def names(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        args = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        if start_after:
            args["StartAfter"] = self._key(start_after)
        skip = len(self._key(""))
        for page in paginator.paginate(**args):
            for item in page.get("Contents", []):
                yield item["Key"][skip:]

    def retire(self, names: Iterable[str]) -> None:
        from botocore.exceptions import ClientError

        for name in names:
            with contextlib.suppress(ClientError):
                self.client.put_object_tagging(
                    Bucket=self.bucket, Key=self._key(name), Tagging={"TagSet": [RETIRED_TAG]}
                )


def open_store(location: str | Path, *, endpoint_url: str | None = None) -> Store:
    """`s3://bucket/prefix` or a directory path.

    A directory store keeps retired objects for $IMGSEARCH_RETIRED_GRACE_SECONDS (default an hour).
    """
    text = str(location)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise ValueError(f"{text!r} names no bucket: use s3://BUCKET/PREFIX")
        return S3Store(bucket, prefix, endpoint_url=endpoint_url)
    return LocalStore(text, grace_seconds=float(os.environ.get("IMGSEARCH_RETIRED_GRACE_SECONDS", "3600")))


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _status(error: Any) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _atomic_write(path: Path, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write a new file whole or not at all (`data`: the bytes, or a function that writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def prune_empty(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents up to (not including) `root` while they are empty."""
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
