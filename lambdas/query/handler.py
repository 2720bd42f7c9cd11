"""Query API (API Gateway REST proxy): search by image, by indexed key, by words (`GET /search?q=`, JSON
`{"text"}`), or by an image or a key with words; answers with presigned URLs and each hit's tags.

The index is a segment index (INDEX_BACKEND=segments, the default) or Amazon S3 Vectors
(INDEX_BACKEND=s3vectors: cosine only, offset + k at most 100, no counts; docs/S3VECTORS.md), chosen
once at cold start. Errors are domain exceptions mapped to HTTP answers in one place
(`@app.exception_handler`), always as `{"error": {"code", "message"}}`; bad input is a 4xx, never a 5xx.

The contract is the routes' typed parameters: Powertools validates them (`enable_validation`) and generates the
OpenAPI document from them, served at `GET /openapi.json` (scripts/openapi.py writes docs/openapi.yaml from it).
Their bounds are the core's constants; the core still reads the query string itself, strictly (ASCII digits, each
parameter once, no unknown names: imgsearch.options), and its messages are the ones a client sees.
"""

import base64
import binascii
import functools
import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import ValidationError

import imgsearch
from imgsearch import settings, thumbnails
from imgsearch.backend import open_backend
from imgsearch.concepts import NoConceptMatches
from imgsearch.embed import Embedder
from imgsearch.errors import (
    BadParameter,
    ImgSearchError,
    IndexNotFound,
    InvalidImage,
    KeyNotIndexed,
    ModelMismatch,
    ModelNotFound,
)
from imgsearch.options import (
    MAX_OFFSET,
    SearchOptions,
    query_expiry,
    query_text,
)
from imgsearch.search import MAX_K, Hit
from imgsearch.store import S3Store
from imgsearch.text import TextQuery, TextSearch
from lambdas.common import config
from lambdas.query.contract import (
    JSON_FORMS,
    SEARCH_BODY,
    Collapse,
    Expand,
    Expires,
    K,
    Metric,
    MinScore,
    MoreWords,
    Offset,
    Prefix,
    SearchBody,
    SimilarKey,
    Tag,
    Words,
)

# --- cold start: configuration, model, index backend ----------------------------------------------

# Each setting's name, default and allowed values: imgsearch.settings.QUERY (the stacks write them from it).
INDEX_BACKEND = config.read(settings.INDEX_BACKEND)
# The one place the backend is chosen: a segment index (INDEX_URI) or an S3 Vectors index (VECTOR_INDEX_ARN).
INDEX_LOCATION = config.read(settings.VECTOR_INDEX_ARN if INDEX_BACKEND == "s3vectors" else settings.INDEX_URI)
IMAGES_BUCKET = config.read(settings.IMAGES_BUCKET)
MODEL_DIR = config.read(settings.MODEL_DIR)
PRESIGN_SECONDS = config.read(settings.PRESIGN_SECONDS)
DEFAULT_METRIC = config.read(settings.DEFAULT_METRIC)
DEFAULT_K = config.read(settings.DEFAULT_K)
MAX_QUERY_BYTES = config.read(settings.MAX_QUERY_BYTES)
REFRESH_SECONDS = config.read(settings.REFRESH_SECONDS)
CORS_ORIGINS = list(config.read(settings.CORS_ORIGINS))

IMAGE_TYPES = ("image/", "application/octet-stream")
API_KEY_HEADER = "x-api-key"
PAGE = Path(imgsearch.__file__).resolve().parent / "web" / "index.html"  # the search page, shipped in the package


class RestResolver(APIGatewayRestResolver):
    """Powertools' REST resolver with API Gateway's greedy path variable: a rule's last `<name>` takes the rest of
    the path, slashes included, as the resource /similar/{key+} does (Powertools' own stops at a slash)."""

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}/*$") -> re.Pattern[str]:
        return re.compile(base_regex.format(re.sub(r"<(\w+)>$", r"(?P<\1>.+)", rule)))


logger = Logger()
metrics = Metrics()
tracer = Tracer()
app = RestResolver(
    cors=CORSConfig(allow_origin=CORS_ORIGINS[0], extra_origins=CORS_ORIGINS[1:], allow_headers=[API_KEY_HEADER])
    if CORS_ORIGINS
    else None,
    enable_validation=True,  # the typed parameters below; a refusal is a 400 (invalid_request), never a 422
)
app.configure_openapi(
    title="imgsearch query API",
    version="1",
    servers=[Server(url=".", description="the stage this document is served from (GET /openapi.json)")],
    description="Content-based image retrieval over the images bucket: by image, by indexed key, by words, or an "
    "image or a key with words. Every request but `GET /`, `GET /ping` and `GET /openapi.json` needs the API key "
    f"in the `{API_KEY_HEADER}` header. Answers are JSON; errors are `{{\"error\": {{\"code\", \"message\"}}}}`.",
    security_schemes={"apiKey": APIKey.model_validate({"in": APIKeyIn.header, "name": API_KEY_HEADER})},
    security=[{"apiKey": []}],
)
PUBLIC: dict[str, Any] = {"security": []}  # an operation without the API key (the gateway's api_key_required=False)
s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
embedder = Embedder.load(Path(MODEL_DIR))
# SegmentBackend(ImageIndex.open(...), refresh_seconds=...) or S3VectorsBackend.open(..., bucket=IMAGES_BUCKET)
backend = open_backend(INDEX_LOCATION, bucket=IMAGES_BUCKET, refresh_seconds=REFRESH_SECONDS)
_thumbs = thumbnails.store(config.read(settings.THUMBNAIL_URI), backend.thumbnail_store())
THUMB_STORE = _thumbs if isinstance(_thumbs, S3Store) else None  # an EFS or local store cannot be presigned


class UnsupportedMediaType(ImgSearchError):
    """The request body is neither an image nor JSON."""


class PayloadTooLarge(ImgSearchError):
    """The query image is over the size the API accepts."""


# --- request parsing ------------------------------------------------------------------------------


def query_params() -> dict[str, Any] | None:
    event = app.current_event
    return event.multi_value_query_string_parameters or event.query_string_parameters


def search_options() -> tuple[SearchOptions, int]:
    """The search options from the query string, checked strictly (imgsearch.options), and the result URLs'
    lifetime (`expires`, up to PRESIGN_SECONDS): both refused before any search runs."""
    params = query_params()
    options = SearchOptions.from_query(params, default_k=DEFAULT_K, default_metric=DEFAULT_METRIC)
    return options, query_expiry(params, maximum=PRESIGN_SECONDS)


@functools.cache
def words() -> TextSearch:
    """The text side of the model (vocabulary, classifier head, MiniLM), loaded on the first text query."""
    return TextSearch.load(Path(MODEL_DIR))


def request_body() -> bytes:
    event = app.current_event
    text = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadParameter("the body is marked base64 but is not valid base64") from None
    return text.encode("utf-8", "surrogateescape")


def check_size(data: bytes) -> bytes:
    if len(data) > MAX_QUERY_BYTES:
        raise PayloadTooLarge(f"the query image is {len(data)} bytes; the limit is {MAX_QUERY_BYTES}")
    if not data:
        raise InvalidImage("the request has no image (empty body)", code="empty")
    return data


@dataclass(frozen=True)
class Query:
    """What POST /search asks for: an image, an indexed key, words, or an image or a key with words."""

    image: bytes | None = None
    key: str | None = None
    text: str | None = None


def parse_query() -> Query:
    """The query from a raw image body or a JSON body, and the words of `?q=` if given."""
    header = app.current_event.headers.get("Content-Type") or ""  # case-insensitive in Powertools v3
    content_type = header.split(";")[0].strip().lower()
    body = request_body()
    text = query_text(query_params())
    if content_type.startswith(IMAGE_TYPES):
        return Query(image=check_size(body), text=text)
    if content_type in ("application/json", ""):
        return json_query(body, text)
    raise UnsupportedMediaType(
        f"Content-Type {content_type!r} is not accepted: send an image (image/jpeg, image/png, ...) "
        "or application/json"
    )


def json_query(body: bytes, text: str | None) -> Query:
    """The query of a JSON body, checked by its model (SearchBody) and refused as a 400 saying what to send."""
    try:
        payload = SearchBody.model_validate_json(body or b"null")
    except ValidationError as error:
        raise BadParameter(body_problem(error)) from None
    if payload.text is not None:
        if text is not None:
            raise BadParameter('give the words once: in "text" or in ?q=, not both')
        text = payload.text
    if payload.image is None:
        return Query(key=payload.key, text=text)
    if len(payload.image) > MAX_QUERY_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge(f"the query image is over the {MAX_QUERY_BYTES}-byte limit")
    try:
        return Query(image=check_size(base64.b64decode(payload.image, validate=True)), text=text)
    except (binascii.Error, ValueError):
        raise BadParameter('"image" is not valid base64') from None


def body_problem(error: ValidationError) -> str:
    """What is wrong with a JSON body, from its model's first complaint (pydantic's own JSON parser: bounded nesting)."""
    problems = error.errors(include_url=False)
    first = problems[0]
    if first["type"] == "json_invalid":
        return f"the body is not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')}): send {JSON_FORMS}"
    if first["type"] == "model_type":
        return f"the JSON body must be an object: {JSON_FORMS}"
    extra = [str(p["loc"][0])[:40] for p in problems if p["type"] == "extra_forbidden"]
    if extra:
        named = ", ".join(repr(name) for name in extra[:3])
        return f"the JSON body may only have {', '.join(map(repr, SearchBody.model_fields))}, not {named}"
    return f'"{first["loc"][0]}" in the JSON body: {first["msg"]}; send {JSON_FORMS}'


# --- answers --------------------------------------------------------------------------------------


def presign(bucket: str, key: str, seconds: int) -> str:
    url: str = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds)
    return url


def urls(hit: Hit, seconds: int) -> dict[str, str]:
    """The hit's presigned URL, and its thumbnail's when thumbnails are kept in an S3 index store."""
    found = {"url": presign(hit.bucket, hit.key, seconds)}
    if THUMB_STORE is not None:
        name = thumbnails.name(hit.bucket, hit.key, hit.etag)
        found["thumb_url"] = presign(THUMB_STORE.bucket, THUMB_STORE.object_key(name), seconds)
    return found


def probing(options: SearchOptions) -> SearchOptions:
    """The options with one result more than asked, to tell whether another page exists (when the backend
    can give it: k below MAX_K, and on S3 Vectors offset + k below its top-K limit)."""
    limit = getattr(backend, "max_top_k", None)
    if options.k >= MAX_K or (limit is not None and options.offset + options.k + 1 > limit):
        return options
    return replace(options, k=options.k + 1)


def index_version() -> int:
    """The manifest generation the search ran on (segments); 0 for an index without versions (S3 Vectors)."""
    searcher = getattr(backend, "searcher", None)
    manifest = searcher.manifest if searcher is not None else None
    return manifest.generation if manifest else 0


def answer(
    hits: list[Hit], options: SearchOptions, seconds: int, started: float, text: TextQuery | None = None
) -> dict[str, Any]:
    """The answer for the page `options` asked (hits: searched with `probing(options)`), with paging and
    URLs valid for `seconds`."""
    has_more = len(hits) > options.k
    hits = hits[: options.k]
    following = options.offset + options.k
    has_more = has_more and following <= MAX_OFFSET
    took_ms = round((time.perf_counter() - started) * 1000, 1)
    metrics.add_metric(name="QueryMilliseconds", unit=MetricUnit.Milliseconds, value=took_ms)
    words_part = {} if text is None else {"text": {"query": text.text, "matched": [list(m) for m in text.matched]}}
    return {
        **words_part,
        "results": [
            {
                "key": h.key,
                "score": h.score,
                **urls(h, seconds),
                "size": h.size,
                "etag": h.etag,
                "tags": [[name, score] for name, score in h.tags],
            }
            for h in hits
        ],
        "metric": options.metric,
        "k": options.k,
        "offset": options.offset,
        "has_more": has_more,
        "next_offset": following if has_more else None,
        "expires_in": seconds,
        "index_version": index_version(),
        "took_ms": took_ms,
    }


@tracer.capture_method
def embed_query(data: bytes) -> Any:
    vectors, failures = embedder.embed_bytes([data])
    if failures:
        raise InvalidImage(failures[0].reason, code=failures[0].code)
    return vectors


# The routes' typed parameters are the contract (validated by Powertools, documented in GET /openapi.json); the
# route reads its options from the query string through the core (search_options), which also refuses what the
# types let through (`k=+5`, `k=1_0`, `collapse=yes`, a parameter given twice, an unknown one).


@app.post(
    "/search",
    summary="Images most similar to a query image (raw body or JSON base64) or to an indexed key, images for some "
    'words (JSON `{"text"}`), or "like this image or key, but <words>" (`text` beside `image` or `key`, or `?q=` '
    "beside a raw image body)",
    operation_id="search",
    openapi_extensions={"requestBody": SEARCH_BODY},  # read by parse_query: an image is no JSON model
)
@tracer.capture_method
def search(
    k: K = None,
    metric: Metric = None,
    min_score: MinScore = None,
    prefix: Prefix = None,
    tag: Tag = None,
    offset: Offset = None,
    expand: Expand = None,
    expires: Expires = None,
    collapse: Collapse = None,
    q: MoreWords = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    options, seconds = search_options()
    query = parse_query()
    if query.key is not None:
        logger.append_keys(query_key=query.key)
    if query.text is not None:
        return search_words(query, options, seconds, started)
    if query.key is not None:
        hits = backend.search_key(query.key, IMAGES_BUCKET, probing(options))
    else:
        hits = backend.search(embed_query(query.image), probing(options))[0]  # type: ignore[arg-type]
    return answer(hits, options, seconds, started)


@app.get(
    "/search",
    summary="Images for some words (text → image), e.g. `GET /search?q=dog+on+a+beach`",
    operation_id="search_words",
)
@tracer.capture_method
def search_by_words(
    q: Words,
    k: K = None,
    metric: Metric = None,
    min_score: MinScore = None,
    prefix: Prefix = None,
    tag: Tag = None,
    offset: Offset = None,
    expand: Expand = None,
    expires: Expires = None,
    collapse: Collapse = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    options, seconds = search_options()
    return search_words(Query(text=query_text(query_params())), options, seconds, started)


def search_words(query: Query, options: SearchOptions, seconds: int, started: float) -> dict[str, Any]:
    """Words alone, or an image or a key with words ("like this, but on a beach")."""
    logger.append_keys(query_text=query.text)
    text = words().query(query.text)  # type: ignore[arg-type]
    image = embed_query(query.image)[0] if query.image is not None else None
    hits = backend.search_text(text, probing(options), image=image, key=query.key, bucket=IMAGES_BUCKET)
    return answer(hits, options, seconds, started, text)


@app.get(
    "/similar/<key>",
    summary='"More like this": images most similar to an indexed object (API Gateway path {key+}: may contain slashes)',
    operation_id="similar",
)
@tracer.capture_method
def similar(
    key: SimilarKey,
    k: K = None,
    metric: Metric = None,
    min_score: MinScore = None,
    prefix: Prefix = None,
    tag: Tag = None,
    offset: Offset = None,
    expand: Expand = None,
    expires: Expires = None,
    collapse: Collapse = None,
    q: MoreWords = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    key = (app.current_event.path_parameters or {}).get("key") or unquote(key)  # as API Gateway decoded it
    logger.append_keys(query_key=key)
    options, seconds = search_options()
    text = query_text(query_params())
    if text is not None:  # "more like this, but <words>"
        return search_words(Query(key=key, text=text), options, seconds, started)
    hits = backend.search_key(key, IMAGES_BUCKET, probing(options))
    return answer(hits, options, seconds, started)


@app.get(
    "/",
    summary="The search page (HTML, no build step); public, it asks for the API key and sends it as x-api-key",
    operation_id="page",
    openapi_extensions=PUBLIC,
)
def page() -> Response[str]:
    """The search page (no API key: the page asks for it and sends it with every API call)."""
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=PAGE.read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@app.get(
    "/ping",
    summary="Up or not, without the API key (for load balancers and uptime checks); GET /health has the details",
    operation_id="ping",
    openapi_extensions=PUBLIC,
)
def ping() -> dict[str, Any]:
    """For a load balancer or an uptime check, without the key: is the function up and the index readable."""
    status = backend.health()["status"]
    return {"status": status, "ready": status in ("ok", "empty")}


@app.get("/health", summary="Index counts, segment count, model and encoder version", operation_id="health")
def health() -> dict[str, Any]:
    """The index as the backend reports it (status empty / ok / missing; counts null on S3 Vectors), and the model."""
    spec = embedder.spec
    model = {"name": spec.name, "sha256": spec.sha256, "dim": spec.output_dim}
    return {**backend.health(), "model": model}


@app.get(
    "/openapi.json",
    summary="This API's OpenAPI document, generated from its routes (docs/openapi.yaml adds the answers' schemas)",
    operation_id="openapi",
    openapi_extensions=PUBLIC,
)
def openapi() -> dict[str, Any]:
    return contract()


@functools.cache
def contract() -> dict[str, Any]:
    """The OpenAPI document Powertools generates from the routes, tidied: no 422 and no validation-error schemas
    (a refused parameter is a 400 `bad_parameter` here: invalid_request), and a query or path parameter's schema
    without the null of its Python default (a query string has no null: an absent parameter is not given)."""
    document: dict[str, Any] = json.loads(app.get_openapi_json_schema())
    for item in document["paths"].values():
        for operation in item.values():
            operation["responses"].pop("422", None)
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                given = [s for s in schema.pop("anyOf", [schema]) if s.get("type") != "null"]
                parameter["schema"] = {k: v for k, v in {**schema, **given[0]}.items() if k not in ("title", "description")}
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        del schemas[name]
    if not schemas:
        del document["components"]["schemas"]
    return document


# --- errors: one place --------------------------------------------------------------------------------

ERRORS: list[tuple[type[Exception], int, str]] = [
    (NoConceptMatches, 400, "no_concept_match"),
    (PayloadTooLarge, 413, "too_large"),
    (UnsupportedMediaType, 415, "unsupported_media_type"),
    (KeyNotIndexed, 404, "key_not_indexed"),
    (BadParameter, 400, "bad_parameter"),
    (IndexNotFound, 503, "index_not_ready"),
    (ModelMismatch, 500, "model_mismatch"),
    (ModelNotFound, 500, "model_incomplete"),  # the model folder lacks the text files: a deployment fault
]


def error_response(status: int, code: str, message: str) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"error": {"code": code, "message": message}}),
    )


@app.exception_handler(InvalidImage)
def invalid_image(error: InvalidImage) -> Response:
    status = 413 if error.code == "too_large" else 400
    metrics.add_metric(name="QueryRejected", unit=MetricUnit.Count, value=1)
    return error_response(status, error.code, error.reason)


@app.exception_handler(
    [
        NoConceptMatches,
        PayloadTooLarge,
        UnsupportedMediaType,
        KeyNotIndexed,
        BadParameter,
        IndexNotFound,
        ModelMismatch,
        ModelNotFound,
    ]
)
def domain_error(error: ImgSearchError) -> Response:
    for kind, status, code in ERRORS:
        if isinstance(error, kind):
            if status >= 500:
                logger.error("server-side error", extra={"code": code, "error": str(error)})
            return error_response(status, code, str(error))
    raise error  # pragma: no cover - every registered kind is in ERRORS


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response:
    """A typed parameter Powertools refused: a 400 `bad_parameter` in the core's words when the core checks that
    parameter too (imgsearch.options: one home for limits and messages), else naming it and its rule."""
    try:
        search_options()
        query_text(query_params())
    except BadParameter as bad:
        return domain_error(bad)
    return error_response(400, "bad_parameter", parameter_problem(error.errors()))


def parameter_problem(problems: Any) -> str:
    first = problems[0]
    where, name = (*first["loc"], "")[:2]
    event = app.current_event
    route = app.context["_route"]  # Powertools' matched route: its typed parameters, with their descriptions
    fields = route.dependant.path_params + route.dependant.query_params
    rule = next((f.field_info.description for f in fields if f.alias == name), None) or "see GET /openapi.json"
    if first["type"] == "missing":
        return f"the {where} parameter {name} is missing: {event.http_method} {event.path} needs {rule}"
    return f"the {where} parameter {name} is not valid ({first['msg']}): {rule}"


@app.not_found
def not_found(_: NotFoundError) -> Response:
    event = app.current_event
    return error_response(
        404, "not_found", f"no route {event.http_method} {event.path}: see the API's OpenAPI document"
    )


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return error_response(
        500, "internal", "internal error; see the function's logs (request id in the log line)"
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
