"""Deployment settings from CDK context (cdk.json or `-c key=value`), checked with clear messages.

A context key that sets a function's setting (presignSeconds → PRESIGN_SECONDS, ...) takes its default and
allowed values from that setting's one definition (imgsearch.settings, the `context` of each); the others
(memory, timeouts, throttling, the images bucket...) are the stack's own and are defined here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from imgsearch import settings
from imgsearch.settings import Choice, Int, Items, Setting

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURES = ("arm64", "x86_64")
INDEX_STORES = ("s3", "efs")  # the index on an S3 bucket, or on EFS mounted by the functions
INDEX_BACKENDS = settings.INDEX_BACKEND.choices  # our segments (on indexStore), or an Amazon S3 Vectors index
MAX_WATCH_FILTERS = 50  # watched prefix x suffix combinations: two S3 notification entries each


class ContextError(ValueError):
    """A context value is missing or out of range (synth stops with this message)."""


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Everything that differs between stages; each field is a context key of the same name."""

    stage: str = "dev"
    architecture: str = "arm64"
    indexStore: str = "s3"
    indexBackend: str = settings.INDEX_BACKEND.default  # s3vectors: an S3 Vectors index instead (no index bucket, no compaction)
    vectorDimension: int = 1280  # of the S3 Vectors index: the model's embedding size (1280: EfficientNet-Lite0)
    ingestMemoryMb: int = 3008
    queryMemoryMb: int = 3008
    compactMemoryMb: int = 4096
    ingestTimeoutSeconds: int = 120
    queryTimeoutSeconds: int = 29
    compactTimeoutSeconds: int = 900
    codeBits: int = settings.CODE_BITS.default
    defaultMetric: str = settings.DEFAULT_METRIC.default
    presignSeconds: int = settings.PRESIGN_SECONDS.default
    throttleRateLimit: int = 20
    throttleBurstLimit: int = 40
    quotaPerDay: int = 100_000
    corsOrigins: tuple[str, ...] = settings.CORS_ORIGINS.default
    imagesBucket: str = ""  # an existing bucket to index (imported, never changed); "" creates one
    imagesBucketKmsKeyArn: str = ""  # the customer KMS key of imagesBucket's objects (SSE-KMS), if any
    watchPrefixes: tuple[str, ...] = ()  # key prefixes indexed (and readable); () = the whole bucket
    watchSuffixes: tuple[str, ...] = ()  # key suffixes indexed (case-sensitive, like S3); () = any
    notificationPrefix: str = ""  # one watched prefix: the older spelling of watchPrefixes
    notificationSuffix: str = ""  # one watched suffix: the older spelling of watchSuffixes
    batchSize: int = 10
    batchWindowSeconds: int = 5
    maxReceiveCount: int = 5
    ingestMaxConcurrency: int = 10  # SQS event source maxConcurrency: ingest functions at once (2..1000)
    imagesVersioned: bool = False
    retiredGraceDays: int = 1
    compactSchedule: str = "rate(15 minutes)"
    compactAfterSegments: int = settings.COMPACT_AFTER_SEGMENTS.default  # 0: on the schedule only
    alarmEmail: str = ""
    assetsDir: str = ""  # default: layers/build/<architecture> (made by `make layers`)

    @property
    def watched_prefixes(self) -> tuple[str, ...]:
        """watchPrefixes, or notificationPrefix as a one-item list; () watches the whole bucket."""
        return self.watchPrefixes or ((self.notificationPrefix,) if self.notificationPrefix else ())

    @property
    def watched_suffixes(self) -> tuple[str, ...]:
        """watchSuffixes, or notificationSuffix as a one-item list; () watches every key."""
        return self.watchSuffixes or ((self.notificationSuffix,) if self.notificationSuffix else ())

    @property
    def assets(self) -> Path:
        return Path(self.assetsDir) if self.assetsDir else ROOT / "layers" / "build" / self.architecture


def _int(name: str, low: int, high: int, *, multiple_of: int = 1) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ContextError(f"context {name}={value!r} is not a whole number ({low}..{high})") from None
        if isinstance(value, float) and value != number:
            raise ContextError(f"context {name}={value!r} is not a whole number ({low}..{high})")
        if not low <= number <= high:
            raise ContextError(f"context {name}={number} is out of range (allowed: {low}..{high})")
        if number % multiple_of:
            raise ContextError(f"context {name}={number} must be a multiple of {multiple_of}")
        return number

    return check


def _choice(name: str, choices: tuple[str, ...], hint: str = "") -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ContextError(f"context {name}={value!r} is not one of {', '.join(choices)}{hint}")
        return str(value)

    return check


def _text(name: str, pattern: str, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ContextError(f"context {name}={value!r} must be {what}")
        return value

    return check


def _bool(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ContextError(f"context {name}={value!r} must be true or false")

    return check


def _items(name: str, setting: Items) -> Callable[[Any], tuple[str, ...]]:
    def check(value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ContextError(f"context {name}={value!r} must be a list or a comma-separated string")
        found = tuple(str(i).strip() for i in items if str(i).strip())
        bad = setting.bad_item(found)
        if bad is not None:
            raise ContextError(f"context {name} has {bad!r}" + (f": {setting.hint}" if setting.hint else ""))
        return found

    return check


def _setting(name: str, setting: Setting[Any]) -> Callable[[Any], Any]:
    """The context check of a function's setting: the allowed values of its definition."""
    if isinstance(setting, Int):
        return _int(name, setting.low, setting.high, multiple_of=setting.multiple_of)
    if isinstance(setting, Choice):
        return _choice(name, setting.choices)
    if isinstance(setting, Items):
        return _items(name, setting)
    raise TypeError(f"no context check for {type(setting).__name__} settings ({name} → {setting.env})")


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _bucket(value: Any) -> str:
    """An existing general purpose bucket's bare name (S3's naming rules), or "" to create one."""
    if value == "":
        return ""
    name = value if isinstance(value, str) else ""
    hint = ""
    if name.startswith(("s3://", "arn:")):
        bucket, _, prefix = name.removeprefix("s3://").split(":")[-1].partition("/")
        hint = f": give the bare name, -c imagesBucket={bucket}" + (
            f", and the prefix apart, -c watchPrefixes={prefix.rstrip('/')}/" if prefix.strip("/") else ""
        )
    elif (
        not _BUCKET_NAME.fullmatch(name)
        or ".." in name
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)
        or name.startswith(_RESERVED_BUCKET_PREFIXES)
        or name.endswith(_RESERVED_BUCKET_SUFFIXES)
    ):
        hint = (
            ": use 3-63 lower-case letters, digits, dots or hyphens, starting and ending with a letter"
            " or digit (no '..', not an IP address; directory buckets and access point aliases are not supported)"
        )
    if hint:
        raise ContextError(f"context imagesBucket={value!r} is not an S3 bucket name{hint}")
    return name


def _key_filters(name: str, *, suffix: bool) -> Callable[[Any], tuple[str, ...]]:
    """A list (or comma-separated string) of key prefixes or suffixes that S3 can filter on without overlap."""
    what = "suffix" if suffix else "prefix"

    def check(value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ContextError(
                f"context {name}={value!r} must be a list of key {what}es or a comma-separated string"
            )
        filters = tuple(i.strip() for i in items if i.strip())
        for item in filters:
            if re.search(r"[*?,]|\$\{", item) or len(item) > 1024:
                raise ContextError(
                    f"context {name} has {item!r}: a key {what} is literal text of at most 1024 characters"
                    " (no *, ?, comma or ${)"
                )
        for i, a in enumerate(filters):
            for b in filters[i + 1 :]:
                if (b.endswith(a) or a.endswith(b)) if suffix else (b.startswith(a) or a.startswith(b)):
                    raise ContextError(
                        f"context {name} has {a!r} and {b!r}, which overlap: S3 refuses two notifications of one"
                        f" event for the same key, so keep only the shorter {what}"
                    )
        return filters

    return check


def _one_key_filter(name: str, *, suffix: bool) -> Callable[[Any], str]:
    """One key prefix or suffix (the older notificationPrefix/notificationSuffix), checked like a list item."""
    check_list = _key_filters(name, suffix=suffix)

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ContextError(f"context {name}={value!r} must be a key {'suffix' if suffix else 'prefix'}")
        check_list([value])
        return value

    return check


CHECKS: dict[str, Callable[[Any], Any]] = {
    "stage": _text(
        "stage", r"[a-z][a-z0-9-]{0,19}", "1-20 lower-case letters, digits or hyphens, starting with a letter"
    ),
    "architecture": _choice("architecture", ARCHITECTURES),
    "indexStore": _choice("indexStore", INDEX_STORES),
    "vectorDimension": _int("vectorDimension", 1, 4096),
    "ingestMemoryMb": _int("ingestMemoryMb", 1024, 10240),
    "queryMemoryMb": _int("queryMemoryMb", 1024, 10240),
    "compactMemoryMb": _int("compactMemoryMb", 1024, 10240),
    "ingestTimeoutSeconds": _int("ingestTimeoutSeconds", 10, 900),
    "queryTimeoutSeconds": _int("queryTimeoutSeconds", 3, 29),
    "compactTimeoutSeconds": _int("compactTimeoutSeconds", 60, 900),
    "throttleRateLimit": _int("throttleRateLimit", 1, 10_000),
    "throttleBurstLimit": _int("throttleBurstLimit", 1, 5_000),
    "quotaPerDay": _int("quotaPerDay", 1, 100_000_000),
    "imagesBucket": _bucket,
    "imagesBucketKmsKeyArn": _text(
        "imagesBucketKmsKeyArn",
        r"(|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+)",
        "a KMS key ARN, arn:aws:kms:REGION:ACCOUNT:key/KEY-ID (not an alias), or empty",
    ),
    "watchPrefixes": _key_filters("watchPrefixes", suffix=False),
    "watchSuffixes": _key_filters("watchSuffixes", suffix=True),
    "notificationPrefix": _one_key_filter("notificationPrefix", suffix=False),
    "notificationSuffix": _one_key_filter("notificationSuffix", suffix=True),
    "batchSize": _int("batchSize", 1, 10_000),
    "batchWindowSeconds": _int("batchWindowSeconds", 0, 300),
    "maxReceiveCount": _int("maxReceiveCount", 1, 1000),
    "ingestMaxConcurrency": _int("ingestMaxConcurrency", 2, 1000),
    "imagesVersioned": _bool("imagesVersioned"),
    "retiredGraceDays": _int("retiredGraceDays", 1, 3650),
    "compactSchedule": _text(
        "compactSchedule", r"(rate|cron)\(.+\)", "an EventBridge expression such as rate(15 minutes)"
    ),
    "alarmEmail": _text("alarmEmail", r"(|[^@\s]+@[^@\s]+\.[^@\s]+)", "an e-mail address (or empty)"),
    "assetsDir": _text("assetsDir", r".*", "a folder"),
    # the functions' settings the stage sets: checked as their one definition says (imgsearch.settings)
    **{key: _setting(key, setting) for key, setting in settings.stage_settings().items()},
}


def _check_images(config: StageConfig) -> None:
    """The images bucket settings agree: one spelling per filter, bucket-only options only with a bucket."""
    for new, old in (("watchPrefixes", "notificationPrefix"), ("watchSuffixes", "notificationSuffix")):
        if getattr(config, new) and getattr(config, old):
            raise ContextError(
                f"context {old} and {new} are both set: use {new} only ({old}=X is the same as {new}=X)"
            )
    combinations = max(len(config.watched_prefixes), 1) * max(len(config.watched_suffixes), 1)
    if combinations > MAX_WATCH_FILTERS:
        raise ContextError(
            f"context watchPrefixes x watchSuffixes make {combinations} filters (at most {MAX_WATCH_FILTERS}:"
            " each is two S3 notification entries); watch a common parent prefix instead"
        )
    if not config.imagesBucket:
        if config.imagesBucketKmsKeyArn:
            raise ContextError(
                "context imagesBucketKmsKeyArn needs imagesBucket: a bucket the stack creates is encrypted"
                " with S3-managed keys, which need no grant"
            )
        return
    if config.imagesVersioned:
        raise ContextError(
            "context imagesVersioned applies only to a bucket the stack creates: with imagesBucket the"
            " bucket's versioning is left as it is (drop -c imagesVersioned)"
        )


def _check_backend(config: StageConfig) -> None:
    """An S3 Vectors index replaces the segment store and keeps float vectors only (no binary codes)."""
    if config.indexBackend != "s3vectors":
        return
    if config.indexStore != "s3":
        raise ContextError(
            f"context indexStore={config.indexStore} applies to the segment backend only: with "
            "indexBackend=s3vectors the index is the S3 Vectors index (drop -c indexStore)"
        )
    if config.defaultMetric == "hamming":
        raise ContextError(
            "context defaultMetric=hamming needs the segment backend: an S3 Vectors index keeps no binary "
            "codes (use cosine or hybrid, which ranks by cosine there)"
        )


def from_cdk_json(path: Path | None = None, **overrides: Any) -> StageConfig:
    """The settings in cdk.json's context (what `cdk synth` uses), without the layer-assets check.

    For the local stack (`imgsearch local up`), which runs the handlers from the source tree.
    """
    context = json.loads((path or ROOT / "cdk.json").read_text()).get("context", {})
    context.update(overrides)
    return from_context(context.get, check_assets=False)


def from_context(get: Callable[[str], Any], *, check_assets: bool = True) -> StageConfig:
    """Read and check every known context key (`get` is `app.node.try_get_context`)."""
    values: dict[str, Any] = {}
    for f in fields(StageConfig):
        raw = get(f.name)
        if raw is not None:
            values[f.name] = CHECKS[f.name](raw)
    config = StageConfig(**values)
    if config.batchSize > 10 and config.batchWindowSeconds == 0:
        raise ContextError(
            f"context batchSize={config.batchSize} needs batchWindowSeconds >= 1 (SQS allows > 10 only with a window)"
        )
    if config.throttleBurstLimit < config.throttleRateLimit:
        raise ContextError("context throttleBurstLimit must be at least throttleRateLimit")
    _check_images(config)
    _check_backend(config)
    for part in ("deps", "model", "code") if check_assets else ():
        if not (config.assets / part).is_dir():
            raise ContextError(
                f"{config.assets / part} is missing: build the Lambda layers and code first with "
                f"`make layers` (or `python layers/build.py --arch {config.architecture}`), or pass -c assetsDir=DIR"
            )
    return config
