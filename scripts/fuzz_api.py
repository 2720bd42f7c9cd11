#!/usr/bin/env python3
"""Fuzz the query API: the hand-made malformed set, then schemathesis from docs/openapi.yaml; print figures.

    .venv/bin/python scripts/fuzz_api.py                          # starts `imgsearch local up` on free ports
    .venv/bin/python scripts/fuzz_api.py --examples 200 --max-seconds 600
    .venv/bin/python scripts/fuzz_api.py --api http://127.0.0.1:18480 --key KEY  # an API already running

The malformed set is tests/e2e/test_malformed_http.py's (raw sockets: bad request lines, methods,
Content-Length, chunked bodies, query values, JSON bodies, paths, keys); schemathesis runs its examples,
coverage and fuzzing phases with positive and negative cases, checking: no 5xx, every status documented,
every answer of the documented content type and schema, invalid input refused. Everything is bounded: the
number of examples per operation, a timeout per request and --max-seconds for the schemathesis run.

Prints the requests sent, the answers by status, the 5xx seen, the non-JSON answers seen (the search
page, GET /, is HTML by design and not counted), the slowest answer, and every failure; exits 1 on any.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "openapi.yaml"
CLI = Path(sys.executable).parent / "imgsearch"
READY_SECONDS = 120
INDEXED_SECONDS = 90
REQUEST_SECONDS = 10.0

sys.path.insert(0, str(ROOT))
# Hypothesis (under schemathesis) keeps a cache directory: keep it out of the working tree.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "imgsearch-fuzz-hypothesis")
)


@dataclass
class Tally:
    """What the API answered: counts by status, the 5xx and non-JSON answers, the slowest, the failures."""

    by_status: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    non_json: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    sent: int = 0
    no_answer: int = 0

    def answer(
        self, label: str, status: int, content_type: str, seconds: float, *, html_ok: bool = False
    ) -> None:
        self.sent += 1
        self.by_status[status] += 1
        if status >= 500:
            self.server_errors.append(f"{status} {label}")
        if not content_type.startswith("application/json") and not (
            html_ok and content_type.startswith("text/html")
        ):
            self.non_json.append(f"{status} {content_type or '(no Content-Type)'} {label}")
        if seconds > self.slowest[0]:
            self.slowest = (seconds, label)


# --- a local stack of our own ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(api: str, path: str, key: str) -> int:
    request = urllib.request.Request(api + path, headers={"x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait(condition: Any, seconds: float, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the local stack exited (code {process.returncode}) before {what}")
        if condition():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out after {seconds:g} s waiting for {what}")


@contextlib.contextmanager
def local_stack(log: Path) -> Iterator[tuple[str, str, str, str]]:
    """`imgsearch local up` on free ports in its own process group: (api, key, s3 endpoint, bucket)."""
    s3_port, api_port, key, bucket = free_port(), free_port(), secrets.token_hex(16), "fuzz-images"
    env = {**os.environ, "IMGSEARCH_LOCAL_PARENT_PID": str(os.getpid()), "IMGSEARCH_THREADS": "1"}
    command = [str(CLI), "local", "up", "--s3-port", str(s3_port), "--api-port", str(api_port)]
    command += ["--api-key", key, "--bucket", bucket, "--compact-every", "0"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait(lambda: status_of(api, "/health", key) == 200, READY_SECONDS, "GET /health to answer", process)
        yield api, key, f"http://127.0.0.1:{s3_port}", bucket
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def index_the_key(api: str, key: str, s3_endpoint: str, bucket: str, object_key: str) -> None:
    """Upload one image under the malformed set's key and wait until it is searchable."""
    import boto3

    from tests.e2e.test_malformed_http import KEY_SEED
    from tests.imagegen import synthetic_image

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="fuzz",
        aws_secret_access_key="fuzz",
    )
    image = synthetic_image(KEY_SEED, size=160, fmt="JPEG", shapes=4)
    s3.put_object(Bucket=bucket, Key=object_key, Body=image, ContentType="image/jpeg")
    path = f"/similar/{quote(object_key)}?k=1"
    wait(lambda: status_of(api, path, key) == 200, INDEXED_SECONDS, f"{object_key} to be searchable")


# --- the two runs ------------------------------------------------------------------------------------------


def run_malformed(api: str, key: str, tally: Tally) -> None:
    from tests.e2e.test_malformed_http import exchange, malformed_cases

    for case in malformed_cases():
        label = f"malformed: {case.name}"
        try:
            reply = exchange(api, case.data, half_close=case.half_close, key=key)
        except OSError as error:
            tally.no_answer += 1
            tally.failures.append(f"{label}: no answer ({type(error).__name__}: {error})")
            continue
        tally.answer(label, reply.status, reply.headers.get("content-type", ""), reply.seconds)
        if reply.status != case.status:
            tally.failures.append(f"{label}: {reply.status}, expected {case.status}: {reply.body[:200]!r}")
        elif reply.seconds >= case.within:
            tally.failures.append(f"{label}: answered in {reply.seconds:.1f} s, over {case.within:g} s")


def run_schemathesis(
    api: str, key: str, *, examples: int, max_seconds: int, seed: int | None, tally: Tally
) -> int:
    """The schemathesis engine over docs/openapi.yaml; returns the number of operations it tested."""
    import schemathesis
    from schemathesis.engine import events, from_schema

    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
    config = schemathesis.Config.from_dict(
        {
            "base-url": api,
            "headers": {"x-api-key": key},
            "max-time": max_seconds,
            "request-timeout": REQUEST_SECONDS,
            "workers": 1,
            "cache": {"enabled": False},
            **({"seed": seed} if seed is not None else {}),
            "generation": {"mode": "all", "max-examples": examples, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True, "generate-duplicate-query-parameters": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in checks}},
        }
    )
    schema = schemathesis.openapi.from_path(SPEC, config=config)

    def after_call(context: Any, case: Any, response: Any) -> None:
        label = f"schemathesis: {case.method} {case.formatted_path}"
        content_type = (response.headers.get("content-type") or [""])[0]
        tally.answer(label, response.status_code, content_type, response.elapsed, html_ok=case.path == "/")

    def after_network_error(context: Any, case: Any, request: Any) -> None:
        tally.no_answer += 1
        tally.failures.append(f"schemathesis: {case.method} {case.formatted_path}: no answer")

    schema.hooks.register_hook_with_name(after_call, "after_call")
    schema.hooks.register_hook_with_name(after_network_error, "after_network_error")
    operations: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.recorder.label:
            operations.add(event.recorder.label)
            for case_id, nodes in event.recorder.checks.items():
                for node in nodes:
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        case = event.recorder.cases[case_id].value
                        tally.failures.append(
                            f"schemathesis: {node.name}: {case.method} {case.formatted_path}: "
                            f"{getattr(failure, 'title', '')} {getattr(failure, 'message', '')}".strip()[:400]
                        )
        elif isinstance(event, events.NonFatalError):
            tally.failures.append(f"schemathesis error ({event.label}): {event.info.format()[:400]}")
        elif isinstance(event, events.FatalError):
            tally.failures.append(f"schemathesis fatal error: {event.exception!r}")
    return len(operations)


def report(tally: Tally, *, malformed: int, operations: int) -> None:
    print(
        f"requests sent          {tally.sent} ({malformed} hand-made malformed, {tally.sent - malformed} schemathesis over {operations} operations)"
    )
    print("answers by status      " + ", ".join(f"{s}: {n}" for s, n in sorted(tally.by_status.items())))
    print(f"5xx seen               {len(tally.server_errors)}")
    print(f"non-JSON answers seen  {len(tally.non_json)}")
    print(f"no answer              {tally.no_answer}")
    print(f"slowest answer         {tally.slowest[0] * 1000:.0f} ms ({tally.slowest[1]})")
    for title, lines in (
        ("5xx", tally.server_errors),
        ("non-JSON", tally.non_json),
        ("failures", tally.failures),
    ):
        if lines:
            print(f"\n{title} ({len(lines)}):")
            for line in sorted(set(lines))[:50]:
                print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", help="URL of a running API (default: start a local stack)")
    parser.add_argument("--key", help="its API key (with --api)")
    parser.add_argument(
        "--examples", type=int, default=200, help="schemathesis examples per operation and phase"
    )
    parser.add_argument("--max-seconds", type=int, default=600, help="bound on the schemathesis run")
    parser.add_argument("--seed", type=int, help="schemathesis seed (reproducible runs)")
    parser.add_argument(
        "--log", type=Path, default=Path("/tmp/imgsearch-fuzz-stack.log"), help="the local stack's log"
    )
    args = parser.parse_args()
    if bool(args.api) != bool(args.key):
        parser.error("give --api and --key together")
    from tests.e2e.test_malformed_http import KEY, malformed_cases

    tally = Tally()
    with contextlib.ExitStack() as stack:
        if args.api:
            api, key = args.api.rstrip("/"), args.key
            print(f"API {api} (its index should hold {KEY!r} for the malformed set's searches)")
        else:
            api, key, s3_endpoint, bucket = stack.enter_context(local_stack(args.log))
            print(f"local stack at {api} (log: {args.log})")
            index_the_key(api, key, s3_endpoint, bucket, KEY)
        started = time.monotonic()
        run_malformed(api, key, tally)
        malformed = len(malformed_cases())
        print(f"malformed set: {malformed} requests in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        operations = run_schemathesis(
            api, key, examples=args.examples, max_seconds=args.max_seconds, seed=args.seed, tally=tally
        )
        print(f"schemathesis: {tally.sent - malformed} requests in {time.monotonic() - started:.1f} s\n")
    report(tally, malformed=malformed, operations=operations)
    return 1 if tally.failures or tally.server_errors or tally.non_json else 0


if __name__ == "__main__":
    sys.exit(main())
