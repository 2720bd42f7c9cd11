"""Shared fixtures: a moto S3 server on 127.0.0.1, fresh buckets, a hand-made model spec."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.modelspec import ModelSpec

DIM = 64


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server speaking real HTTP on 127.0.0.1 (an OS-chosen free port), for the whole session,
    with S3 Vectors' QueryVectors added (imgsearch.local.s3vectors_query)."""
    from moto.server import ThreadedMotoServer

    from imgsearch.local import s3vectors_query

    s3vectors_query.install()  # S3 Vectors' QueryVectors: before the server's first S3 Vectors request
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials; no profile or config file of the machine is read."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_bucket(moto_endpoint: str, aws_env: None) -> str:
    """A new, empty bucket on the moto server (valid name: lowercase, unique per test)."""
    import boto3

    name = f"imgsearch-test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def spec() -> ModelSpec:
    """A model spec for synthetic 64-d embeddings: no ONNX model is ever loaded with it."""
    return ModelSpec(
        name="fake",
        onnx_file="x.onnx",
        input_name="pixels",
        input_size=32,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        resize="crop",
        crop_ratio=1.0,
        output_name="features",
        output_dim=DIM,
        opset=17,
        sha256="f" * 64,
    )


@pytest.fixture
def unit_vectors() -> Callable[..., np.ndarray]:
    """unit_vectors(n, seed=0): n random L2-normalised float32 rows of the fake model's size."""

    def make(n: int, seed: int = 0) -> np.ndarray:
        x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return make
