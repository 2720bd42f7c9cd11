"""One home for each function setting: the stack, the stage check, the local stack and the handlers all use
the definitions in imgsearch.settings, so what the stack writes is exactly what each handler reads."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from imgsearch import settings
from imgsearch.settings import Choice, Int, Items, Setting, Text
from lambdas.common import config as handler_config
from stacks import wiring
from stacks.config import CHECKS, ContextError, StageConfig, from_context

ROOT = Path(__file__).resolve().parents[2]
SPECS = {spec.handler: spec for spec in (wiring.INGEST, wiring.QUERY, wiring.COMPACT)}
VARIANTS = {
    "default": {},
    "efs": {"indexStore": "efs"},
    "s3vectors": {"indexBackend": "s3vectors"},
    "existing bucket": {
        "imagesBucket": "my-photos",
        "watchPrefixes": "photos/,scans/",
        "watchSuffixes": ".jpg",
        "corsOrigins": "https://a.example.com,https://b.example.com",
        "compactAfterSegments": 0,
    },
}


def environments(template: Any) -> dict[str, dict[str, Any]]:
    """Each function's environment in the template, by function name (ingest, query, compact)."""
    found = {}
    for function in template.find_resources("AWS::Lambda::Function").values():
        spec = SPECS.get(function["Properties"].get("Handler"))
        if spec is not None:
            found[spec.name] = function["Properties"]["Environment"]["Variables"]
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_function_is_given_only_its_own_settings_with_values_its_handler_accepts(synth, variant: str) -> None:
    _, template = synth(**VARIANTS[variant])
    envs = environments(template)
    assert set(envs) == ({"ingest", "query"} if variant == "s3vectors" else {"ingest", "query", "compact"})
    for spec in SPECS.values():
        if spec.name not in envs:
            continue
        env = envs[spec.name]
        assert set(env) <= set(spec.settings.names), (spec.name, set(env) - set(spec.settings.names))
        for name, value in env.items():
            setting = spec.settings[name]
            if isinstance(value, str):  # a literal: the handler reads it back to the same text
                assert setting.text(handler_config.read(setting, env={name: value})) == value, name
            else:  # a CloudFormation reference (a bucket, the index, a function name): text the stack makes
                assert isinstance(setting, Text), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_setting_a_function_cannot_start_without_is_given_by_the_stack(synth, variant: str) -> None:
    _, template = synth(**VARIANTS[variant])
    vectors = VARIANTS[variant].get("indexBackend") == "s3vectors"
    for name, env in environments(template).items():
        spec = next(s for s in SPECS.values() if s.name == name)
        needed = {
            s.env
            for s in spec.settings.settings
            if isinstance(s, Text) and s.required and s is not (settings.INDEX_URI if vectors else settings.VECTOR_INDEX_ARN)
        }
        assert needed <= set(env), (name, needed - set(env))


def test_each_context_key_of_a_function_setting_reaches_the_functions_that_read_it(synth) -> None:
    """presignSeconds → PRESIGN_SECONDS of the query function, codeBits → CODE_BITS of ingest, and so on."""
    chosen: dict[str, Any] = {
        "codeBits": 128,
        "defaultMetric": "cosine",
        "presignSeconds": 600,
        "corsOrigins": ("https://photos.example.com",),
        "compactAfterSegments": 8,
    }
    stage = settings.stage_settings()
    assert set(chosen) | {"indexBackend"} == set(stage)  # a new stage setting needs a line here
    for context in (chosen, {"indexBackend": "s3vectors"}):
        _, template = synth(**{k: list(v) if isinstance(v, tuple) else v for k, v in context.items()})
        envs = environments(template)
        for key, value in context.items():
            setting = stage[key]
            readers = [f.function for f in settings.FUNCTIONS if setting in f.settings and f.function in envs]
            assert readers, key
            for function in readers:
                assert envs[function][setting.env] == setting.text(value), (key, function)


def _stage(tmp_path: Path, **context: Any) -> StageConfig:
    for part in ("deps", "model", "code"):
        (tmp_path / part).mkdir(exist_ok=True)
    return from_context({"assetsDir": str(tmp_path), **context}.get)


def _accepted(setting: Setting[Any]) -> list[Any]:
    if isinstance(setting, Int):
        return [setting.low, setting.high, setting.default]
    if isinstance(setting, Choice):
        return list(setting.choices)
    if isinstance(setting, Items):
        return [["*"], ["https://a.example.com", "http://127.0.0.1:8080"], []]
    raise AssertionError(f"no example values for {type(setting).__name__}")


def _refused(setting: Setting[Any]) -> list[tuple[Any, str]]:
    if isinstance(setting, Int):
        allowed = rf"out of range \(allowed: {setting.low}\.\.{setting.high}\)"
        refused = [(setting.low - 1, allowed), (setting.high + 1, allowed)]
        if setting.multiple_of > 1:
            refused.append((setting.low + 1, f"must be a multiple of {setting.multiple_of}"))
        return refused
    if isinstance(setting, Choice):
        return [("nope", f"is not one of {', '.join(setting.choices)}")]
    if isinstance(setting, Items):
        return [(["example.com"], re.escape(f"has 'example.com': {setting.hint}"))]
    raise AssertionError(f"no example values for {type(setting).__name__}")


@pytest.mark.parametrize("key", sorted(settings.stage_settings()))
def test_the_stage_check_of_a_function_setting_is_its_definitions_range_and_default(tmp_path: Path, key: str) -> None:
    setting = settings.stage_settings()[key]
    assert getattr(StageConfig(), key) == setting.default
    for value in _accepted(setting):
        got = getattr(_stage(tmp_path, **{key: value}), key)
        assert got == (tuple(value) if isinstance(value, list) else value), (key, value)
    for value, message in _refused(setting):
        with pytest.raises(ContextError, match=f"context {key}.*{message}"):
            _stage(tmp_path, **{key: value})


def test_cdk_json_repeats_no_stage_default() -> None:
    """A stage setting's default lives in its definition (or StageConfig): a key in cdk.json is an override."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    defaults = StageConfig()
    stage_keys = {f.name for f in fields(StageConfig)}
    repeated = {k for k in context if k in stage_keys and CHECKS[k](context[k]) == getattr(defaults, k)}
    assert not repeated, f"cdk.json repeats the defaults of {sorted(repeated)}"


def test_the_local_stack_gives_each_handler_the_environment_the_cdk_stack_gives_it(synth, tmp_path: Path) -> None:
    """The same builders: the same names and values, but for where the index and the model are (and no
    compaction trigger: the local compaction worker runs on a timer)."""
    from imgsearch.local.stack import handler_environments

    context = {
        "watchPrefixes": "photos/",
        "watchSuffixes": ".jpg",
        "corsOrigins": "https://photos.example.com",
        "presignSeconds": 600,
        "defaultMetric": "cosine",
        "codeBits": 128,
        "retiredGraceDays": 3,
    }
    _, template = synth(**context)
    deployed = environments(template)
    local = {
        spec.name: env
        for spec, env in handler_environments(
            _stage(tmp_path, **context),
            index_uri="/tmp/index",
            images_bucket="images",
            index_backend="segments",
            vector_index_arn="",
            model_dir="/tmp/model",
        ).items()
    }
    where = {settings.INDEX_URI.env, settings.IMAGES_BUCKET.env, settings.MODEL_DIR.env}
    trigger = {settings.COMPACT_FUNCTION_NAME.env, settings.COMPACT_AFTER_SEGMENTS.env}
    assert set(local) == set(deployed)
    for name, env in deployed.items():
        assert set(local[name]) == set(env) - trigger, name
        assert {k: v for k, v in local[name].items() if k not in where} == {
            k: v for k, v in env.items() if k not in where | trigger
        }, name


def _table_rows(heading: str) -> dict[str, list[str]]:
    """docs/DEPLOY.md's table under `heading`: its cells by each name in the first cell (`A`, `B`)."""
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name] = cells
    return rows


def _documented_default(setting: Setting[Any]) -> str:
    if isinstance(setting, Text) and setting.required:
        return "(required)"
    if isinstance(setting, Int):
        return str(setting.default)
    if isinstance(setting, settings.Number):
        return f"{setting.default:g}"
    if isinstance(setting, settings.Flag):
        return f"`{str(setting.default).lower()}`"
    return "`" + (setting.text(setting.default) or '""') + "`"


def test_the_deploy_guide_documents_each_function_setting_as_defined() -> None:
    rows = _table_rows("### Function settings (environment variables)")
    for function in settings.FUNCTIONS:
        for setting in function.settings:
            assert setting.env in rows, f"docs/DEPLOY.md has no row for {setting.env}"
            _, functions, default, allowed, context, _ = rows[setting.env]
            assert function.function in functions.split(", "), setting.env
            assert default == _documented_default(setting), setting.env
            assert context == (f"`{setting.context}`" if setting.context else ""), setting.env
            if isinstance(setting, (Int, settings.Number)):
                assert allowed.startswith(setting.allowed), setting.env
            if isinstance(setting, Choice):
                assert allowed == setting.allowed, setting.env
    defined = {s.env for f in settings.FUNCTIONS for s in f.settings}
    assert set(rows) == defined, f"docs/DEPLOY.md documents variables no function reads: {set(rows) - defined}"


def test_the_deploy_guide_gives_each_function_settings_context_key_its_default_and_range() -> None:
    rows = _table_rows("### Context (cdk.json or `-c key=value`)")
    for key, setting in settings.stage_settings().items():
        _, default, allowed, _ = rows[key]
        if isinstance(setting, Int):
            assert default == str(setting.default), key
            assert allowed.startswith(f"{setting.low}..{setting.high}"), key
        elif isinstance(setting, Choice):
            assert default == f"`{setting.default}`", key
            assert allowed == ", ".join(f"`{c}`" for c in setting.choices), key
        else:
            assert default == "`[]`" and setting.default == (), key
