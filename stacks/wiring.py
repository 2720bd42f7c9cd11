"""How the pieces are wired, in one place for the CDK stack and the local stack (`imgsearch local up`).

Pure Python: no aws_cdk import, so the local stack can use it without the CDK installed. The CDK
constructs (stacks/storage.py, ingest.py, query_api.py, compaction.py, functions.py) read these
names, and imgsearch/local/ creates the same bucket notification, queue, redrive policy and function
environments from them. Each function's environment is built through its settings' one definition
(imgsearch.settings): a variable the function does not read, or a value it would refuse, stops synth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imgsearch import settings, vectorspec
from imgsearch.options import QUERY_PARAMETERS
from imgsearch.settings import FunctionSettings, Setting, SettingError

# --- storage ----------------------------------------------------------------------------------------

INDEX_PREFIX = "index"  # the index lives under s3://<index bucket>/index/


def index_uri(index_bucket: str) -> str:
    return f"s3://{index_bucket}/{INDEX_PREFIX}"


# The index on EFS (context indexStore=efs): every function mounts the access point here.
EFS_MOUNT_PATH = "/mnt/index"  # INDEX_URI in EFS mode
EFS_ACCESS_POINT_PATH = "/imgsearch-index"  # the access point's root directory on the file system
EFS_POSIX_ID = "1001"  # uid and gid the functions act as on the file system (and own the root with)


# The index on Amazon S3 Vectors (context indexBackend=s3vectors): one vector per object, found by the
# index ARN. The index is created like imgsearch.s3vectors creates it (S3VectorsBackend.create).
# The index's fixed parameters, the core's own (imgsearch.vectorspec, which imports nothing).
VECTOR_DATA_TYPE = vectorspec.DATA_TYPE
VECTOR_DISTANCE_METRIC = vectorspec.METRIC
VECTOR_NON_FILTERABLE_KEYS = vectorspec.NON_FILTERABLE
VECTOR_INGEST_ACTIONS = ("s3vectors:PutVectors", "s3vectors:DeleteVectors", "s3vectors:GetVectors")
# QueryVectors with a filter or returnMetadata also needs GetVectors (S3 Vectors API reference).
VECTOR_QUERY_ACTIONS = ("s3vectors:QueryVectors", "s3vectors:GetVectors")


def backend_environment(*, index_backend: str = "segments", vector_index_arn: str = "") -> dict[str, str]:
    """Which index backend a function talks to: nothing for segments (INDEX_URI says where), else the
    S3 Vectors index ARN (region, account, vector bucket and index name are all in it)."""
    return {s.env: s.text(v) for s, v in _backend_values(index_backend, vector_index_arn).items()}


def _backend_values(index_backend: str, vector_index_arn: str) -> dict[Setting[Any], Any]:
    if index_backend == settings.INDEX_BACKEND.default:
        return {}
    return {settings.INDEX_BACKEND: index_backend, settings.VECTOR_INDEX_ARN: vector_index_arn}


def _thumbnail_values(thumbnail_uri: str) -> dict[Setting[Any], Any]:
    """Where thumbnails are kept when the index is not on S3 ("" : beside the index, no variable)."""
    return {settings.THUMBNAIL_URI: thumbnail_uri} if thumbnail_uri else {}


def _index_uri_values(index_uri: str) -> dict[Setting[Any], Any]:
    """Where the segment index is ("" with an S3 Vectors index: no INDEX_URI)."""
    return {settings.INDEX_URI: index_uri} if index_uri else {}


# --- ingest: S3 → SQS (with a dead-letter queue) → ingest function ---------------------------------

# S3 notification event types: CDK's s3.EventType member name → the S3 API event name.
NOTIFICATION_EVENTS: Mapping[str, str] = {
    "OBJECT_CREATED": "s3:ObjectCreated:*",
    "OBJECT_REMOVED": "s3:ObjectRemoved:*",
}
QUEUE_VISIBILITY_FACTOR = 6  # visibility timeout = 6 × the ingest timeout (AWS guidance for SQS → Lambda)
QUEUE_RETENTION_DAYS = 4
DEAD_LETTER_RETENTION_DAYS = 14
REPORT_BATCH_ITEM_FAILURES = True


def visibility_timeout_seconds(ingest_timeout_seconds: int) -> int:
    return QUEUE_VISIBILITY_FACTOR * ingest_timeout_seconds


def notification_filter_rules(prefix: str, suffix: str) -> list[dict[str, str]]:
    """The S3 API's key filter (Filter.Key.FilterRules) for a notification prefix and suffix."""
    rules = []
    if prefix:
        rules.append({"Name": "prefix", "Value": prefix})
    if suffix:
        rules.append({"Name": "suffix", "Value": suffix})
    return rules


def watch_filters(prefixes: Sequence[str], suffixes: Sequence[str]) -> list[tuple[str, str]]:
    """(prefix, suffix) of each S3 notification filter: every watched prefix with every suffix; ("", "") is all keys."""
    return [(prefix, suffix) for prefix in prefixes or ("",) for suffix in suffixes or ("",)]


def _watch_values(prefixes: Sequence[str], suffixes: Sequence[str]) -> dict[Setting[Any], Any]:
    """Which keys of the images bucket are indexed: comma-separated (context forbids commas in them); empty is all."""
    return {settings.WATCH_PREFIXES: tuple(prefixes), settings.WATCH_SUFFIXES: tuple(suffixes)}


# --- functions ---------------------------------------------------------------------------------------

MODEL_DIR = "/opt/model"  # where the model layer's model/ folder is mounted in Lambda


@dataclass(frozen=True)
class FunctionSpec:
    """One function: its handler (dotted path), whether it needs the model layer, and its settings."""

    name: str
    handler: str
    with_model: bool
    settings: FunctionSettings

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]


INGEST = FunctionSpec("ingest", "lambdas.ingest.handler.handler", with_model=True, settings=settings.INGEST)
QUERY = FunctionSpec("query", "lambdas.query.handler.handler", with_model=True, settings=settings.QUERY)
COMPACT = FunctionSpec("compact", "lambdas.compact.handler.handler", with_model=False, settings=settings.COMPACT)

COMMON_ENVIRONMENT: Mapping[str, str] = {s.env: s.text(s.default) for s in settings.COMMON}


def ingest_environment(
    *,
    index_uri: str,
    code_bits: int,
    watch_prefixes: Sequence[str] = (),
    watch_suffixes: Sequence[str] = (),
    index_backend: str = "segments",
    vector_index_arn: str = "",
    thumbnail_uri: str = "",
) -> dict[str, str]:
    return settings.INGEST.environment(
        {
            **_index_uri_values(index_uri),
            settings.CODE_BITS: code_bits,
            **_watch_values(watch_prefixes, watch_suffixes),
            **_backend_values(index_backend, vector_index_arn),
            **_thumbnail_values(thumbnail_uri),
        }
    )


# Compaction on demand: the ingest function invokes the compaction function (asynchronously) once the
# manifest lists more than COMPACT_AFTER_SEGMENTS segments. Without COMPACT_FUNCTION_NAME (the local
# stack, whose compaction worker runs on a timer) the ingest function never invokes anything.
COMPACT_INVOKE_MAX_EVENT_AGE_SECONDS = 60  # a throttled duplicate (one compaction already runs) is dropped


def compaction_trigger_environment(*, function_name: str, after_segments: int) -> dict[str, str]:
    return settings.INGEST.environment(
        {settings.COMPACT_FUNCTION_NAME: function_name, settings.COMPACT_AFTER_SEGMENTS: after_segments}
    )


QUERY_BLAS_THREADS = 1  # one query's matrices are small: BLAS threads only slow the model's (BENCHMARKS.md)


def query_environment(
    *,
    index_uri: str,
    images_bucket: str,
    default_metric: str,
    presign_seconds: int,
    cors_origins: tuple[str, ...] = (),
    watch_prefixes: Sequence[str] = (),
    watch_suffixes: Sequence[str] = (),
    index_backend: str = "segments",
    vector_index_arn: str = "",
    thumbnail_uri: str = "",
) -> dict[str, str]:
    return settings.QUERY.environment(
        {
            **_index_uri_values(index_uri),
            settings.IMAGES_BUCKET: images_bucket,
            **_watch_values(watch_prefixes, watch_suffixes),
            settings.DEFAULT_METRIC: default_metric,
            settings.PRESIGN_SECONDS: presign_seconds,
            settings.CORS_ORIGINS: tuple(cors_origins),
            **_backend_values(index_backend, vector_index_arn),
            **_thumbnail_values(thumbnail_uri),
            settings.BLAS_THREADS: QUERY_BLAS_THREADS,
        }
    )


COMPACT_THREADS = 0  # all cores: compaction runs alone (reserved concurrency 1)


def compact_environment(*, index_uri: str, retired_grace_days: int = 1) -> dict[str, str]:
    # On a directory index (EFS) the store itself deletes retired objects after this grace period;
    # on S3 the lifecycle rule does (imgsearch.store.LocalStore / RETIRED_TAG).
    return settings.COMPACT.environment(
        {
            settings.INDEX_URI: index_uri,
            settings.COMPACT_THREADS: COMPACT_THREADS,
            settings.RETIRED_GRACE_SECONDS: retired_grace_days * 86400,
        }
    )


def function_environment(
    spec: FunctionSpec, environment: Mapping[str, str], *, model_dir: str = MODEL_DIR
) -> dict[str, str]:
    """Everything a function's environment holds: the shared Powertools names, MODEL_DIR, its own
    (`environment`, from the builders above; each name must be one of the function's settings)."""
    unknown = [name for name in environment if name not in spec.settings.names]
    if unknown:
        raise SettingError(
            f"the {spec.name} function has no setting {unknown[0]} (its settings: {', '.join(spec.settings.names)})"
        )
    return {
        **spec.settings.environment({s: s.default for s in settings.COMMON}),
        **(spec.settings.environment({settings.MODEL_DIR: model_dir}) if spec.with_model else {}),
        **environment,
    }


# --- query API ---------------------------------------------------------------------------------------

BINARY_MEDIA_TYPES = ("image/*", "application/octet-stream")
SEARCH_PARAMETERS = QUERY_PARAMETERS  # the query string parameters the API passes on (imgsearch.options)
API_KEY_HEADER = "x-api-key"
# (method, API Gateway resource path, API key required): what the REST API routes to the query function.
ROUTES: tuple[tuple[str, str, bool], ...] = (
    ("GET", "/", False),  # the search page (it asks the user for the key)
    ("POST", "/search", True),
    ("GET", "/search", True),  # words alone: ?q= required
    ("GET", "/similar/{key+}", True),
    ("GET", "/health", True),  # what an operator needs (counts, model, encoder), with the key
    ("GET", "/ping", False),  # what a load balancer needs, without it: API Gateway cannot check a key on a
    # public method, so the two are two routes
    ("GET", "/openapi.json", False),  # the contract, generated from the handler's routes (docs/openapi.yaml)
)


# API Gateway's own answers (requests that never reach the function), in the API's error shape
# {"error": {"code", "message"}}. The REST API sets them as Gateway Responses (stacks/query_api.py) and the
# local API (imgsearch/local/api.py) answers from this same table; docs/openapi.yaml documents each status.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's REST payload limit (REQUEST_TOO_LARGE above it)


@dataclass(frozen=True)
class GatewayResponse:
    """One Gateway Response: API Gateway's response type, the status it answers, the error body."""

    type: str  # AWS::ApiGateway::GatewayResponse ResponseType
    status: int | None  # None: the status API Gateway chose (the DEFAULT_4XX / DEFAULT_5XX families)
    code: str
    message: str  # fixed text (a mapping template: no $ or #), saying what to do
    error_type: str  # the x-amzn-ErrorType header API Gateway sends with it

    @property
    def body(self) -> str:
        return json.dumps({"error": {"code": self.code, "message": self.message}})


def gateway_cors_headers(origins: Sequence[str]) -> dict[str, str]:
    """The CORS headers API Gateway adds to its own answers (a bad key, throttling, too large...) so that a
    page on an allowed origin sees the status and the error instead of a CORS failure. One origin (or `*`):
    that origin. Several: the request's Origin echoed, since a Gateway Response cannot pick among them;
    these answers carry only the error text, and the function's own answers check the origin."""
    if not origins:
        return {}
    allow = f"'{origins[0]}'" if len(origins) == 1 else "method.request.header.Origin"
    return {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Headers": "'Content-Type,X-Api-Key'",
        "Vary": "'Origin'",
    }


GATEWAY_RESPONSES: tuple[GatewayResponse, ...] = (
    GatewayResponse(
        "INVALID_API_KEY",  # a missing key as well as a wrong one
        403,
        "forbidden",
        "missing or wrong API key: send the API key in the x-api-key header (docs/DEPLOY.md says where to find it)",
        "ForbiddenException",
    ),
    GatewayResponse(
        "MISSING_AUTHENTICATION_TOKEN",  # what API Gateway answers for an unknown route or method
        404,
        "not_found",
        "no such route or method: the API serves GET /, GET and POST /search, GET /similar/{key}, GET /health, "
        "GET /ping and GET /openapi.json (docs/openapi.yaml)",
        "MissingAuthenticationTokenException",
    ),
    GatewayResponse(
        "REQUEST_TOO_LARGE",
        413,
        "too_large",
        f"the request is over the API's {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB limit: send a smaller image",
        "RequestTooLongException",
    ),
    GatewayResponse(
        "BAD_REQUEST_PARAMETERS",
        400,
        "bad_parameter",
        "a required request parameter is missing: see docs/openapi.yaml",
        "BadRequestException",
    ),
    GatewayResponse(
        "BAD_REQUEST_BODY",
        400,
        "bad_parameter",
        "the request body does not match the API's model: see docs/openapi.yaml",
        "BadRequestException",
    ),
    GatewayResponse(
        "THROTTLED",
        429,
        "throttled",
        "too many requests: the usage plan's rate limit was reached; retry after a short, growing delay",
        "TooManyRequestsException",
    ),
    GatewayResponse(
        "QUOTA_EXCEEDED",
        429,
        "quota_exceeded",
        "the API key's daily request quota is used up: wait for the next day or raise quotaPerDay",
        "LimitExceededException",
    ),
    GatewayResponse(
        "INTEGRATION_FAILURE",
        502,
        "bad_gateway",
        "the query function failed to answer: retry; if it persists, see the function's logs",
        "InternalServerErrorException",
    ),
    GatewayResponse(
        "INTEGRATION_TIMEOUT",
        504,
        "timeout",
        "the query function did not answer in time: retry, or ask for fewer results (a smaller k)",
        "InternalServerErrorException",
    ),
    GatewayResponse(
        "DEFAULT_4XX",
        None,
        "bad_request",
        "the request was refused before it reached the API: check the method, path, headers and body "
        "against docs/openapi.yaml",
        "BadRequestException",
    ),
    GatewayResponse(
        "DEFAULT_5XX",
        None,
        "gateway_error",
        "the API could not complete the request: retry shortly",
        "InternalServerErrorException",
    ),
)


def gateway_response(response_type: str) -> GatewayResponse:
    """The entry of GATEWAY_RESPONSES for an API Gateway response type, e.g. "INVALID_API_KEY"."""
    for response in GATEWAY_RESPONSES:
        if response.type == response_type:
            return response
    raise KeyError(
        f"no gateway response {response_type!r}: the types are {[r.type for r in GATEWAY_RESPONSES]}"
    )
