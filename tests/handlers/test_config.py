"""Configuration is checked at cold start with messages that say what to set."""

from __future__ import annotations

import pytest

from lambdas.common import config
from lambdas.common.config import ConfigError


def test_missing_index_uri_names_the_variable_and_an_example() -> None:
    with pytest.raises(ConfigError, match=r"INDEX_URI is not set.*s3://"):
        config.index_uri(env={})


@pytest.mark.parametrize("value", ["bucket/prefix", "s3:///prefix", "relative/dir"])
def test_malformed_index_uri_is_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match="INDEX_URI"):
        config.index_uri(env={"INDEX_URI": value})


@pytest.mark.parametrize("value", ["s3://bucket/prefix", "s3://bucket", "/mnt/index"])
def test_index_uri_accepts_s3_and_efs(value: str) -> None:
    assert config.index_uri(env={"INDEX_URI": value}) == value


def test_numbers_are_range_checked() -> None:
    with pytest.raises(ConfigError, match=r"PRESIGN_SECONDS=0 is out of range \(allowed: 1\.\.604800\)"):
        config.integer("PRESIGN_SECONDS", 900, low=1, high=604800, env={"PRESIGN_SECONDS": "0"})
    with pytest.raises(ConfigError, match="not a whole number"):
        config.integer("PRESIGN_SECONDS", 900, low=1, high=604800, env={"PRESIGN_SECONDS": "soon"})
    assert config.integer("PRESIGN_SECONDS", 900, low=1, high=604800, env={}) == 900


def test_choices_name_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="DEFAULT_METRIC='l2' is not one of hybrid, cosine, hamming"):
        config.choice(
            "DEFAULT_METRIC", "hybrid", ("hybrid", "cosine", "hamming"), env={"DEFAULT_METRIC": "l2"}
        )


def test_bucket_names_are_bare() -> None:
    with pytest.raises(ConfigError, match="bare bucket name"):
        config.bucket_name("IMAGES_BUCKET", env={"IMAGES_BUCKET": "s3://images"})
    assert config.flag("AUTO_FIT", True, env={"AUTO_FIT": "false"}) is False


def test_vector_index_arn_names_the_variable_and_accepts_an_index_arn() -> None:
    arn = "arn:aws:s3vectors:us-east-1:123456789012:bucket/my-vectors/index/images"
    assert config.vector_index_arn(env={"VECTOR_INDEX_ARN": arn}) == arn
    with pytest.raises(ConfigError, match=r"VECTOR_INDEX_ARN is not set.*arn:aws:s3vectors:"):
        config.vector_index_arn(env={})
    with pytest.raises(ConfigError, match=r"VECTOR_INDEX_ARN='s3://images/index'.*not an S3 Vectors index"):
        config.vector_index_arn(env={"VECTOR_INDEX_ARN": "s3://images/index"})
