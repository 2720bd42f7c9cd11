"""Configuration from environment variables, checked once at cold start with a message that says how to fix it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence


class ConfigError(RuntimeError):
    """An environment variable is missing or malformed (the function cannot start)."""


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def required(name: str, *, example: str, env: Mapping[str, str] | None = None) -> str:
    value = _env(env).get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is not set: set it to something like {example!r}")
    return value


def optional(name: str, default: str = "", *, env: Mapping[str, str] | None = None) -> str:
    return _env(env).get(name, "").strip() or default


def integer(name: str, default: int, *, low: int, high: int, env: Mapping[str, str] | None = None) -> int:
    text = _env(env).get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number (allowed: {low}..{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range (allowed: {low}..{high})")
    return value


def number(
    name: str, default: float, *, low: float, high: float, env: Mapping[str, str] | None = None
) -> float:
    text = _env(env).get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number (allowed: {low}..{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range (allowed: {low}..{high})")
    return value


def choice(name: str, default: str, choices: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
    value = _env(env).get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def flag(name: str, default: bool, *, env: Mapping[str, str] | None = None) -> bool:
    text = _env(env).get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={text!r} is not a boolean (use true or false)")


def index_uri(name: str = "INDEX_URI", *, env: Mapping[str, str] | None = None) -> str:
    """`s3://bucket/prefix` (index on S3) or an absolute directory (index on EFS)."""
    value = required(name, example="s3://my-index-bucket/index", env=env)
    if value.startswith("s3://"):
        bucket = value[5:].partition("/")[0]
        if not bucket:
            raise ConfigError(f"{name}={value!r} names no bucket: use s3://BUCKET/PREFIX")
        return value
    if value.startswith("/"):
        return value
    raise ConfigError(
        f"{name}={value!r} is neither s3://BUCKET/PREFIX nor an absolute path (an EFS mount such as /mnt/index)"
    )


def bucket_name(name: str, *, env: Mapping[str, str] | None = None) -> str:
    value = required(name, example="my-images-bucket", env=env)
    if value.startswith("s3://") or "/" in value:
        raise ConfigError(f"{name}={value!r} must be a bare bucket name (no s3:// and no slash)")
    return value


def vector_index_arn(name: str = "VECTOR_INDEX_ARN", *, env: Mapping[str, str] | None = None) -> str:
    """An S3 Vectors index ARN (or `s3vectors://BUCKET/INDEX`), for INDEX_BACKEND=s3vectors."""
    from imgsearch.errors import BadParameter
    from imgsearch.s3vectors import VectorIndexRef

    example = "arn:aws:s3vectors:us-east-1:123456789012:bucket/my-vectors/index/images"
    value = required(name, example=example, env=env)
    try:
        VectorIndexRef.parse(value)
    except BadParameter as error:
        raise ConfigError(f"{name}={value!r}: {error}") from None
    return value
