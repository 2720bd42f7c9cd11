"""LocalStore and S3Store behind one interface: immutable objects and a CAS-only manifest."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import numpy as np
import pytest

from imgsearch.errors import ConflictError, ObjectNotFound
from imgsearch.store import MANIFEST, LocalStore, S3Store, Store, open_store

PREFIX = "indexes/photos"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "index")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket, PREFIX, endpoint_url=request.getfixturevalue("moto_endpoint"))


# --- immutable objects ------------------------------------------------------------------------------


def test_given_an_object_written_when_read_then_the_same_bytes_come_back(store: Store) -> None:
    data = bytes(range(256)) * 3 + b"\x00tail"
    store.write("segments/abc/query.npz", data)
    store.write("segments/abc/raw.npy", b"other")

    assert store.read("segments/abc/query.npz") == data
    assert store.read("segments/abc/raw.npy") == b"other"
    assert store.size("segments/abc/query.npz") == len(data)


def test_given_no_such_object_when_read_then_object_not_found(store: Store) -> None:
    store.write("segments/present/query.npz", b"x")

    with pytest.raises(ObjectNotFound, match=r"segments/absent/query\.npz"):
        store.read("segments/absent/query.npz")


# --- the manifest: create once, then compare-and-swap -----------------------------------------------


def test_given_no_manifest_when_read_then_none(store: Store) -> None:
    assert store.read_manifest() is None


def test_given_no_manifest_when_created_then_it_reads_back_with_the_returned_etag(store: Store) -> None:
    etag = store.write_manifest(b'{"generation": 1}', expected=None)

    assert store.read_manifest() == (b'{"generation": 1}', etag)


def test_given_a_manifest_when_created_again_then_conflict_and_the_first_stays(store: Store) -> None:
    etag = store.write_manifest(b"first", expected=None)

    with pytest.raises(ConflictError):
        store.write_manifest(b"second", expected=None)

    assert store.read_manifest() == (b"first", etag)


def test_given_the_current_etag_when_writing_then_the_manifest_is_replaced(store: Store) -> None:
    first = store.write_manifest(b"one", expected=None)

    second = store.write_manifest(b"two", expected=first)

    assert second != first
    assert store.read_manifest() == (b"two", second)


def test_given_a_stale_etag_when_writing_then_conflict_and_the_newer_manifest_stays(store: Store) -> None:
    stale = store.write_manifest(b"one", expected=None)
    current = store.write_manifest(b"two", expected=stale)

    with pytest.raises(ConflictError):
        store.write_manifest(b"three", expected=stale)

    assert store.read_manifest() == (b"two", current)


def test_given_the_current_etag_when_read_conditionally_then_none(store: Store) -> None:
    etag = store.write_manifest(b"one", expected=None)

    assert store.read_manifest(if_none_match=etag) is None


def test_given_a_changed_manifest_when_read_conditionally_then_the_new_data_and_etag(store: Store) -> None:
    old = store.write_manifest(b"one", expected=None)
    new = store.write_manifest(b"two", expected=old)

    assert store.read_manifest(if_none_match=old) == (b"two", new)
    assert store.read_manifest(if_none_match=new) is None


# --- retiring objects no manifest refers to any more ------------------------------------------------


def test_given_a_retired_local_object_then_it_is_moved_out_of_the_index_but_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, grace_seconds=3600)
    store.write("segments/old/query.npz", b"old")
    store.write("segments/live/query.npz", b"live")

    store.retire(["segments/old/query.npz"])

    with pytest.raises(ObjectNotFound):
        store.read("segments/old/query.npz")
    assert not (tmp_path / "segments" / "old").exists(), "the emptied segment folder is pruned"
    kept = list((tmp_path / ".retired").glob("*/segments/old/query.npz"))
    assert [p.read_bytes() for p in kept] == [b"old"]
    assert store.read("segments/live/query.npz") == b"live"


def test_given_retired_local_objects_within_the_grace_period_then_they_are_not_deleted(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path, grace_seconds=3600)
    store.write("a/query.npz", b"a")
    store.write("b/query.npz", b"b")

    store.retire(["a/query.npz"])
    store.retire(["b/query.npz"])

    assert len(list((tmp_path / ".retired").glob("*/a/query.npz"))) == 1
    assert len(list((tmp_path / ".retired").glob("*/b/query.npz"))) == 1


def test_given_retired_local_objects_past_the_grace_period_then_a_later_retire_deletes_them(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path, grace_seconds=0.05)
    store.write("a/query.npz", b"a")
    store.write("b/query.npz", b"b")
    store.retire(["a/query.npz"])
    assert len(list((tmp_path / ".retired").glob("*/a/query.npz"))) == 1

    time.sleep(0.15)
    store.retire(["b/query.npz"])

    assert list((tmp_path / ".retired").glob("*/a/query.npz")) == []
    assert len(list((tmp_path / ".retired").glob("*/b/query.npz"))) == 1


def test_given_a_retired_s3_object_then_it_is_tagged_for_the_lifecycle_rule_and_still_readable(
    s3_bucket: str, moto_endpoint: str
) -> None:
    store = S3Store(s3_bucket, PREFIX, endpoint_url=moto_endpoint)
    store.write("segments/old/query.npz", b"old")
    store.write("segments/live/query.npz", b"live")

    store.retire(["segments/old/query.npz", "segments/never-written/query.npz"])

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    old = client.get_object_tagging(Bucket=s3_bucket, Key=f"{PREFIX}/segments/old/query.npz")["TagSet"]
    live = client.get_object_tagging(Bucket=s3_bucket, Key=f"{PREFIX}/segments/live/query.npz")["TagSet"]
    assert old == [{"Key": "imgsearch-retired", "Value": "true"}]
    assert live == []
    assert store.read("segments/old/query.npz") == b"old", "readers on an older manifest still find it"


def test_s3_objects_live_under_the_prefix(s3_bucket: str, moto_endpoint: str) -> None:
    store = S3Store(s3_bucket, f"/{PREFIX}/", endpoint_url=moto_endpoint)
    store.write("segments/x/query.npz", b"x")
    store.write_manifest(b"m", expected=None)

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == [f"{PREFIX}/{MANIFEST}", f"{PREFIX}/segments/x/query.npz"]
    assert store.uri == f"s3://{s3_bucket}/{PREFIX}"


# --- opening a location -----------------------------------------------------------------------------


def test_open_store_maps_s3_uris_and_paths(tmp_path: Path, aws_env: None) -> None:
    s3 = open_store("s3://my-bucket/some/prefix", endpoint_url="http://127.0.0.1:9")
    local = open_store(tmp_path / "ix")

    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix) == ("my-bucket", "some/prefix")
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path / "ix"
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///prefix")


def test_local_store_refuses_names_escaping_its_directory(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "index")

    with pytest.raises(ValueError, match="escapes"):
        store.write("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_a_directory_store_takes_its_grace_period_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IMGSEARCH_RETIRED_GRACE_SECONDS", "120")
    store = open_store(tmp_path / "index")
    assert isinstance(store, LocalStore)
    assert store.grace_seconds == 120.0


# --- large objects: parallel ranged GETs (s3read.py) --------------------------------------------------


class CountingClient:
    """An S3 client that records each GetObject's Range (and can replace the object after the first)."""

    def __init__(self, client, replace_with: bytes | None = None) -> None:
        self.client, self.ranges, self.replace_with = client, [], replace_with
        self.exceptions = client.exceptions

    def get_object(self, **kwargs):
        self.ranges.append(kwargs.get("Range"))
        answer = self.client.get_object(**kwargs)
        if self.replace_with is not None and len(self.ranges) == 1:
            self.client.put_object(Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=self.replace_with)
        return answer

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 3 * 4096 + 5])
def test_an_object_larger_than_a_part_is_read_by_ranged_gets_into_the_same_bytes(
    s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    from imgsearch import s3read

    monkeypatch.setattr(s3read, "PART_BYTES", 4096)
    client = CountingClient(boto3.client("s3", endpoint_url=moto_endpoint))
    store = S3Store(s3_bucket, PREFIX, client=client)
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    store.write("segments/big/query.npz", data)
    assert bytes(store.read("segments/big/query.npz")) == data
    assert len(client.ranges) == max(1, -(-size // 4096)) + (size == 0)  # an empty object: one plain GET more
    assert client.ranges[0] == "bytes=0-4095"


def test_an_object_replaced_while_its_parts_are_read_fails_instead_of_mixing_two(
    s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    from imgsearch import s3read

    monkeypatch.setattr(s3read, "PART_BYTES", 1024)
    client = CountingClient(boto3.client("s3", endpoint_url=moto_endpoint), replace_with=b"y" * 5000)
    store = S3Store(s3_bucket, PREFIX, client=client)
    store.write("segments/big/query.npz", b"x" * 5000)
    with pytest.raises(ClientError) as raised:
        store.read("segments/big/query.npz")
    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"


def test_a_segment_read_whole_from_s3_in_parts_loads_and_searches(
    s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsearch import s3read
    from imgsearch.encode import lsh
    from imgsearch.segment import ObjectRef, Segment

    monkeypatch.setattr(s3read, "PART_BYTES", 32 * 1024)
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((600, 64)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    refs = [ObjectRef(bucket="b", key=f"{i:04d}.jpg", sequencer="1") for i in range(600)]
    built = Segment.build(refs=refs, raw=raw, encoder=lsh(dim_in=64, bits=64), hnsw_min=100)
    data = built.to_bytes()
    assert len(data) > 4 * 32 * 1024  # several parts
    store = S3Store(s3_bucket, PREFIX, endpoint_url=moto_endpoint)
    store.write("segments/s/query.npz", data)
    loaded = Segment.from_bytes(store.read("segments/s/query.npz"))
    assert loaded.refs == built.refs and loaded.float_slots is not None
    rows, _ = loaded.search_floats(built.vectors(np.arange(5)), 1)
    assert rows[:, 0].tolist() == list(range(5))
