"""A local API Gateway: HTTP requests → REST proxy events (the deployed API's shape) → the query handler.

Routes and the API-key check follow the REST API in stacks/query_api.py (its routes are listed in
stacks/wiring.py): a missing or wrong `x-api-key` is 403 {"message": "Forbidden"}, an unknown route is
403 {"message": "Missing Authentication Token"}, bodies whose Content-Type is a binary media type
reach the handler base64-encoded with isBase64Encoded, and the handler runs one request at a time,
like one Lambda instance.
"""

from __future__ import annotations

import base64
import hmac
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway REST payload limit
STAGE = "local"
ACCOUNT = "123456789012"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # API Gateway resource path, e.g. /similar/{key+}
    api_key_required: bool

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters ({} when none) if this route serves the request, else None."""
        if method != self.method:
            return None
        if "{" not in self.resource:
            return {} if path == self.resource else None
        prefix, _, parameter = self.resource.partition("{")
        name = parameter.rstrip("}").rstrip("+")
        if path.startswith(prefix) and len(path) > len(prefix):
            return {name: unquote(path[len(prefix) :])}
        return None


@dataclass
class LambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name: str
    timeout_seconds: int = 29
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    aws_request_id: str = ""

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"
        self._started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def binary(content_type: str, binary_media_types: Sequence[str]) -> bool:
    """Whether API Gateway passes this body base64-encoded (its binaryMediaTypes, with `type/*`)."""
    kind = content_type.split(";")[0].strip().lower()
    for pattern in binary_media_types:
        if pattern.endswith("/*") and kind.startswith(pattern[:-1]):
            return True
        if kind == pattern:
            return True
    return False


def proxy_event(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route,
    path_parameters: dict[str, str],
    source_ip: str,
    binary_media_types: Sequence[str],
    api_key: str | None,
) -> dict[str, Any]:
    """The event API Gateway's REST proxy integration sends (see tests/events/apigw_rest_*.json)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    pairs = parse_qs(query, keep_blank_values=True)
    content_type = next((v for k, v in single.items() if k.lower() == "content-type"), "")
    is_binary = bool(body) and binary(content_type, binary_media_types)
    now = datetime.now(UTC)
    request_id = str(uuid.uuid4())
    user_agent = next((v for k, v in single.items() if k.lower() == "user-agent"), "")
    return {
        "resource": route.resource,
        "path": raw_path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in pairs.items()} or None,
        "multiValueQueryStringParameters": pairs or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{STAGE}{raw_path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": user_agent,
                **({"apiKey": api_key, "apiKeyId": "local"} if api_key else {}),
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": (base64.b64encode(body).decode() if is_binary else body.decode("utf-8", "replace"))
        if body
        else None,
        "isBase64Encoded": is_binary,
    }


class LocalApi:
    """ThreadingHTTPServer on 127.0.0.1 in front of the query handler."""

    def __init__(
        self,
        *,
        handler: Handler,
        api_key: str,
        routes: Sequence[tuple[str, str, bool]],
        binary_media_types: Sequence[str],
        host: str = "127.0.0.1",
        port: int = 8080,
        timeout_seconds: int = 29,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.handler = handler
        self.api_key = api_key
        self.routes = [Route(*r) for r in routes]
        self.binary_media_types = tuple(binary_media_types)
        self.timeout_seconds = timeout_seconds
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._invoke = threading.Lock()  # one Lambda instance: one request at a time
        self.server = ThreadingHTTPServer((host, port), self._request_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    # --- one request --------------------------------------------------------------------------------

    def respond(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        path = parts.path or "/"
        for route in self.routes:
            parameters = route.match(method, unquote(path) if "{" not in route.resource else path)
            if parameters is not None:
                break
        else:
            return gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        sent_key = next((v for k, v in headers if k.lower() == "x-api-key"), None)
        if route.api_key_required and not (
            sent_key and hmac.compare_digest(sent_key.encode(), self.api_key.encode())
        ):
            return gateway_error(403, "Forbidden", "ForbiddenException")
        event = proxy_event(
            method=method,
            raw_path=path,
            query=parts.query,
            headers=headers,
            body=body,
            route=route,
            path_parameters=parameters,
            source_ip=client,
            binary_media_types=self.binary_media_types,
            api_key=sent_key if route.api_key_required else None,
        )
        context = LambdaContext(
            function_name="imgsearch-local-query",
            timeout_seconds=self.timeout_seconds,
            aws_request_id=event["requestContext"]["requestId"],
        )
        with self._invoke:
            try:
                result = self.handler(event, context)
            except Exception as error:  # an unhandled error in Lambda: API Gateway answers 502
                self.log(f"query handler raised {type(error).__name__}: {error}")
                return gateway_error(502, "Internal server error", "InternalServerErrorException")
        return lambda_answer(result)

    def _request_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "imgsearch-local"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_PAYLOAD_BYTES:
                    self.close_connection = True
                    self._send(*gateway_error(413, "Request Too Long", "RequestTooLongException"))
                    return
                body = self.rfile.read(length) if length else b""
                started = time.perf_counter()
                status, headers, payload = api.respond(
                    self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                )
                self._send(status, headers, payload)
                took = (time.perf_counter() - started) * 1000
                api.log(f"api: {self.command} {self.path.split('?')[0]} → {status} ({took:.0f} ms)")

            def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:  # the line in _serve says enough
                pass

        return Request


def gateway_error(status: int, message: str, kind: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """An answer API Gateway itself gives (not the function): {"message": ...} and x-amzn-ErrorType."""
    return (
        status,
        [("Content-Type", "application/json"), ("x-amzn-ErrorType", kind)],
        json.dumps({"message": message}).encode(),
    )


def lambda_answer(result: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """A proxy integration's answer (statusCode, headers, multiValueHeaders, body, isBase64Encoded)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return gateway_error(502, "Internal server error", "InternalServerErrorException")
    headers: dict[str, list[str]] = {k: [str(v)] for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = [str(v) for v in values]
    text = result.get("body") or ""
    payload = base64.b64decode(text) if result.get("isBase64Encoded") else str(text).encode("utf-8")
    return int(result["statusCode"]), [(k, v) for k, values in headers.items() for v in values], payload
