"""Each Lambda function's settings, defined once: environment variable, type, default and allowed values.

Everything that touches a setting uses its one definition here:

- the handlers read it (`lambdas/common/config.py`: `config.read(settings.PRESIGN_SECONDS)`), refusing a
  malformed or out-of-range value at cold start with a message that names the variable;
- the CDK app checks the stage's context against the same ranges and defaults (`stacks/config.py`, by
  each setting's `context` key) and writes each function's environment through its definition
  (`stacks/wiring.py`, which refuses a variable the function does not define or a value it would refuse);
- the local stack (`imgsearch local up`) builds the handlers' environment with the same builders.

Importable without onnxruntime, usearch or the AWS SDK (the CDK app imports it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .encode import DEFAULT_BITS, MIN_FIT
from .options import MAX_K, METRICS

T = TypeVar("T")


class SettingError(ValueError):
    """A value for a function's environment that its definition does not allow."""


@dataclass(frozen=True, kw_only=True)
class Setting(Generic[T]):
    """One environment variable of a function: its name, default (when unset), meaning and allowed values."""

    env: str
    default: T
    doc: str
    context: str = ""  # the stage's CDK context key that sets it (stacks/config.py); "" if none does
    read_by: str = "the handler"  # who reads it: the handler, Powertools, a core module, or nobody

    @property
    def allowed(self) -> str:
        """The allowed values, as the messages and docs/DEPLOY.md say them."""
        return "any text"

    def check(self, value: T) -> T:
        """The value if the definition allows it; SettingError otherwise."""
        return value

    def text(self, value: T) -> str:
        """The value as the environment holds it (checked first)."""
        return str(self.check(value))

    def _refuse(self, value: object) -> SettingError:
        return SettingError(f"{self.env}={value!r} is not allowed ({self.allowed})")


@dataclass(frozen=True, kw_only=True)
class Int(Setting[int]):
    low: int
    high: int
    multiple_of: int = 1

    @property
    def allowed(self) -> str:
        return f"{self.low}..{self.high}" + (f", a multiple of {self.multiple_of}" if self.multiple_of > 1 else "")

    def check(self, value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refuse(value)
        if not self.low <= value <= self.high or value % self.multiple_of:
            raise self._refuse(value)
        return value


@dataclass(frozen=True, kw_only=True)
class Number(Setting[float]):
    low: float
    high: float

    @property
    def allowed(self) -> str:
        return f"{self.low:g}..{self.high:g}"

    def check(self, value: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise self._refuse(value)
        return value

    def text(self, value: float) -> str:
        return f"{self.check(value):g}"


@dataclass(frozen=True, kw_only=True)
class Choice(Setting[str]):
    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return ", ".join(self.choices)

    def check(self, value: str) -> str:
        if value not in self.choices:
            raise self._refuse(value)
        return value


@dataclass(frozen=True, kw_only=True)
class Flag(Setting[bool]):
    @property
    def allowed(self) -> str:
        return "true or false"

    def check(self, value: bool) -> bool:
        if not isinstance(value, bool):
            raise self._refuse(value)
        return value

    def text(self, value: bool) -> str:
        return "true" if self.check(value) else "false"


TextForm = Literal["text", "bucket", "index_uri", "vector_index_arn", "s3_uri"]


@dataclass(frozen=True, kw_only=True)
class Text(Setting[str]):
    """Text; `required` ones have no default (the function cannot start without them). `form` says how the
    handler checks it: a bare bucket name, an index location (s3://BUCKET/PREFIX or a directory), an S3
    Vectors index ARN (the stack's values are CloudFormation references, checked by the handler)."""

    default: str = ""
    required: bool = False
    example: str = ""
    form: TextForm = "text"

    @property
    def allowed(self) -> str:
        return f"required, e.g. {self.example}" if self.required else "any text"

    def check(self, value: str) -> str:
        if not isinstance(value, str) or (self.required and not value.strip()):
            raise self._refuse(value)
        return value


@dataclass(frozen=True, kw_only=True)
class Items(Setting[tuple[str, ...]]):
    """A comma-separated list; each item (spaces around it dropped) matches `pattern` when one is given."""

    default: tuple[str, ...] = ()
    pattern: str = ""
    hint: str = ""  # what to write instead of an item the pattern refuses

    @property
    def allowed(self) -> str:
        return "a comma-separated list" + (f" ({self.hint})" if self.hint else "")

    def bad_item(self, items: tuple[str, ...]) -> str | None:
        """The first item the definition refuses (a comma in one, or one the pattern does not match)."""
        for item in items:
            if "," in item or (self.pattern and not re.fullmatch(self.pattern, item)):
                return item
        return None

    def check(self, value: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(value, tuple) or self.bad_item(value) is not None:
            raise self._refuse(value)
        return value

    def text(self, value: tuple[str, ...]) -> str:
        return ",".join(self.check(value))


@dataclass(frozen=True)
class FunctionSettings:
    """Every environment variable one function reads (or Powertools, or a core module reads for it)."""

    function: str
    settings: tuple[Setting[Any], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.env for s in self.settings)

    def __getitem__(self, env: str) -> Setting[Any]:
        for setting in self.settings:
            if setting.env == env:
                return setting
        raise KeyError(f"the {self.function} function has no setting {env} (its settings: {', '.join(self.names)})")

    def environment(self, values: Mapping[Setting[Any], Any]) -> dict[str, str]:
        """The environment holding these values: each setting must be one of this function's, each value
        one its definition allows (SettingError otherwise)."""
        for setting in values:
            if setting not in self.settings:
                raise SettingError(
                    f"the {self.function} function has no setting {setting.env} (its settings: {', '.join(self.names)})"
                )
        return {setting.env: setting.text(value) for setting, value in values.items()}


# --- shared by the functions ----------------------------------------------------------------------------

INDEX_BACKENDS = ("segments", "s3vectors")  # imgsearch.backend.BACKENDS is this

POWERTOOLS_SERVICE_NAME = Text(
    env="POWERTOOLS_SERVICE_NAME", default="imgsearch", doc="service name in logs and traces", read_by="Powertools"
)
POWERTOOLS_METRICS_NAMESPACE = Text(
    env="POWERTOOLS_METRICS_NAMESPACE", default="ImgSearch", doc="CloudWatch metrics namespace", read_by="Powertools"
)
INDEX_BACKEND = Choice(
    env="INDEX_BACKEND",
    default="segments",
    choices=INDEX_BACKENDS,
    context="indexBackend",
    doc="segments (the index at INDEX_URI) or s3vectors (the S3 Vectors index VECTOR_INDEX_ARN)",
)
INDEX_URI = Text(
    env="INDEX_URI",
    required=True,
    example="s3://my-index-bucket/index",
    form="index_uri",
    doc="where the segment index lives: s3://BUCKET/PREFIX, or the EFS mount (a directory)",
)
VECTOR_INDEX_ARN = Text(
    env="VECTOR_INDEX_ARN",
    required=True,
    example="arn:aws:s3vectors:us-east-1:123456789012:bucket/my-vectors/index/images",
    form="vector_index_arn",
    doc="the S3 Vectors index, with INDEX_BACKEND=s3vectors (instead of INDEX_URI)",
)
MODEL_DIR = Text(
    env="MODEL_DIR", required=True, example="/opt/model", doc="the folder with model.json and the ONNX model"
)
WATCH_PREFIXES = Items(
    env="WATCH_PREFIXES",
    doc="the watched key prefixes (empty: the whole bucket); the S3 notification filters apply them",
    read_by="nobody (for operators: the bucket notification does the filtering)",
)
WATCH_SUFFIXES = Items(
    env="WATCH_SUFFIXES",
    doc="the watched key suffixes (empty: any); the S3 notification filters apply them",
    read_by="nobody (for operators: the bucket notification does the filtering)",
)
COMMON = (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE)

# --- query ----------------------------------------------------------------------------------------------

IMAGES_BUCKET = Text(
    env="IMAGES_BUCKET",
    required=True,
    example="my-images-bucket",
    form="bucket",
    doc="the images bucket (a bare name): hits are presigned in it",
)
PRESIGN_SECONDS = Int(
    env="PRESIGN_SECONDS",
    default=900,
    # 7 days is SigV4's longest presigned URL; a URL signed with the function's session credentials also
    # stops working when they expire, whatever it says (docs/DEPLOY.md).
    low=60,
    high=7 * 24 * 3600,
    context="presignSeconds",
    doc="lifetime of result URLs, and the most a request's `expires` may ask",
)
DEFAULT_METRIC = Choice(
    env="DEFAULT_METRIC",
    default="hybrid",
    choices=METRICS,
    context="defaultMetric",
    doc="the metric of a request that names none",
)
DEFAULT_K = Int(env="DEFAULT_K", default=10, low=1, high=MAX_K, doc="results of a request that asks no k")
MAX_QUERY_BYTES = Int(
    env="MAX_QUERY_BYTES",
    default=4_500_000,
    low=1,
    high=10 * 1024 * 1024,  # API Gateway's payload limit (stacks.wiring.MAX_PAYLOAD_BYTES)
    doc="the largest query image accepted (413 above)",
)
REFRESH_SECONDS = Number(
    env="REFRESH_SECONDS", default=5.0, low=0.0, high=3600.0, doc="a warm function re-reads the manifest this often at most"
)
BLAS_THREADS = Int(
    env="OPENBLAS_NUM_THREADS",
    default=0,
    low=0,
    high=64,
    doc="numpy's BLAS threads (0: all cores); the stack sets 1 on the query function, whose matrices are "
    "small: more threads there only contend with the model's (docs/BENCHMARKS.md, \"OpenBLAS threads\")",
    read_by="OpenBLAS, when numpy loads",
)
CORS_ORIGINS = Items(
    env="CORS_ORIGINS",
    pattern=r"\*|https?://[A-Za-z0-9.-]+(:\d+)?",
    hint="use origins like https://example.com (or *)",
    context="corsOrigins",
    doc="origins allowed to call the API from a browser (none: no CORS headers)",
)

# --- ingest ---------------------------------------------------------------------------------------------

CODE_BITS = Int(
    env="CODE_BITS",
    default=DEFAULT_BITS,
    low=64,
    high=1024,
    multiple_of=8,
    context="codeBits",
    doc="binary code length of a new index (ITQ fits at most the embedding's 1280 bits)",
)
MAX_OBJECT_BYTES = Int(
    env="MAX_OBJECT_BYTES",
    default=50 * 1024 * 1024,
    low=1,
    high=5 * 1024**3,
    doc="larger objects are rejected (too_large) without being read whole",
)
THUMBNAILS = Flag(env="THUMBNAILS", default=True, doc="write a small JPEG per image beside the index")
THUMBNAIL_URI = Text(
    env="THUMBNAIL_URI",
    example="s3://my-thumbnails-bucket",
    form="s3_uri",
    doc="where thumbnails are kept when the index is not on S3 (EFS, S3 Vectors): s3://BUCKET[/PREFIX]; "
    "unset: beside the index",
)
COMPACT_FUNCTION_NAME = Text(
    env="COMPACT_FUNCTION_NAME",
    doc="the compaction function to invoke past COMPACT_AFTER_SEGMENTS (unset: never, as in the local stack)",
)
COMPACT_AFTER_SEGMENTS = Int(
    env="COMPACT_AFTER_SEGMENTS",
    default=32,
    low=0,
    high=10_000,
    context="compactAfterSegments",
    doc="invoke compaction once the manifest lists more segments than this (0: on the schedule only)",
)

# --- compaction -----------------------------------------------------------------------------------------

COMPACT_THREADS = Int(env="COMPACT_THREADS", default=0, low=0, high=64, doc="threads for merges (0: all cores)")
# The next three are the core's defaults too: imgsearch.segment.HNSW_MIN, imgsearch.maintain.MAX_BASE and MERGE_AT
# are these definitions' defaults.
HNSW_MIN = Int(
    env="HNSW_MIN", default=50_000, low=1, high=1 << 40, doc="segments at least this large get HNSW graphs"
)
MAX_BASE = Int(env="MAX_BASE", default=1_000_000, low=2, high=1 << 40, doc="entries in one segment at most")
MERGE_AT = Int(env="MERGE_AT", default=4, low=2, high=1000, doc="segments of one size tier merged at once")
FIT_AFTER = Int(
    env="FIT_AFTER", default=MIN_FIT, low=2, high=1 << 40, doc="fit PCA + ITQ once the index holds this many images"
)
AUTO_FIT = Flag(env="AUTO_FIT", default=True, doc="fit (and re-encode) when the policy says so")
STEP_RESERVE_SECONDS = Int(
    env="STEP_RESERVE_SECONDS", default=300, low=0, high=900, doc="no step starts with less time left than this"
)
RETIRED_GRACE_SECONDS = Int(
    env="IMGSEARCH_RETIRED_GRACE_SECONDS",
    default=3600,
    low=0,
    high=3650 * 86400,
    doc="a directory (EFS) index deletes superseded objects after this long (the stack: retiredGraceDays)",
    read_by="imgsearch.store",
)

# --- each function's settings ---------------------------------------------------------------------------

QUERY = FunctionSettings(
    "query",
    (
        *COMMON,
        INDEX_BACKEND,
        INDEX_URI,
        VECTOR_INDEX_ARN,
        MODEL_DIR,
        IMAGES_BUCKET,
        WATCH_PREFIXES,
        WATCH_SUFFIXES,
        PRESIGN_SECONDS,
        DEFAULT_METRIC,
        DEFAULT_K,
        MAX_QUERY_BYTES,
        REFRESH_SECONDS,
        CORS_ORIGINS,
        THUMBNAIL_URI,
        BLAS_THREADS,
    ),
)
INGEST = FunctionSettings(
    "ingest",
    (
        *COMMON,
        INDEX_BACKEND,
        INDEX_URI,
        VECTOR_INDEX_ARN,
        MODEL_DIR,
        WATCH_PREFIXES,
        WATCH_SUFFIXES,
        CODE_BITS,
        MAX_OBJECT_BYTES,
        THUMBNAILS,
        THUMBNAIL_URI,
        COMPACT_FUNCTION_NAME,
        COMPACT_AFTER_SEGMENTS,
    ),
)
COMPACT = FunctionSettings(
    "compact",
    (
        *COMMON,
        INDEX_URI,
        COMPACT_THREADS,
        HNSW_MIN,
        MAX_BASE,
        MERGE_AT,
        FIT_AFTER,
        AUTO_FIT,
        STEP_RESERVE_SECONDS,
        RETIRED_GRACE_SECONDS,
    ),
)
FUNCTIONS = (INGEST, QUERY, COMPACT)


def stage_settings() -> dict[str, Setting[Any]]:
    """The settings a stage's context sets, by context key (each once, whichever functions read it)."""
    return {s.context: s for f in FUNCTIONS for s in f.settings if s.context}
