"""Configuration from environment variables, checked once at cold start with a message that says how to fix it.

Each function's settings are defined once, in imgsearch.settings (name, default, allowed values); a handler
reads one with `read(settings.PRESIGN_SECONDS)`, which picks the reader below for its type.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from imgsearch import settings as definitions

T = TypeVar("T")


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


def integer(
    name: str,
    default: int,
    *,
    low: int,
    high: int,
    multiple_of: int = 1,
    env: Mapping[str, str] | None = None,
) -> int:
    text = _env(env).get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number (allowed: {low}..{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range (allowed: {low}..{high})")
    if value % multiple_of:
        raise ConfigError(f"{name}={value} must be a multiple of {multiple_of}")
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


def items(
    name: str, *, pattern: str = "", hint: str = "", env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """A comma-separated list (spaces around items and empty items dropped); each item matches `pattern`."""
    found = tuple(i.strip() for i in _env(env).get(name, "").split(",") if i.strip())
    for item in found:
        if pattern and not re.fullmatch(pattern, item):
            raise ConfigError(f"{name} has {item!r}" + (f": {hint}" if hint else ""))
    return found


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


def s3_uri(name: str, *, env: Mapping[str, str] | None = None) -> str:
    """An optional `s3://bucket[/prefix]` ("" when unset)."""
    value = optional(name, "", env=env)
    if value and not (value.startswith("s3://") and value[5:].partition("/")[0]):
        raise ConfigError(f"{name}={value!r} is not s3://BUCKET[/PREFIX] (leave it unset to keep them beside the index)")
    return value


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


def read(setting: definitions.Setting[T], *, env: Mapping[str, str] | None = None) -> T:
    """One setting of imgsearch.settings from the environment, checked as its definition says."""
    value: Any
    if isinstance(setting, definitions.Int):
        value = integer(
            setting.env, setting.default, low=setting.low, high=setting.high, multiple_of=setting.multiple_of, env=env
        )
    elif isinstance(setting, definitions.Number):
        value = number(setting.env, setting.default, low=setting.low, high=setting.high, env=env)
    elif isinstance(setting, definitions.Choice):
        value = choice(setting.env, setting.default, setting.choices, env=env)
    elif isinstance(setting, definitions.Flag):
        value = flag(setting.env, setting.default, env=env)
    elif isinstance(setting, definitions.Items):
        value = items(setting.env, pattern=setting.pattern, hint=setting.hint, env=env)
    elif isinstance(setting, definitions.Text) and setting.form == "index_uri":
        value = index_uri(setting.env, env=env)
    elif isinstance(setting, definitions.Text) and setting.form == "s3_uri":
        value = s3_uri(setting.env, env=env)
    elif isinstance(setting, definitions.Text) and setting.form == "vector_index_arn":
        value = vector_index_arn(setting.env, env=env)
    elif isinstance(setting, definitions.Text) and setting.form == "bucket":
        value = bucket_name(setting.env, env=env)
    elif isinstance(setting, definitions.Text) and setting.required:
        value = required(setting.env, example=setting.example, env=env)
    elif isinstance(setting, definitions.Text):
        value = optional(setting.env, setting.default, env=env)
    else:
        raise TypeError(f"no reader for {type(setting).__name__} settings ({setting.env})")
    return cast(T, value)
