"""The conventions users expect of the `imgsearch` command: --version, choices and defaults in --help,
shell completion, $IMGSEARCH_INDEX, -k, exit status 1 (failed) vs 2 (usage), --json everywhere."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner, Result

from imgsearch.cli import app
from imgsearch.local.stack import API_PORT, S3_PORT, LocalStack
from imgsearch.modelspec import ModelSpec, default_model_dir

THREADS = ["--threads", "2"]
KEYS = [f"{family}_{v}.png" for family in ("stripes", "checks", "rings") for v in range(3)][:8]  # fit needs 8
WIDE = {"COLUMNS": "300"}  # one line per option in --help


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def json_lines(result: Result) -> list[dict[str, Any]]:
    """Every line of stdout as a JSON object (fails on any line that is not one)."""
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert found and all(isinstance(item, dict) for item in found), result.stdout
    return found


def draw(name: str) -> Image.Image:
    family, variant = name.split(".")[0].split("_")
    v = int(variant)
    y, x = np.mgrid[0:96, 0:112].astype(np.float32)
    period = 10.0 + 6 * v
    if family == "stripes":
        mask = np.sin(y * 2 * np.pi / period) > 0
    elif family == "checks":
        mask = (x // period + y // period) % 2 == 0
    else:
        mask = np.sin(np.hypot(x - 56, y - 48) * 2 * np.pi / period) > 0
    on, off = np.array([200, 40 + 60 * v, 30], np.uint8), np.array([245, 245, 240], np.uint8)
    return Image.fromarray(np.where(mask[..., None], on, off), "RGB")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ModelSpec.load(default_model_dir())  # fails (not skips) with a clear message if the model is missing
    root = tmp_path_factory.mktemp("photos")
    for key in KEYS:
        draw(key).save(root / key)
    return root


@pytest.fixture(scope="module")
def built(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("built") / "index"
    result = run("index", "--index", str(index), str(photos), "--no-compact", *THREADS)
    assert result.exit_code == 0, result.output
    return index


@pytest.fixture
def index_copy(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(built, copy)
    return copy


def commands() -> Iterator[tuple[list[str], Any]]:
    """Every command of `imgsearch` with its words (["search"], ["local", "up"], …) and its click command
    (typer's own copy of click: its classes are not click's)."""

    def walk(command: Any, words: list[str]) -> Iterator[tuple[list[str], Any]]:
        if hasattr(command, "commands"):  # a group
            for name, sub in command.commands.items():
                yield from walk(sub, [*words, name])
        else:
            yield words, command

    yield from walk(typer.main.get_command(app), [])


def help_row(words: list[str], option: str) -> str:
    """The row of `imgsearch WORDS --help` that lists `option` (its first name)."""
    result = run(*words, "--help", env=WIDE)
    assert result.exit_code == 0, result.output
    listed = re.compile(rf"^│\s+(\*\s+)?{re.escape(option)}(?![\w-])")  # the row of the option's panel
    rows = [line for line in result.stdout.splitlines() if listed.match(line)]
    assert rows, f"{option} not in the help of {' '.join(words)}:\n{result.stdout}"
    return rows[0]


# --- --version, --help, completion ------------------------------------------------------------------


def test_version_prints_the_package_version_from_its_metadata() -> None:
    result = run("--version")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"imgsearch {version('imgsearch')}"


def test_search_help_lists_the_metrics_and_shows_the_default_k() -> None:
    assert "<hybrid|cosine|hamming>" in help_row(["search"], "--metric")
    assert "[default: hybrid]" in help_row(["search"], "--metric")
    k = help_row(["search"], "--k")
    assert "-k" in k.replace("--k", "") and "[default: 10]" in k


@pytest.mark.parametrize(
    ("words", "option", "choices", "default"),
    [
        (["build-model"], "--resize", "crop|squash|keep", "crop"),
        (["build-model"], "--variant", "lite0|lite2", "lite0"),
        (["local", "up"], "--log-level", "debug|info|warning|error|critical", "warning"),
        (["local", "up"], "--index-backend", "segments|s3vectors", "segments"),
    ],
)
def test_help_lists_the_choices_of_each_enumerated_option(
    words: list[str], option: str, choices: str, default: str
) -> None:
    row = help_row(words, option)

    assert f"<{choices}>" in row and f"[default: {default}]" in row


def test_help_shows_the_default_of_every_option_that_has_one_flags_included() -> None:
    checked = 0
    for words, command in commands():
        for param in command.params:
            if param.param_type_name != "option" or param.default is None or param.name == "help":
                continue
            row = help_row(words, param.opts[0])
            assert "[default: " in row, f"{' '.join(words)} {param.opts[0]}: no default shown in {row!r}"
            checked += 1
    assert checked > 30
    assert "[default: (off)]" in help_row(["search"], "--exact")
    assert "[default: (off)]" in help_row(["info"], "--json")


def test_shell_completion_is_installable_and_completes_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    # the shell named on the command line, not detected from the parent process (under `sh`, as CI may run
    # the tests, Typer's detection answers "Shell sh not supported"): Typer's own switch for its tests
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    root = run("--help", env=WIDE).stdout
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="imgsearch")
    words = {"_IMGSEARCH_COMPLETE": "complete_bash", "COMP_WORDS": "imgsearch search --metric ", "COMP_CWORD": "3"}
    completed = CliRunner().invoke(app, [], prog_name="imgsearch", env=words)

    assert "--install-completion" in root and "--show-completion" in root
    assert script.exit_code == 0 and "complete -o default -F _imgsearch_completion imgsearch" in script.stdout
    assert completed.stdout.split() == ["hybrid", "cosine", "hamming"]


# --- $IMGSEARCH_INDEX and -k ---------------------------------------------------------------------------


def test_imgsearch_index_is_used_when_index_is_absent(built: Path, tmp_path: Path) -> None:
    env = {"IMGSEARCH_INDEX": str(built)}

    facts = run("info", "--json", env=env)
    found = run("search", "checks_1.png", "--json", "-k", "1", env=env)
    other = run("info", "--json", "--index", str(tmp_path / "none"), env=env)

    assert facts.exit_code == 0, facts.output
    assert json.loads(facts.stdout)["location"] == str(built)
    assert found.exit_code == 0, found.output
    assert json_lines(found)[0]["hits"][0]["key"] == "checks_1.png"
    assert other.exit_code == 1 and "no index at" in other.stderr  # --index still wins
    assert "[env var: IMGSEARCH_INDEX]" in help_row(["search"], "--index")


def test_short_k_gives_that_many_hits(built: Path) -> None:
    result = run("search", "--index", str(built), "stripes_0.png", "-k", "3", "--json")

    assert result.exit_code == 0, result.output
    assert len(json_lines(result)[0]["hits"]) == 3


# --- exit status: 1 for a failed run, 2 for a usage error ---------------------------------------------


@pytest.mark.parametrize(
    "words",
    [["info"], ["search", "x.png"], ["delete", "x.png"], ["compact"], ["fit"]],
    ids=lambda w: w[0],
)
def test_a_missing_index_exits_1(words: list[str], tmp_path: Path) -> None:
    result = run(*words, "--index", str(tmp_path / "no-index"))

    assert result.exit_code == 1, result.output
    assert "no index at" in result.stderr


def test_k_0_exits_2(built: Path) -> None:
    result = run("search", "--index", str(built), "stripes_0.png", "--k", "0")

    assert result.exit_code == 2
    assert "k must be a whole number from 1 to 1000, not 0" in result.stderr


def test_a_choice_not_offered_exits_2(built: Path) -> None:
    result = run("search", "--index", str(built), "stripes_0.png", "--metric", "euclid")

    assert result.exit_code == 2
    assert "euclid" in result.output


def test_a_run_where_every_query_failed_exits_1(built: Path) -> None:
    result = run("search", "--index", str(built), "nowhere.png", "--json")

    assert result.exit_code == 1
    assert "neither an image file nor an indexed key" in json_lines(result)[0]["error"]


def test_an_s3_error_exits_1_and_a_malformed_s3_location_exits_2(
    moto_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    index = str(tmp_path / "index")

    missing = run("index", "--index", index, "s3://no-such-bucket-xyz/p/", "--endpoint-url", moto_endpoint)
    malformed = run("index", "--index", index, "s3://Bad_Bucket!/p")

    assert missing.exit_code == 1 and "the bucket 'no-such-bucket-xyz' does not exist" in missing.stderr
    assert malformed.exit_code == 2 and "is not a valid bucket name" in malformed.stderr


# --- --json on every command that reports something -----------------------------------------------------


def test_every_command_accepts_json() -> None:
    missing = [" ".join(words) for words, command in commands() if not any("--json" in p.opts for p in command.params)]

    assert missing == []


def test_build_model_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import imgsearch.build_model

    asked: dict[str, Any] = {}
    spec = ModelSpec.load(default_model_dir())

    def build_model(target: Path, **options: Any) -> tuple[ModelSpec, bool]:
        asked.update(options, target=target)
        return spec, False

    monkeypatch.setattr(imgsearch.build_model, "build_model", build_model)
    result = run("build-model", "--model-dir", str(tmp_path), "--variant", "lite2", "--resize", "keep", "--json")

    assert result.exit_code == 0, result.output
    (facts,) = json_lines(result)
    assert facts == {"model": spec.name, "state": "up to date", "path": str(tmp_path), "sha256": spec.sha256, "dim": spec.output_dim}
    assert (asked["variant"], asked["resize"]) == ("lite2", "keep")  # plain strings for the library
    assert type(asked["variant"]) is str


def test_index_delete_search_info_compact_fit_json(photos: Path, index_copy: Path, tmp_path: Path) -> None:
    where = ["--index", str(index_copy)]
    results = {
        "index": run("index", "--index", str(tmp_path / "fresh"), str(photos), "--no-compact", "--json", *THREADS),
        "search": run("search", *where, "stripes_0.png", "--text", "a zebra", "--json", "-k", "2"),
        "info": run("info", *where, "--json"),
        "fit": run("fit", *where, "--min-count", "8", "--bits", "8", "--dims", "8", "--json"),
        "compact": run("compact", *where, "--json", "--threads", "1"),
        "delete": run("delete", *where, "rings_1.png", "--json"),
    }

    for name, result in results.items():
        assert result.exit_code == 0, f"{name}: {result.output}"
        json_lines(result)
    assert json_lines(results["index"])[0]["indexed"] == len(KEYS)
    assert json_lines(results["delete"])[0]["deleted"] == [{"bucket": "local", "key": "rings_1.png"}]
    assert [a["query"] for a in json_lines(results["search"])] == ["a zebra", "stripes_0.png"]
    fit = json_lines(results["fit"])[0]
    assert fit["encoder"].startswith("itq-8b-8d") and fit["entries"] == len(KEYS)


def test_export_json(built: Path, moto_endpoint: str, aws_env: None, tmp_path: Path) -> None:
    target = f"s3vectors://vb-{uuid.uuid4().hex[:12]}/images"

    result = run(
        "export", "--to", target, "--index", str(built), "--endpoint-url", moto_endpoint, "--create",
        "--state", str(tmp_path / "state.json"), "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json_lines(result)[0]["exported"] == len(KEYS)


def test_backfill_json(moto_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    for key in ("a.jpg", "b.jpg"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"ingest-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    result = run(
        "backfill", f"s3://{s3_bucket}", "--queue-url", queue, "--endpoint-url", moto_endpoint, "--rate", "0",
        "--state", str(tmp_path / "state.json"), "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json_lines(result)[0]["queued"] == 2


def test_local_up_json_prints_its_start_up_facts_as_one_json_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def start(self: LocalStack) -> None:  # what a real start does last: the banner; then Ctrl-C
        self.index_uri = "s3://images-index/index"
        self._banner()
        self.out("a line that is not the banner")
        print('{"level": "WARNING", "message": "a handler logs to stdout"}')  # as Powertools does
        self.stopping.set()

    monkeypatch.setattr(LocalStack, "start", start)
    result = run("local", "up", "--api-key", "k3y", "--json")

    assert result.exit_code == 0, result.output
    (facts,) = json_lines(result)
    assert (facts["s3_port"], facts["api_port"], facts["api_key"]) == (S3_PORT, API_PORT, "k3y")
    assert facts["api"] == f"http://127.0.0.1:{API_PORT}"
    assert facts["s3_endpoint"] == f"http://127.0.0.1:{S3_PORT}"
    assert facts["search_page"] == f"http://127.0.0.1:{API_PORT}/#key=k3y"
    assert (facts["bucket"], facts["index"]) == ("images", "s3://images-index/index")
    assert "a line that is not the banner" in result.stderr
    assert "a handler logs to stdout" in result.stderr
