"""LocalStore and S3Store behind one interface: immutable objects and a CAS-only manifest."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
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
