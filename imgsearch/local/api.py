"""A local API Gateway: HTTP requests → REST proxy events (the deployed API's shape) → the query handler.

Routes and the API-key check follow the REST API in stacks/query_api.py (its routes are listed in
stacks/wiring.py). API Gateway's own answers come from the same table the CDK stack sets as Gateway
Responses (stacks/wiring.GATEWAY_RESPONSES): a missing or wrong `x-api-key` is 403 forbidden, an unknown
route or method 404 not_found, a body over 10 MB 413 too_large, a failing handler 502, a slow one 504;
all in the API's error shape {"error": {"code", "message"}}. So is every refusal of the HTTP layer itself
(a malformed request line, a bad Content-Length, a truncated or stalled body, headers too large): the
server answers JSON to everything, and a socket timeout stops a stalled client from holding a thread.
Bodies whose Content-Type is a binary media type reach the handler base64-encoded with isBase64Encoded,
and the handler runs one request at a time, like one Lambda instance.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

if TYPE_CHECKING:
    from stacks.wiring import GatewayResponse

STAGE = "local"
ACCOUNT = "123456789012"
IDLE_SECONDS = 5.0  # a connection that sends nothing for this long is answered 408 (mid-request) or closed
BODY_SECONDS = 30.0  # the whole body must arrive within this (API Gateway's own integration limit is 29 s)
MAX_LINE = 65536  # request line and each header line (http.server's limits); 414 / 431 beyond
MAX_QUERY_FIELDS = 100
MAX_TRAILER_LINES = 100
LINGER_SECONDS = 2.0  # after a refusal, unread input is drained for at most this long, and at most
LINGER_BYTES = 1 << 20  # this much
MAX_MESSAGE_CHARS = 200  # of the parser's reason quoted in a refusal
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP method is a token (RFC 9110 5.6.2)
DIGITS = re.compile(r"[0-9]+")
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Answer = tuple[int, list[tuple[str, str]], bytes]


class Refused(Exception):
    """A request the HTTP layer answers itself (bad framing, bad target): status and what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decoded(text: str, what: str) -> str:
    """Percent-decoding as UTF-8, strictly: invalid UTF-8 is refused, never replaced or read as Latin-1."""
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, f"the {what} is not valid UTF-8 once percent-decoded") from None


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # API Gateway resource path, e.g. /similar/{key+}
    api_key_required: bool

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters ({} when none) if this route serves the (percent-encoded) path, else None."""
        if method != self.method:
            return None
        if "{" not in self.resource:
            return {} if decoded(path, "path") == self.resource else None
        prefix, _, parameter = self.resource.partition("{")
        name = parameter.rstrip("}").rstrip("+")
        if path.startswith(prefix) and len(path) > len(prefix):
            return {name: decoded(path[len(prefix) :], "path")}
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
    try:
        pairs = parse_qs(query, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError:
        raise Refused(400, "the query string is not valid UTF-8 once percent-decoded") from None
    except ValueError:
        raise Refused(400, f"the query string has more than {MAX_QUERY_FIELDS} parameters") from None
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
        port: int,  # the local stack passes imgsearch.local.stack.API_PORT or --api-port; 0 picks a free one
        timeout_seconds: int = 29,
        idle_seconds: float = IDLE_SECONDS,
        body_seconds: float = BODY_SECONDS,
        gateway_responses: Sequence[GatewayResponse] | None = None,
        max_payload_bytes: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from stacks import wiring  # the table the CDK stack sets as Gateway Responses

        self.handler = handler
        self.api_key = api_key
        self.routes = [Route(*r) for r in routes]
        self.binary_media_types = tuple(binary_media_types)
        self.timeout_seconds = timeout_seconds
        self.idle_seconds = idle_seconds
        self.body_seconds = body_seconds
        self.responses = {r.type: r for r in (gateway_responses or wiring.GATEWAY_RESPONSES)}
        self.max_payload_bytes = max_payload_bytes or wiring.MAX_PAYLOAD_BYTES
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

    # --- answers API Gateway gives itself -------------------------------------------------------------

    def gateway(self, response_type: str, status: int | None = None) -> Answer:
        """The Gateway Response of this type (stacks/wiring.GATEWAY_RESPONSES), as API Gateway sends it."""
        response = self.responses[response_type]
        return (
            status or response.status or 400,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", response.error_type)],
            response.body.encode(),
        )

    def refusal(self, status: int, message: str) -> Answer:
        """A refusal of the HTTP layer: the DEFAULT_4XX code with the parser's reason (413: too_large)."""
        if status == 413:
            return self.gateway("REQUEST_TOO_LARGE")
        response = self.responses["DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"]
        body = {"error": {"code": response.code, "message": message[:MAX_MESSAGE_CHARS]}}
        return (
            status,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", response.error_type)],
            json.dumps(body).encode(),
        )

    # --- one request --------------------------------------------------------------------------------

    def respond(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
    ) -> Answer:
        try:
            return self._respond(method, target, headers, body, client)
        except Refused as refused:
            return self.refusal(refused.status, refused.message)

    def _respond(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, client: str
    ) -> Answer:
        parts = urlsplit(target)
        path = parts.path or "/"
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                break
        else:
            return self.gateway("MISSING_AUTHENTICATION_TOKEN")
        sent_key = next((v for k, v in headers if k.lower() == "x-api-key"), None)
        if route.api_key_required and not (
            sent_key and hmac.compare_digest(sent_key.encode(), self.api_key.encode())
        ):
            return self.gateway("INVALID_API_KEY")
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
            started = time.monotonic()
            try:
                result = self.handler(event, context)
            except Exception as error:  # an unhandled error in Lambda: API Gateway answers 502
                self.log(f"query handler raised {type(error).__name__}: {error}")
                return self.gateway("INTEGRATION_FAILURE")
            if time.monotonic() - started > self.timeout_seconds:  # API Gateway would have given up
                return self.gateway("INTEGRATION_TIMEOUT")
        try:
            return lambda_answer(result)
        except (TypeError, ValueError, KeyError) as error:  # not a proxy integration's answer
            self.log(f"query handler answered no proxy response: {type(error).__name__}: {error}")
            return self.gateway("INTEGRATION_FAILURE")

    def _request_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "imgsearch-local"
            default_request_version = "HTTP/1.0"  # refusals before the version is known get a status line
            timeout = api.idle_seconds  # every read and write on the socket (StreamRequestHandler.setup)
            expect_continue = False

            def handle_one_request(self) -> None:
                """One request, start to end; http.server's version, with every method served and no hang."""
                self.expect_continue = False
                try:
                    self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
                    for _ in range(2):  # RFC 9112 2.2: ignore empty lines before a request line
                        if self.raw_requestline not in (b"\r\n", b"\n"):
                            break
                        self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
                except (TimeoutError, ConnectionError):  # an idle keep-alive connection: close it quietly
                    self.close_connection = True
                    return
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                try:
                    if len(self.raw_requestline) > MAX_LINE:
                        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
                        self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                        return
                    if not self.parse_request():
                        if not self.requestline.strip():
                            self.send_error(HTTPStatus.BAD_REQUEST, "empty request line")
                        return  # otherwise parse_request has answered (send_error below)
                    self._serve()
                    self.wfile.flush()
                except TimeoutError:
                    self._refuse(408, f"nothing received for {api.idle_seconds:g} s: send the whole request")
                except ConnectionError:
                    self.close_connection = True

            def handle_expect_100(self) -> bool:
                self.expect_continue = True  # answered in _serve, once the framing and size are known good
                return True

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                """http.server's refusals (request line, version, headers), as JSON in the error shape."""
                status = int(code)
                reason = message or HTTPStatus(status).phrase
                if status == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:  # bad input is a 4xx
                    status, reason = 400, f"{reason}: send HTTP/1.1"
                elif status == HTTPStatus.REQUEST_URI_TOO_LONG:
                    reason = f"the request line is over {MAX_LINE} bytes: shorten the key or query string"
                elif status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
                    reason = f"{reason}: at most 100 header lines of {MAX_LINE} bytes each"
                self._refuse(status, reason)

            def _refuse(self, status: int, message: str) -> None:
                self.close_connection = True  # what follows on this connection cannot be trusted
                if self.request_version == "HTTP/0.9":
                    self.request_version = "HTTP/1.0"
                with contextlib.suppress(OSError):
                    self._send(*api.refusal(status, message))
                    self.wfile.flush()
                    self._linger()
                api.log(f"api: refused {status}: {message[:MAX_MESSAGE_CHARS]}")

            def _linger(self) -> None:
                """Close our side, then read what the client still sends for a moment (bounded): closing with
                unread input would reset the connection and could destroy the answer before it is read."""
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(LINGER_SECONDS / 4)
                deadline, drained = time.monotonic() + LINGER_SECONDS, 0
                while drained < LINGER_BYTES and time.monotonic() < deadline:
                    chunk = self.connection.recv(1 << 16)
                    if not chunk:
                        return
                    drained += len(chunk)

            def _serve(self) -> None:
                started = time.perf_counter()
                try:
                    target = self._target()
                    body = self._body()
                except Refused as refused:
                    self._refuse(refused.status, refused.message)
                    return
                status, headers, payload = api.respond(
                    self.command, target, list(self.headers.items()), body, self.client_address[0]
                )
                self._send(status, headers, payload)
                took = (time.perf_counter() - started) * 1000
                api.log(f"api: {self.command} {target.split('?')[0][:200]} → {status} ({took:.0f} ms)")

            def _target(self) -> str:
                """The method checked and the request target as text: its raw bytes are UTF-8."""
                if len(self.requestline.split()) != 3:
                    raise Refused(400, "the request line must be: METHOD /path HTTP/1.1")
                if not TOKEN.fullmatch(self.command):
                    raise Refused(400, "the method is not an HTTP token: use GET or POST")
                try:  # http.server decoded the request line as Latin-1: undo that, then read UTF-8
                    return self.path.encode("latin-1").decode("utf-8")
                except UnicodeDecodeError:
                    raise Refused(
                        400, "the request target is not valid UTF-8: percent-encode the key"
                    ) from None

            def _body(self) -> bytes:
                """The request body, framed by Content-Length or chunked, within the size and time limits."""
                lengths = self.headers.get_all("Content-Length") or []
                codings = self.headers.get_all("Transfer-Encoding") or []
                if codings and lengths:
                    raise Refused(400, "send Content-Length or Transfer-Encoding, not both")
                if codings:
                    if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
                        raise Refused(400, "the only transfer coding accepted is chunked")
                    self._continue()
                    return self._chunked(time.monotonic() + api.body_seconds)
                if len({v.strip() for v in lengths}) > 1:
                    raise Refused(400, "Content-Length is given more than once with different values")
                text = lengths[0].strip() if lengths else "0"
                if not DIGITS.fullmatch(text):
                    raise Refused(400, f"Content-Length must be a whole number of bytes, not {text[:40]!r}")
                if len(text) > 18 or int(text) > api.max_payload_bytes:  # (int() refuses 4300+ digits)
                    raise Refused(413, "too large")
                self._continue()
                return self._exactly(int(text), time.monotonic() + api.body_seconds)

            def _continue(self) -> None:
                if self.expect_continue:
                    self.expect_continue = False
                    self.send_response_only(HTTPStatus.CONTINUE)
                    self.end_headers()

            def _arm(self, deadline: float) -> None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Refused(408, f"the body did not arrive within {api.body_seconds:g} s")
                self.connection.settimeout(min(api.idle_seconds, remaining))

            def _exactly(self, count: int, deadline: float) -> bytes:
                data = bytearray()
                while len(data) < count:
                    self._arm(deadline)
                    try:
                        chunk = self.rfile.read1(min(count - len(data), 1 << 16))
                    except TimeoutError:
                        raise Refused(
                            408, f"the body stopped after {len(data)} of {count} bytes: send all of it"
                        ) from None
                    if not chunk:
                        raise Refused(400, f"the body ended after {len(data)} of {count} bytes")
                    data += chunk
                self.connection.settimeout(api.idle_seconds)
                return bytes(data)

            def _line(self, deadline: float) -> bytes:
                line = bytearray()
                while not line.endswith(b"\n"):
                    if len(line) > 4096:
                        raise Refused(400, "a chunk-size or trailer line is over 4096 bytes")
                    line += self._exactly(1, deadline)
                return bytes(line)

            def _chunked(self, deadline: float) -> bytes:
                body = bytearray()
                while True:
                    size = self._line(deadline).split(b";", 1)[0].strip()
                    if not CHUNK_SIZE.fullmatch(size):
                        raise Refused(400, "a chunk size must be hexadecimal digits")
                    count = int(size, 16)
                    if count == 0:
                        break
                    if len(body) + count > api.max_payload_bytes:
                        raise Refused(413, "too large")
                    body += self._exactly(count, deadline)
                    if self._exactly(2, deadline) != b"\r\n":
                        raise Refused(400, "a chunk must end with CRLF")
                for _ in range(MAX_TRAILER_LINES):  # trailer fields, ignored, up to the empty line
                    if self._line(deadline).strip() == b"":
                        return bytes(body)
                raise Refused(400, f"more than {MAX_TRAILER_LINES} trailer lines")

            def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # api.log says enough
                pass

        return Request


def lambda_answer(result: dict[str, Any]) -> Answer:
    """A proxy integration's answer (statusCode, headers, multiValueHeaders, body, isBase64Encoded)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        raise ValueError("the answer has no statusCode")
    headers: dict[str, list[str]] = {k: [str(v)] for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = [str(v) for v in values]
    text = result.get("body") or ""
    payload = base64.b64decode(text) if result.get("isBase64Encoded") else str(text).encode("utf-8")
    return int(result["statusCode"]), [(k, v) for k, values in headers.items() for v in values], payload
