"""The functions' settings definitions (imgsearch.settings): what they allow, and the core defaults they name."""

from __future__ import annotations

import pytest

from imgsearch import settings
from imgsearch.settings import SettingError


def test_a_function_environment_refuses_a_setting_of_another_function() -> None:
    with pytest.raises(SettingError, match="the compact function has no setting PRESIGN_SECONDS"):
        settings.COMPACT.environment({settings.PRESIGN_SECONDS: 900})


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (settings.PRESIGN_SECONDS, 59),
        (settings.PRESIGN_SECONDS, 7 * 24 * 3600 + 1),
        (settings.PRESIGN_SECONDS, "900"),
        (settings.CODE_BITS, 100),
        (settings.CODE_BITS, 2048),
        (settings.DEFAULT_METRIC, "l2"),
        (settings.CORS_ORIGINS, ("example.com",)),
        (settings.THUMBNAILS, "yes"),
        (settings.INDEX_URI, ""),
        (settings.REFRESH_SECONDS, -1.0),
    ],
)
def test_a_function_environment_refuses_a_value_its_definition_does_not_allow(setting, value) -> None:
    function = next(f for f in settings.FUNCTIONS if setting in f.settings)
    with pytest.raises(SettingError, match=f"{setting.env}=.* is not allowed"):
        function.environment({setting: value})


def test_a_function_environment_writes_each_value_as_its_handler_reads_it() -> None:
    assert settings.QUERY.environment(
        {
            settings.PRESIGN_SECONDS: 600,
            settings.CORS_ORIGINS: ("https://a.example", "https://b.example"),
            settings.REFRESH_SECONDS: 0.5,
            settings.WATCH_PREFIXES: (),
        }
    ) == {
        "PRESIGN_SECONDS": "600",
        "CORS_ORIGINS": "https://a.example,https://b.example",
        "REFRESH_SECONDS": "0.5",
        "WATCH_PREFIXES": "",
    }
    assert settings.INGEST.environment({settings.THUMBNAILS: False}) == {"THUMBNAILS": "false"}


def test_each_function_defines_each_variable_once() -> None:
    for function in settings.FUNCTIONS:
        assert len(set(function.names)) == len(function.names), function.function


def test_the_stage_sets_each_context_key_through_one_setting() -> None:
    keys = [s.context for f in settings.FUNCTIONS for s in f.settings if s.context]
    by_key = settings.stage_settings()
    assert set(keys) == set(by_key)
    for function in settings.FUNCTIONS:
        for setting in function.settings:
            if setting.context:
                assert by_key[setting.context] is setting  # a shared setting is one object, not two copies


def test_the_defaults_are_the_core_constants_they_stand_for() -> None:
    """The core modules that import usearch take these defaults from the settings (one home); the light ones
    (encode, options) are where the settings take theirs."""
    from imgsearch.backend import BACKENDS
    from imgsearch.encode import DEFAULT_BITS, MIN_FIT
    from imgsearch.maintain import MAX_BASE, MERGE_AT
    from imgsearch.options import MAX_K, METRICS
    from imgsearch.segment import HNSW_MIN

    assert settings.INDEX_BACKEND.choices == BACKENDS
    assert settings.HNSW_MIN.default == HNSW_MIN
    assert (settings.MAX_BASE.default, settings.MERGE_AT.default) == (MAX_BASE, MERGE_AT)
    assert (settings.FIT_AFTER.default, settings.CODE_BITS.default) == (MIN_FIT, DEFAULT_BITS)
    assert (settings.DEFAULT_METRIC.choices, settings.DEFAULT_K.high) == (METRICS, MAX_K)


def test_query_bytes_stay_within_the_gateways_payload_limit() -> None:
    from stacks.wiring import MAX_PAYLOAD_BYTES

    assert settings.MAX_QUERY_BYTES.default <= settings.MAX_QUERY_BYTES.high == MAX_PAYLOAD_BYTES
