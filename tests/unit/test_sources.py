"""`imgsearch index s3://…`, `index --prune` and `delete`, in-process with the real model on moto S3."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from imgsearch.cli import app
from imgsearch.index import ImageIndex
from imgsearch.known import Known
from imgsearch.modelspec import ModelSpec, default_model_dir
from imgsearch.segment import ObjectRef
from imgsearch.writer import BatchWriter
from tests.imagegen import synthetic_image

THREADS = ["--threads", "2"]
REAL_SEQUENCER = "0055AED6DCD90281E5"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def summary(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def live(location: str, endpoint: str | None = None) -> dict[tuple[str, str], ObjectRef]:
    known = Known.load(ImageIndex.open(location, endpoint_url=endpoint))
    return {(r.bucket, r.key): r for b in known.buckets() for r in known.entries(b)}


@pytest.fixture(scope="module", autouse=True)
def model() -> None:
    ModelSpec.load(default_model_dir())  # fails (not skips) with a clear message if the model is missing


@pytest.fixture
def s3(moto_endpoint: str, aws_env: None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint)


@pytest.fixture
def filled(s3: Any, s3_bucket: str) -> dict[str, str]:
    """Six images under photos/ (one with a space and unicode), a text object, an empty one, one outside."""
    etags = {}
    for i, key in enumerate(
        ["photos/a.png", "photos/b.png", "photos/c d é.png", "photos/e.png", "photos/f.png"]
    ):
        etags[key] = s3.put_object(Bucket=s3_bucket, Key=key, Body=synthetic_image(i))["ETag"].strip('"')
    etags["photos/notes.txt"] = s3.put_object(Bucket=s3_bucket, Key="photos/notes.txt", Body=b"hello")["ETag"]
    etags["photos/empty.png"] = s3.put_object(Bucket=s3_bucket, Key="photos/empty.png", Body=b"")["ETag"]
    s3.put_object(Bucket=s3_bucket, Key="elsewhere/x.png", Body=synthetic_image(99))
    return {k: v.strip('"') for k, v in etags.items()}


def test_index_an_s3_prefix_records_the_real_bucket_and_etags_and_rejects_non_images(
    filled: dict[str, str], s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    location = str(tmp_path / "index")
    args = ["index", "--index", location, f"s3://{s3_bucket}/photos/", "--endpoint-url", moto_endpoint]

    first = summary(run(*args, "--json", *THREADS))
    again = summary(run(*args, "--json", *THREADS))

    assert (first["listed"], first["indexed"], first["rejected"]) == (7, 5, 2)
    entries = live(location)
    assert set(entries) == {(s3_bucket, k) for k in filled if k.endswith(".png") and "empty" not in k}
    ref = entries[(s3_bucket, "photos/c d é.png")]
    assert ref.etag == filled["photos/c d é.png"] and '"' not in ref.etag and ref.size > 0
    assert ref.order.strip("0") == ""  # the listing sequencer "0"
    codes = {r.key: r.code for r in Known.load(ImageIndex.open(location)).searcher.rejections()}  # type: ignore[union-attr]
    assert codes == {"photos/notes.txt": "not_an_image", "photos/empty.png": "empty"}
    assert (again["indexed"], again["unchanged"], again["rejected"]) == (0, 7, 0)  # nothing read twice


def test_a_rerun_after_an_overwrite_records_the_new_etag_but_never_beats_a_real_event(
    filled: dict[str, str], s3: Any, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    location = str(tmp_path / "index")
    args = [
        "index",
        "--index",
        location,
        f"s3://{s3_bucket}/photos/",
        "--endpoint-url",
        moto_endpoint,
        "--json",
    ]
    summary(run(*args, *THREADS))
    new = s3.put_object(Bucket=s3_bucket, Key="photos/a.png", Body=synthetic_image(50))["ETag"].strip('"')
    # photos/b.png was indexed from a real S3 event (its sequencer) at a version the listing does not show
    batch = BatchWriter(ImageIndex.open(location))
    event = ObjectRef(
        bucket=s3_bucket, key="photos/b.png", etag="from-event", size=1, sequencer=REAL_SEQUENCER
    )
    batch.add([event], np.eye(1, 1280, dtype=np.float32))
    batch.commit()

    rerun = summary(run(*args, *THREADS))

    entries = live(location)
    assert rerun["indexed"] == 2  # a.png changed; b.png differs from the index too
    assert entries[(s3_bucket, "photos/a.png")].etag == new  # equal sequencers: the later row wins
    assert entries[(s3_bucket, "photos/b.png")].etag == "from-event"  # the event's sequencer wins


def test_prune_drops_objects_gone_from_the_prefix_and_a_returning_object_is_indexed_again(
    filled: dict[str, str], s3: Any, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    location = str(tmp_path / "index")
    source = f"s3://{s3_bucket}/photos/"
    args = ["index", "--index", location, "--endpoint-url", moto_endpoint, "--json", *THREADS]
    summary(run(*args, source, f"s3://{s3_bucket}/elsewhere/"))
    s3.delete_object(Bucket=s3_bucket, Key="photos/e.png")
    s3.delete_object(Bucket=s3_bucket, Key="elsewhere/x.png")  # outside the pruned prefix: kept

    pruned = summary(run(*args, "--prune", source))
    assert pruned["pruned"] == 1
    assert (s3_bucket, "photos/e.png") not in live(location)
    assert (s3_bucket, "elsewhere/x.png") in live(location)

    s3.put_object(Bucket=s3_bucket, Key="photos/e.png", Body=synthetic_image(3))  # the same image again
    back = summary(run(*args, source))
    assert back["indexed"] == 1 and (s3_bucket, "photos/e.png") in live(location)


def test_prune_on_folders_and_a_restored_file_with_its_old_mtime(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(synthetic_image(i))
    location = str(tmp_path / "index")
    args = ["index", "--index", location, "--json", *THREADS]
    summary(run(*args, str(folder)))
    stat = os.stat(folder / "1.png")
    saved = (folder / "1.png").read_bytes()
    (folder / "1.png").unlink()

    pruned = summary(run(*args, "--prune", str(folder)))
    assert pruned["pruned"] == 1 and set(live(location)) == {("local", "0.png"), ("local", "2.png")}

    (folder / "1.png").write_bytes(saved)
    os.utime(folder / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # restored as `cp -p` would
    restored = summary(run(*args, str(folder)))
    still = summary(run(*args, str(folder)))

    assert restored["indexed"] == 1 and ("local", "1.png") in live(location)
    assert (still["indexed"], still["unchanged"]) == (0, 3)


def test_delete_hides_keys_and_reports_the_ones_not_indexed(
    filled: dict[str, str], s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    location = str(tmp_path / "index")
    summary(
        run(
            "index",
            "--index",
            location,
            f"s3://{s3_bucket}/photos/",
            "--endpoint-url",
            moto_endpoint,
            "--json",
            *THREADS,
        )
    )

    partly = run("delete", "--index", location, "photos/a.png", "photos/nope.png")
    wrong_bucket = run("delete", "--index", location, "--bucket", "other", "photos/b.png")
    fully = run("delete", "--index", location, "--bucket", s3_bucket, "photos/b.png", "--json")
    searched = run("search", "--index", location, "photos/a.png", "--json", *THREADS)

    assert partly.exit_code == 1
    assert f"deleted {s3_bucket}/photos/a.png" in partly.stdout
    assert "photos/nope.png: not in the index" in partly.stderr
    assert wrong_bucket.exit_code == 1 and "not in the index in bucket 'other'" in wrong_bucket.stderr
    assert fully.exit_code == 0 and json.loads(fully.stdout)["deleted"] == [
        {"bucket": s3_bucket, "key": "photos/b.png"}
    ]
    assert set(live(location)) == {
        (s3_bucket, k) for k in ("photos/c d é.png", "photos/e.png", "photos/f.png")
    }
    assert "neither an image file nor an indexed key" in searched.stdout


def test_s3_source_errors_say_what_is_wrong(moto_endpoint: str, aws_env: None, tmp_path: Path) -> None:
    location = str(tmp_path / "index")
    missing = run("index", "--index", location, "s3://no-such-bucket-xyz/p/", "--endpoint-url", moto_endpoint)
    invalid = run("index", "--index", location, "s3://Bad_Bucket!/p")
    no_index = run("delete", "--index", str(tmp_path / "none"), "k")

    assert missing.exit_code == 1 and "the bucket 'no-such-bucket-xyz' does not exist" in missing.stderr
    assert invalid.exit_code == 2 and "is not a valid bucket name" in invalid.stderr
    assert no_index.exit_code == 1 and "no index at" in no_index.stderr
