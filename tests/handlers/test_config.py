"""Configuration is checked at cold start with messages that say what to set."""

from __future__ import annotations

import pytest

from imgsearch import settings
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
    with pytest.raises(ConfigError, match=r"PRESIGN_SECONDS=0 is out of range \(allowed: 60\.\.604800\)"):
        config.read(settings.PRESIGN_SECONDS, env={"PRESIGN_SECONDS": "0"})
    with pytest.raises(ConfigError, match="not a whole number"):
        config.read(settings.PRESIGN_SECONDS, env={"PRESIGN_SECONDS": "soon"})
    assert config.read(settings.PRESIGN_SECONDS, env={}) == 900
    assert config.read(settings.PRESIGN_SECONDS, env={"PRESIGN_SECONDS": "604800"}) == 604800


def test_a_setting_is_read_with_its_definitions_default_and_range() -> None:
    """Each kind of setting is read by the reader its definition names, with its default when unset."""
    for setting in (s for f in settings.FUNCTIONS for s in f.settings if not getattr(s, "required", False)):
        assert config.read(setting, env={}) == setting.default, setting.env
    assert config.read(settings.REFRESH_SECONDS, env={"REFRESH_SECONDS": "0.5"}) == 0.5
    assert config.read(settings.THUMBNAILS, env={"THUMBNAILS": "false"}) is False
    assert config.read(settings.DEFAULT_METRIC, env={"DEFAULT_METRIC": "cosine"}) == "cosine"
    assert config.read(settings.MODEL_DIR, env={"MODEL_DIR": "/opt/model"}) == "/opt/model"
    with pytest.raises(ConfigError, match=r"MODEL_DIR is not set: set it to something like '/opt/model'"):
        config.read(settings.MODEL_DIR, env={})
    with pytest.raises(ConfigError, match="IMAGES_BUCKET='s3://images' must be a bare bucket name"):
        config.read(settings.IMAGES_BUCKET, env={"IMAGES_BUCKET": "s3://images"})


def test_code_bits_must_be_a_multiple_of_eight_in_the_stages_range() -> None:
    with pytest.raises(ConfigError, match="CODE_BITS=100 must be a multiple of 8"):
        config.read(settings.CODE_BITS, env={"CODE_BITS": "100"})
    with pytest.raises(ConfigError, match=r"CODE_BITS=32 is out of range \(allowed: 64\.\.1024\)"):
        config.read(settings.CODE_BITS, env={"CODE_BITS": "32"})
    assert config.read(settings.CODE_BITS, env={"CODE_BITS": "128"}) == 128


def test_cors_origins_are_a_checked_comma_separated_list() -> None:
    env = {"CORS_ORIGINS": " https://a.example , ,https://b.example:8443"}
    assert config.read(settings.CORS_ORIGINS, env=env) == ("https://a.example", "https://b.example:8443")
    assert config.read(settings.CORS_ORIGINS, env={"CORS_ORIGINS": "*"}) == ("*",)
    with pytest.raises(ConfigError, match=r"CORS_ORIGINS has 'example\.com': use origins like https://example\.com"):
        config.read(settings.CORS_ORIGINS, env={"CORS_ORIGINS": "example.com"})


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
