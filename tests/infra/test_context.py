"""Context is validated with messages that name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.config import ContextError, StageConfig, from_context


def config(tmp: Path, **context: object) -> StageConfig:
    for part in ("deps", "model", "code"):
        (tmp / part).mkdir(exist_ok=True)
    values = {"assetsDir": str(tmp), **context}
    return from_context(values.get)


def test_defaults_are_valid(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert (cfg.stage, cfg.architecture, cfg.defaultMetric, cfg.indexStore) == (
        "dev",
        "arm64",
        "hybrid",
        "s3",
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"architecture": "sparc"}, "architecture='sparc' is not one of arm64, x86_64"),
        ({"stage": "Prod_1"}, "stage='Prod_1' must be"),
        ({"ingestMemoryMb": 64}, r"ingestMemoryMb=64 is out of range \(allowed: 1024..10240\)"),
        ({"queryTimeoutSeconds": 60}, r"queryTimeoutSeconds=60 is out of range \(allowed: 3..29\)"),
        ({"indexStore": "dynamodb"}, "indexStore='dynamodb' is not one of s3, efs"),
        ({"codeBits": 100}, "codeBits=100 must be a multiple of 8"),
        ({"defaultMetric": "l2"}, "defaultMetric='l2' is not one of hybrid, cosine, hamming"),
        ({"presignSeconds": "soon"}, "presignSeconds='soon' is not a whole number"),
        ({"batchSize": 50, "batchWindowSeconds": 0}, "batchSize=50 needs batchWindowSeconds >= 1"),
        ({"maxReceiveCount": 0}, "maxReceiveCount=0 is out of range"),
        ({"corsOrigins": ["example.com"]}, "corsOrigins has 'example.com'"),
        ({"compactSchedule": "every hour"}, "compactSchedule='every hour' must be an EventBridge expression"),
        ({"imagesVersioned": "maybe"}, "imagesVersioned='maybe' must be true or false"),
        ({"compactAfterSegments": -1}, r"compactAfterSegments=-1 is out of range \(allowed: 0..10000\)"),
        (
            {"throttleRateLimit": 50, "throttleBurstLimit": 10},
            "throttleBurstLimit must be at least throttleRateLimit",
        ),
    ],
)
def test_bad_context_is_rejected_with_a_clear_message(tmp_path: Path, context: dict, message: str) -> None:
    with pytest.raises(ContextError, match=message):
        config(tmp_path, **context)


def test_missing_layer_build_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="make layers"):
        from_context({"assetsDir": str(tmp_path / "nothing")}.get)


def test_cors_origins_accept_a_comma_separated_string(tmp_path: Path) -> None:
    assert config(tmp_path, corsOrigins="https://a.example, https://b.example").corsOrigins == (
        "https://a.example",
        "https://b.example",
    )
