"""The local stack (`imgsearch local up`) as a real subprocess, for the end-to-end and reliability tests.

It runs in its own process group: `stop` sends SIGTERM (a clean stop, like Ctrl-C), then SIGKILL to
the whole group if it lingers. It is told the test run's pid, so it stops by itself if pytest dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "imgsearch"
API_KEY = "e2e-test-key-0123456789"
READY_SECONDS = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    api: str
    s3_endpoint: str
    bucket: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path
    images: dict[str, bytes] = field(default_factory=dict)
    baseline: int = 0  # images indexed before a test module uploaded its own

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        api_key: str | None = API_KEY,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        headers = {}
        if api_key is not None:
            headers["x-api-key"] = api_key
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.api + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, raw, kind = error.code, error.read(), error.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in kind else raw.decode("utf-8", "replace"))

    def health(self) -> dict[str, Any]:
        status, body = self.call("GET", "/health")
        assert status == 200, body
        return dict(body)

    def search_image(self, data: bytes, **params: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in {"k": "5", **params}.items())
        status, body = self.call("POST", f"/search?{query}", body=data, content_type="image/jpeg")
        assert status == 200, body
        return list(body["results"])

    def wait_for(self, condition: Any, what: str, seconds: float = 60) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the local stack exited:\n{self.log.read_text()[-3000:]}"
            value = condition()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(
            f"timed out waiting for {what}\n--- stack log ---\n{self.log.read_text()[-3000:]}"
        )

    def s3(self) -> Any:
        return self.client("s3")

    def client(self, service: str) -> Any:
        """A boto3 client of the stack's moto endpoint (s3 or sqs), with throwaway credentials."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="e2e",
            aws_secret_access_key="e2e",
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the stack's process group, then SIGKILL whatever is left."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def launch(
    *,
    log: Path,
    bucket: str,
    s3_port: int | None = None,
    api_port: int | None = None,
    data: Path | None = None,
    compact_every: float = 5,
    extra: Sequence[str] = (),
    threads: int | None = 1,
    ready_seconds: float | None = None,
) -> Stack:
    """Start `imgsearch local up` (free ports unless given; `extra` further options, e.g. --existing DIR)
    and wait until GET /health answers. `threads` None leaves IMGSEARCH_THREADS as it is."""
    s3_port, api_port = s3_port or free_port(), api_port or free_port()
    env = {**os.environ, "IMGSEARCH_LOCAL_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    if threads:
        env["IMGSEARCH_THREADS"] = str(threads)
    command = [
        str(CLI), "local", "up",
        "--s3-port", str(s3_port),
        "--api-port", str(api_port),
        "--api-key", API_KEY,
        "--bucket", bucket,
        "--compact-every", str(compact_every),
    ] + (["--data", str(data)] if data is not None else []) + list(extra)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # its own process group: stop() can end it and its children
        )
    running = Stack(
        api=f"http://127.0.0.1:{api_port}",
        s3_endpoint=f"http://127.0.0.1:{s3_port}",
        bucket=bucket,
        key=API_KEY,
        process=process,
        log=log,
    )

    def ready() -> bool:
        try:
            return running.call("GET", "/health", timeout=5)[0] == 200
        except OSError:
            return False

    try:
        running.wait_for(ready, "GET /health to answer", seconds=ready_seconds or READY_SECONDS)
    except BaseException:
        stop(process)
        raise
    return running
