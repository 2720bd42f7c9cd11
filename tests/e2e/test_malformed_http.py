"""Hand-made malformed HTTP over raw sockets to the local API: every answer is JSON in the error shape, in time.

Each case sends bytes no well-behaved client would (bad request lines and methods, huge headers, bad
Content-Length, truncated and chunked bodies, bad query values, nested JSON, extra JSON fields, a path that
is not UTF-8, no key, no route) and checks the status, the body {"error": {"code", "message"}} and that the
answer came within seconds. scripts/fuzz_api.py sends the same set (`malformed_cases`) and counts.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from imgsearch.local.api import IDLE_SECONDS

from .conftest import Stack, synthetic_image

pytestmark = pytest.mark.slow

PROMPT_SECONDS = 3.0  # an answer that needs no waiting on the client
STALLED_SECONDS = IDLE_SECONDS + 3.0  # an answer to a client that stalls: the server's idle timeout, and some
KEY = "malformed/café-ü.jpg"  # an indexed key with non-ASCII characters
KEY_SEED = 31_337_002  # its image (a seed no other end-to-end test uses: searches by image stay unambiguous)
API_KEY = b"<api-key>"  # replaced by the stack's key when sent
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Malformed:
    """One hand-made request and the answer it must get."""

    name: str
    data: bytes  # API_KEY stands for the key
    status: int
    code: str | None  # the error code, or None for a success
    half_close: bool = False  # the client closes its side after sending
    within: float = PROMPT_SECONDS


def exchange(
    api: str, data: bytes, *, half_close: bool = False, timeout: float = 15.0, key: str = ""
) -> Reply:
    """Send raw bytes, read one HTTP answer (status line, headers, Content-Length body)."""
    address = urlsplit(api)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        # the server may answer and close before reading all of it: the answer is still there
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data.replace(API_KEY, key.encode()))
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed without an answer after {received[:200]!r}")
            received += chunk
            if received.startswith(b"HTTP/1.1 100 ") and b"\r\n\r\n" in received:
                received = received.split(b"\r\n\r\n", 1)[1]  # an interim 100 Continue: read on
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed in the middle of the answer")
            body += chunk
    return Reply(status, headers, body[:length], time.monotonic() - started)


def request(
    method: str,
    target: str | bytes,
    *,
    key: bool = True,
    headers: Sequence[str] = (),
    body: bytes = b"",
    length: bool = True,
) -> bytes:
    """Request bytes: the request line, Host, the API key (unless key=False), headers, Content-Length, body."""
    line = target if isinstance(target, bytes) else target.encode()
    head = [b"Host: 127.0.0.1", *(h.encode() for h in headers)]
    if key:
        head.append(b"x-api-key: " + API_KEY)
    if body and length:
        head.append(b"Content-Length: %d" % len(body))
    return (
        method.encode()
        + b" "
        + line
        + b" HTTP/1.1\r\n"
        + b"".join(h + b"\r\n" for h in head)
        + b"\r\n"
        + body
    )


def chunked(*chunks: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + end


def error_shape(reply: Reply) -> str | None:
    """What is wrong with the answer's shape ({"error": {"code", "message"}} as application/json), or None."""
    if not reply.headers.get("content-type", "").startswith("application/json"):
        return f"Content-Type {reply.headers.get('content-type')!r}"
    try:
        body = reply.json()
    except ValueError:
        return "not JSON"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict)):
        return f"not the error shape: {body!r:.200}"
    error = body["error"]
    if set(error) != {"code", "message"} or not all(isinstance(error[k], str) and error[k] for k in error):
        return f"not the error shape: {body!r:.200}"
    return None


def malformed_cases() -> list[Malformed]:
    """The hand-made set: each request and the answer it must get."""
    similar = f"/similar/{quote(KEY)}"
    json_type = "Content-Type: application/json"
    key_body = json.dumps({"key": KEY}).encode()
    cases = [
        # the request line
        Malformed("garbage", b"\x00\x01\x02\r\n\r\n", 400, "bad_request"),
        Malformed("only spaces", b"   \r\n\r\n", 400, "bad_request"),
        Malformed("only empty lines", b"\r\n\r\n\r\n\r\n", 400, "bad_request"),
        Malformed("HTTP/0.9 form", b"GET /health\r\n\r\n", 400, "bad_request"),
        Malformed("four words", b"GET /health HTTP/1.1 extra\r\n\r\n", 400, "bad_request"),
        Malformed("bad version", b"GET /health HTTP/x.y\r\n\r\n", 400, "bad_request"),
        Malformed("not HTTP", b"GET /health FTP/1.1\r\n\r\n", 400, "bad_request"),
        Malformed("HTTP/2.0", b"GET /health HTTP/2.0\r\n\r\n", 400, "bad_request"),
        Malformed("HTTP/3.0", b"GET /health HTTP/3.0\r\n\r\n", 400, "bad_request"),
        Malformed("method not a token", b"G(T /health HTTP/1.1\r\n\r\n", 400, "bad_request"),
        Malformed("100000-character path", request("GET", "/similar/" + "a" * 100_000), 414, "bad_request"),
        # headers
        Malformed(
            "a header over 64 KiB",
            request("GET", "/health", headers=[f"X-Big: {'a' * 70_000}"]),
            431,
            "bad_request",
        ),
        Malformed(
            "150 headers",
            request("GET", "/health", headers=[f"X-N{i}: y" for i in range(150)]),
            431,
            "bad_request",
        ),
        Malformed(
            "headers stop half way",
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            408,
            "bad_request",
            within=STALLED_SECONDS,
        ),
        # methods and routes
        *(
            Malformed(
                f"method {m}", request(m, "127.0.0.1:443" if m == "CONNECT" else "/health"), 404, "not_found"
            )
            for m in ("TRACE", "CONNECT", "PROPFIND", "get", "Get", "DELETE", "PUT", "BREW")
        ),
        Malformed("unknown route", request("GET", "/no-such-route"), 404, "not_found"),
        Malformed("unknown route, no key", request("GET", "/no-such-route", key=False), 404, "not_found"),
        Malformed("empty key in the path", request("GET", "/similar/"), 404, "not_found"),
        # the API key
        Malformed("no key", request("GET", "/health", key=False), 403, "forbidden"),
        Malformed(
            "empty key", request("GET", "/health", key=False, headers=["x-api-key: "]), 403, "forbidden"
        ),
        Malformed(
            "wrong key", request("GET", "/health", key=False, headers=["x-api-key: wrong"]), 403, "forbidden"
        ),
        Malformed(
            "5000-byte key",
            request("GET", "/health", key=False, headers=["x-api-key: " + "x" * 5000]),
            403,
            "forbidden",
        ),
        # Content-Length and Transfer-Encoding
        *(
            Malformed(
                f"Content-Length {name}",
                request("POST", "/search", headers=[json_type, *headers]),
                400,
                "bad_request",
            )
            for name, headers in {
                "letters": ["Content-Length: abc"],
                "negative": ["Content-Length: -1"],
                "plus sign": ["Content-Length: +5"],
                "fraction": ["Content-Length: 1.5"],
                "hex": ["Content-Length: 0x10"],
                "list": ["Content-Length: 5, 5"],
                "twice, different": ["Content-Length: 5", "Content-Length: 6"],
                "Arabic-Indic digits": ["Content-Length: ١٢"],
                "with chunked": ["Content-Length: 5", "Transfer-Encoding: chunked"],
                "with gzip coding": ["Transfer-Encoding: gzip"],
                "with gzip, chunked": ["Transfer-Encoding: gzip, chunked"],
            }.items()
        ),
        *(
            Malformed(
                f"Content-Length {length}",
                request("POST", "/search", headers=[f"Content-Length: {length}"]),
                413,
                "too_large",
            )
            for length in (MAX_PAYLOAD_BYTES + 1, 10**15, 10**40)
        ),
        Malformed(
            "Expect 100-continue, oversized",
            request(
                "POST",
                "/search",
                headers=[f"Content-Length: {MAX_PAYLOAD_BYTES + 1}", "Expect: 100-continue"],
            ),
            413,
            "too_large",
        ),
        Malformed(
            "body shorter than Content-Length, stalled",
            request("POST", "/search", headers=["Content-Length: 100"]) + b'{"key": ',
            408,
            "bad_request",
            within=STALLED_SECONDS,
        ),
        Malformed(
            "body shorter than Content-Length, closed",
            request("POST", "/search", headers=["Content-Length: 100"]) + b'{"key": ',
            400,
            "bad_request",
            half_close=True,
        ),
        # chunked bodies
        Malformed(
            "chunked JSON body",
            request(
                "POST",
                "/search?k=1",
                headers=[json_type, "Transfer-Encoding: chunked"],
                body=chunked(key_body[:5], key_body[5:]),
                length=False,
            ),
            200,
            None,
        ),
        *(
            Malformed(
                f"chunked, {name}",
                request("POST", "/search", headers=["Transfer-Encoding: chunked"], body=body, length=False),
                400,
                "bad_request",
                half_close=True,
            )
            for name, body in {
                "size not hex": b"zz\r\nabc\r\n0\r\n\r\n",
                "negative size": b"-3\r\nabc\r\n0\r\n\r\n",
                "no CRLF after the data": b"3\r\nabcXY0\r\n\r\n",
                "size line too long": b"1" + b"0" * 5000 + b"\r\n",
                "cut short": b"10\r\nabc",
            }.items()
        ),
        Malformed(
            "chunked, over the limit",
            request(
                "POST",
                "/search",
                headers=["Transfer-Encoding: chunked"],
                body=b"%x\r\n" % (MAX_PAYLOAD_BYTES + 1),
                length=False,
            ),
            413,
            "too_large",
        ),
        Malformed(
            "chunked, stalled",
            request(
                "POST", "/search", headers=["Transfer-Encoding: chunked"], body=b"10\r\nabc", length=False
            ),
            408,
            "bad_request",
            within=STALLED_SECONDS,
        ),
        # the path
        Malformed("raw UTF-8 path", request("GET", f"/similar/{KEY}?k=1".encode()), 200, None),
        Malformed("percent-encoded UTF-8 path", request("GET", f"{similar}?k=1"), 200, None),
        Malformed("Latin-1 byte in the path", request("GET", b"/similar/caf\xe9.jpg"), 400, "bad_request"),
        Malformed("cut UTF-8 sequence in the path", request("GET", b"/similar/\xc3"), 400, "bad_request"),
        Malformed(
            "percent-encoded non-UTF-8 path", request("GET", "/similar/%E9%FF.jpg"), 400, "bad_request"
        ),
        Malformed(
            "an unindexed key",
            request("GET", f"/similar/{quote('malformed/nowhere-é.jpg')}"),
            404,
            "key_not_indexed",
        ),
        Malformed(
            "raw Arabic-Indic digits in k",
            request("GET", f"{similar}?k=".encode() + "١٢".encode()),
            400,
            "bad_parameter",
        ),
    ]
    for query in BAD_QUERIES:
        code = "bad_request" if "%FF" in query else "bad_parameter"  # not UTF-8: the HTTP layer refuses it
        cases.append(Malformed(f"GET ?{query}", request("GET", f"{similar}?{query}"), 400, code))
        cases.append(
            Malformed(
                f"POST ?{query}",
                request("POST", f"/search?{query}", headers=[json_type], body=key_body),
                400,
                code,
            )
        )
    for name, body in BAD_BODIES.items():
        cases.append(
            Malformed(
                f"JSON body: {name}",
                request("POST", "/search", headers=[json_type], body=body),
                400,
                "bad_parameter",
            )
        )
    return cases


BAD_QUERIES = [
    "k=",
    "k",
    "k=%205",
    "k=+5",
    "k=%2B5",
    "k=%D9%A1%D9%A2",  # Arabic-Indic ١٢, percent-encoded
    "k=0",
    "k=1001",
    "k=1e3",
    "k=5.0",
    "k=-1",
    "k=1&k=2",
    "metric=",
    "metric=euclid",
    "metric=HYBRID",
    "offset=1e20",
    "offset=100000000000000000000",
    "offset=10001",
    "offset=-1",
    "offset=",
    "min_score=nan",
    "min_score=NaN",
    "min_score=inf",
    "min_score=-inf",
    "min_score=1e309",
    "min_score=",
    "min_score=2",
    "min_score=0x1p-2",
    "colour=red",
    "=5",
    "k=%FF",
]

BAD_BODIES = {
    "100000 nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "100000 nested objects": b'{"key": ' * 100_000 + b"1" + b"}" * 100_000,
    "an extra field": json.dumps({"key": KEY, "k": 3}).encode(),
    "image and key": json.dumps({"key": KEY, "image": "aGk="}).encode(),
    "no field": b"{}",
    "an array": json.dumps([{"key": KEY}]).encode(),
    "a number as key": b'{"key": 5}',
    "a 5000-digit number": b'{"key": ' + b"9" * 5000 + b"}",
    "a lone surrogate": b'{"key": "\\ud800"}',
    "not JSON": b"{key: 1}",
}

CASES = malformed_cases()


@pytest.fixture(scope="module")
def indexed(stack: Stack) -> Stack:
    """The stack with KEY indexed (its key has non-ASCII characters)."""
    stack.s3().put_object(
        Bucket=stack.bucket, Key=KEY, Body=synthetic_image(KEY_SEED), ContentType="image/jpeg"
    )
    stack.wait_for(
        lambda: stack.call("GET", f"/similar/{quote(KEY)}?k=1")[0] == 200,
        f"{KEY} to be searchable",
        seconds=90,
    )
    return stack


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_malformed_request_gets_its_answer_in_the_error_shape_in_time(
    indexed: Stack, case: Malformed
) -> None:
    reply = exchange(indexed.api, case.data, half_close=case.half_close, key=indexed.key)
    assert reply.status == case.status, (reply.status, reply.body[:300])
    assert reply.seconds < case.within, reply.seconds
    if case.code is None:
        assert reply.json()["results"][0]["key"] == KEY  # the search found the indexed key
    else:
        assert error_shape(reply) is None, error_shape(reply)
        assert reply.json()["error"]["code"] == case.code, reply.json()


def test_the_cases_cover_every_finding_of_the_issue() -> None:
    names = {c.name for c in CASES}
    for finding in (
        "method TRACE",
        "method CONNECT",
        "method get",
        "100000-character path",
        "Content-Length letters",
    ):
        assert finding in names
    for query in (
        "k=",
        "k",
        "k=%205",
        "k=%2B5",
        "metric=",
        "offset=1e20",
        "min_score=nan",
        "min_score=1e309",
    ):
        assert f"GET ?{query}" in names
    assert "JSON body: 100000 nested arrays" in names and "JSON body: an extra field" in names


def test_the_server_still_answers_after_all_of_that(stack: Stack) -> None:
    reply = exchange(stack.api, request("GET", "/health"), key=stack.key)
    assert reply.status == 200 and reply.json()["status"] in ("ok", "empty")
