"""Context is validated with messages that name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.config import ContextError, StageConfig, from_context


def config(tmp: Path, **context: object) -> StageConfig:
    for part in ("deps", "model", "code"):
        (tmp / part).mkdir(exist_ok=True)
    values = {"assetsDir": str(tmp), **context}
    return from_context(values.get)


def test_defaults_are_valid(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert (cfg.stage, cfg.architecture, cfg.defaultMetric, cfg.indexStore) == (
        "dev",
        "arm64",
        "hybrid",
        "s3",
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"architecture": "sparc"}, "architecture='sparc' is not one of arm64, x86_64"),
        ({"stage": "Prod_1"}, "stage='Prod_1' must be"),
        ({"ingestMemoryMb": 64}, r"ingestMemoryMb=64 is out of range \(allowed: 1024..10240\)"),
        ({"queryTimeoutSeconds": 60}, r"queryTimeoutSeconds=60 is out of range \(allowed: 3..29\)"),
        ({"indexStore": "dynamodb"}, "indexStore='dynamodb' is not one of s3, efs"),
        ({"codeBits": 100}, "codeBits=100 must be a multiple of 8"),
        ({"defaultMetric": "l2"}, "defaultMetric='l2' is not one of hybrid, cosine, hamming"),
        ({"presignSeconds": "soon"}, "presignSeconds='soon' is not a whole number"),
        ({"batchSize": 50, "batchWindowSeconds": 0}, "batchSize=50 needs batchWindowSeconds >= 1"),
        ({"maxReceiveCount": 0}, "maxReceiveCount=0 is out of range"),
        ({"ingestMaxConcurrency": 1}, "ingestMaxConcurrency=1 is out of range"),
        ({"corsOrigins": ["example.com"]}, "corsOrigins has 'example.com'"),
        ({"compactSchedule": "every hour"}, "compactSchedule='every hour' must be an EventBridge expression"),
        ({"imagesVersioned": "maybe"}, "imagesVersioned='maybe' must be true or false"),
        ({"compactAfterSegments": -1}, r"compactAfterSegments=-1 is out of range \(allowed: 0..10000\)"),
        (
            {"throttleRateLimit": 50, "throttleBurstLimit": 10},
            "throttleBurstLimit must be at least throttleRateLimit",
        ),
        (
            {"imagesBucket": "My_Photos"},
            "imagesBucket='My_Photos' is not an S3 bucket name: use 3-63 lower-case",
        ),
        ({"imagesBucket": "ab"}, "imagesBucket='ab' is not an S3 bucket name"),
        ({"imagesBucket": "my..photos"}, "imagesBucket='my..photos' is not an S3 bucket name"),
        ({"imagesBucket": "192.168.1.10"}, "imagesBucket='192.168.1.10' is not an S3 bucket name"),
        ({"imagesBucket": "photos--x-s3"}, "directory buckets and access point aliases are not supported"),
        (
            {"imagesBucket": "s3://my-photos/cats"},
            "give the bare name, -c imagesBucket=my-photos, and the prefix apart, -c watchPrefixes=cats/",
        ),
        ({"imagesBucket": "arn:aws:s3:::my-photos"}, "give the bare name, -c imagesBucket=my-photos$"),
        (
            {"watchPrefixes": "photos/,photos/2024/"},
            "watchPrefixes has 'photos/' and 'photos/2024/', which overlap",
        ),
        ({"watchSuffixes": [".jpg", "thumb.jpg"]}, "watchSuffixes has '.jpg' and 'thumb.jpg', which overlap"),
        ({"watchPrefixes": "photos/*"}, r"watchPrefixes has 'photos/\*': a key prefix is literal text"),
        ({"watchPrefixes": {"photos/": True}}, "watchPrefixes=.* must be a list of key prefixes"),
        (
            {"notificationPrefix": "uploads/", "watchPrefixes": "photos/"},
            r"notificationPrefix and watchPrefixes are both set: use watchPrefixes only",
        ),
        (
            {
                "watchPrefixes": [f"p{i}/" for i in range(11)],
                "watchSuffixes": [".jpg", ".png", ".gif", ".webp", ".tif"],
            },
            r"make 55 filters \(at most 50",
        ),
        (
            {"imagesBucketKmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abc"},
            "imagesBucketKmsKeyArn needs imagesBucket",
        ),
        (
            {
                "imagesBucket": "my-photos",
                "imagesBucketKmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:alias/photos",
            },
            "imagesBucketKmsKeyArn=.* must be a KMS key ARN, .* \\(not an alias\\)",
        ),
        (
            {"imagesBucket": "my-photos", "imagesVersioned": True},
            "imagesVersioned applies only to a bucket the stack creates",
        ),
    ],
)
def test_bad_context_is_rejected_with_a_clear_message(tmp_path: Path, context: dict, message: str) -> None:
    with pytest.raises(ContextError, match=message):
        config(tmp_path, **context)


def test_missing_layer_build_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="make layers"):
        from_context({"assetsDir": str(tmp_path / "nothing")}.get)


def test_cors_origins_accept_a_comma_separated_string(tmp_path: Path) -> None:
    assert config(tmp_path, corsOrigins="https://a.example, https://b.example").corsOrigins == (
        "https://a.example",
        "https://b.example",
    )


def test_an_existing_bucket_with_watched_prefixes_and_suffixes(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        imagesBucket="my-photos.example",
        watchPrefixes="photos/, scans/",
        watchSuffixes=[".jpg", ".png"],
        imagesBucketKmsKeyArn="arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd",
    )
    assert cfg.imagesBucket == "my-photos.example"
    assert (cfg.watched_prefixes, cfg.watched_suffixes) == (("photos/", "scans/"), (".jpg", ".png"))


def test_a_new_bucket_and_the_whole_bucket_are_the_defaults(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert (cfg.imagesBucket, cfg.watched_prefixes, cfg.watched_suffixes) == ("", (), ())


def test_notification_prefix_and_suffix_are_one_item_watch_lists(tmp_path: Path) -> None:
    cfg = config(tmp_path, notificationPrefix="uploads/", notificationSuffix=".jpg", watchPrefixes="")
    assert (cfg.watched_prefixes, cfg.watched_suffixes) == (("uploads/",), (".jpg",))
