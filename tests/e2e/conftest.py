"""The local stack (`imgsearch local up`) as a real subprocess on free ports, always stopped afterwards.

The stack runs in its own process group: teardown sends SIGTERM (a clean stop), then SIGKILL to the
whole group if it lingers. It is also told the test run's pid, so it stops by itself if pytest dies.
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
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..imagegen import synthetic_image as _synthetic_image

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
CLI = Path(sys.executable).parent / "imgsearch"
API_KEY = "e2e-test-key-0123456789"
READY_SECONDS = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def synthetic_image(seed: int) -> bytes:
    """A 160-pixel JPEG whose content differs clearly from every other seed's."""
    return _synthetic_image(seed, size=160, fmt="JPEG", shapes=4)


def sample_images(count: int, *, prefix: str, per_class: int = 2, skip: int = 0) -> dict[str, bytes]:
    """key → JPEG bytes: Corel-1k photos (per_class of each class, after skipping `skip`) from
    ../shared/datasets when present, else generated images (the tests run on a fresh clone too)."""
    corel = DATASETS / "corel1k.zip"
    if corel.is_file():
        with zipfile.ZipFile(corel) as archive:
            rows = archive.read("corel1k/labels.csv").decode().splitlines()[1:]
            picked: dict[str, list[str]] = {}
            for row in rows:
                path, label, split = row.split(",")
                if split == "db":
                    picked.setdefault(label, []).append(path)
            chosen = [p for group in picked.values() for p in group[skip : skip + per_class]][:count]
            return {
                f"{prefix}/{picked_label(picked, p)}-{Path(p).name}": archive.read(f"corel1k/{p}")
                for p in chosen
            }
    return {f"{prefix}/{i:02d}.jpg": synthetic_image(1000 + skip * 100 + i) for i in range(count)}


def picked_label(picked: dict[str, list[str]], path: str) -> str:
    return next(label for label, paths in picked.items() if path in paths).replace(" ", "-")


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
        import boto3

        return boto3.client(
            "s3",
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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CLI.exists():
        pytest.skip(f"{CLI} not found: install the package first (make setup)")
    s3_port, api_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("local-stack") / "stack.log"
    env = {
        **os.environ,
        "IMGSEARCH_LOCAL_PARENT_PID": str(os.getpid()),
        "IMGSEARCH_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(CLI),
                "local",
                "up",
                "--s3-port",
                str(s3_port),
                "--api-port",
                str(api_port),
                "--api-key",
                API_KEY,
                "--bucket",
                "e2e-images",
                "--compact-every",
                "5",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # its own process group: teardown can end it and its children
        )
    try:
        running = Stack(
            api=f"http://127.0.0.1:{api_port}",
            s3_endpoint=f"http://127.0.0.1:{s3_port}",
            bucket="e2e-images",
            key=API_KEY,
            process=process,
            log=log,
        )

        def ready() -> bool:
            try:
                return running.call("GET", "/health", timeout=5)[0] == 200
            except OSError:
                return False

        running.wait_for(ready, "GET /health to answer", seconds=READY_SECONDS)
        yield running
    finally:
        stop(process)
