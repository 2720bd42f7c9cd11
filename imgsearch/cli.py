"""The `imgsearch` command: each command is a thin layer over one library call."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from .build_model import DEFAULT_INPUT_SIZE
from .errors import ImgSearchError, InvalidImage, KeyNotIndexed
from .index import ImageIndex
from .search import Hit

app = typer.Typer(
    help="Find images like this one: index folders or S3 prefixes, search by image or key.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

IndexOpt = Annotated[str, typer.Option("--index", help="Index location: a directory or s3://bucket/prefix.")]
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint-url", help="S3 endpoint (moto, MinIO, any S3-compatible store).")
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-dir", help="Folder with model.json + ONNX file [default: $IMGSEARCH_MODEL_DIR or cache]."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="CPU threads for the model (0: all cores).")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _open(index: str, endpoint_url: str | None) -> ImageIndex:

    return ImageIndex.open(index, endpoint_url=endpoint_url)


@app.command("build-model")
def build_model_cmd(
    model_dir: ModelOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the export is current.")] = False,
    input_size: Annotated[
        int, typer.Option("--input-size", help="Square input side in pixels (224: +2 points on photos, -25% speed).")
    ] = DEFAULT_INPUT_SIZE,
    resize: Annotated[str, typer.Option("--resize", help="crop | squash | keep (aspect kept).")] = "crop",
) -> None:
    """Export EfficientNet-Lite0 (ImageNet weights) to ONNX with its manifest; skipped when current."""
    from .build_model import build_model
    from .modelspec import default_model_dir

    target = model_dir or default_model_dir()
    try:
        spec, rebuilt = build_model(target, input_size=input_size, resize=resize, force=force)
    except (ImgSearchError, ValueError) as error:
        raise _fail(str(error)) from None
    state = "built" if rebuilt else "up to date"
    typer.echo(f"model {spec.name} {state} at {target} (sha256 {spec.sha256[:12]}, {spec.output_dim}-d)")


@app.command("index")
def index_cmd(
    sources: Annotated[list[Path], typer.Argument(help="Folders (searched recursively) or files.")],
    index: IndexOpt,
    endpoint_url: EndpointOpt = None,
    model_dir: ModelOpt = None,
    threads: ThreadsOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 32,
    compact: Annotated[
        bool, typer.Option("--compact/--no-compact", help="Compact (and fit) afterwards.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Index every image under each SOURCE; the key is the path relative to SOURCE."""
    from .embed import Embedder
    from .ingest import index_files, scan

    try:
        files = scan(sources)
        embedder = Embedder.load(model_dir, threads=threads or None, batch_size=batch_size)
        target = _open(index, endpoint_url)
        with tqdm(total=len(files), unit="img", disable=as_json or None, file=sys.stderr) as bar:
            report = index_files(target, embedder, files, progress=bar.update, compact=compact)
    except (ImgSearchError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
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
    typer.echo(
        json.dumps(summary)
        if as_json
        else f"indexed {report.indexed}, unchanged {report.unchanged}, skipped {len(report.skipped)}"
    )
    if report.indexed == 0 and report.unchanged == 0:
        raise _fail("nothing could be indexed", code=1)


@app.command("search")
def search_cmd(
    queries: Annotated[list[str], typer.Argument(help="Image files, or keys of indexed images.")],
    index: IndexOpt,
    k: Annotated[int, typer.Option("--k", help="Results per query (1 to 1000).")] = 10,
    metric: Annotated[str, typer.Option("--metric", help="hybrid | cosine | hamming.")] = "hybrid",
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop results scoring lower (-1 to 1).")
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only keys starting with this.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many results (paging; 0 to 10000).")] = 0,
    exact: Annotated[bool, typer.Option("--exact", help="Exhaustive search instead of HNSW.")] = False,
    endpoint_url: EndpointOpt = None,
    model_dir: ModelOpt = None,
    threads: ThreadsOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Search with query images (embedded in batches) or keys already in the index."""
    from .embed import Embedder
    from .files import read_file
    from .index import check_model
    from .options import SearchOptions
    from .search import Searcher

    try:
        options = SearchOptions(
            k=k, metric=metric, min_score=min_score, prefix=prefix or None, offset=offset, exact=exact
        ).search_kwargs()
        searcher = Searcher(_open(index, endpoint_url))
        searcher.refresh(force=True)
        files = [q for q in queries if Path(q).is_file()]
        results: dict[str, list[Hit] | Exception] = {}
        if files:
            embedder = Embedder.load(model_dir, threads=threads or None)
            check_model(searcher.manifest, embedder.spec)  # type: ignore[arg-type]
            limit = embedder.limits.max_bytes  # kind and size checked before reading; read bounded

            def read(i: int) -> bytes:
                return read_file(files[i], limit=limit)

            vectors, failures, done = embedder.embed_stream(read, len(files))
            for failure in failures:
                results[files[failure.index]] = InvalidImage(failure.reason)
            for query, hits in zip(
                [files[i] for i in done], searcher.search(vectors, **options), strict=True
            ):
                results[query] = hits
        for query in queries:
            if query not in results:
                try:
                    results[query] = searcher.search_key(query, **options)
                except KeyNotIndexed:
                    results[query] = KeyNotIndexed(f"{query} is neither an image file nor an indexed key")
    except ImgSearchError as error:
        raise _fail(str(error)) from None
    failed = 0
    for query in queries:
        found = results[query]
        if isinstance(found, Exception):
            failed += 1
            if as_json:
                typer.echo(json.dumps({"query": query, "error": str(found)}))
            else:
                typer.echo(f"error: {query}: {found}", err=True)
            continue
        if as_json:
            typer.echo(
                json.dumps({"query": query, "hits": [{"key": h.key, "score": h.score} for h in found]})
            )
        else:
            typer.echo(query)
            for rank, hit in enumerate(found, start=offset + 1):
                typer.echo(f"  {rank:3d}. {hit.score:.4f}  {hit.key}")
    if failed == len(queries):
        raise typer.Exit(1)


@app.command("info")
def info_cmd(index: IndexOpt, endpoint_url: EndpointOpt = None, as_json: JsonOpt = False) -> None:
    """Counts, segments, model and encoder of an index."""
    from .search import Searcher

    try:
        searcher = Searcher(_open(index, endpoint_url))
        searcher.refresh(force=True)
    except ImgSearchError as error:
        raise _fail(str(error)) from None
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
        raise _fail(str(error)) from None
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
    min_count: Annotated[int, typer.Option("--min-count", help="Refuse to fit on fewer images.")] = 1000,
    endpoint_url: EndpointOpt = None,
    threads: ThreadsOpt = 0,
) -> None:
    """Fit the encoder (PCA + ITQ) on the indexed embeddings and re-encode the index."""
    try:
        encoder, result = _open(index, endpoint_url).fit(
            bits=bits, dims=dims, whiten=whiten, threads=threads, min_count=min_count
        )
    except ImgSearchError as error:
        raise _fail(str(error)) from None
    typer.echo(f"encoder {encoder.version}: {result.entries} entries re-encoded in {result.seconds:.1f}s")


local_app = typer.Typer(
    help="The whole event-driven system on this machine (moto S3 + SQS, the real handlers, the API).",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up_cmd(
    s3_port: Annotated[int, typer.Option("--s3-port", help="Port of the S3 + SQS endpoint (moto).")] = 4566,
    api_port: Annotated[int, typer.Option("--api-port", help="Port of the API and the search page.")] = 8080,
    bucket: Annotated[str, typer.Option("--bucket", help="Name of the images bucket.")] = "images",
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key to require [default: a new one, printed].")
    ] = None,
    seed: Annotated[
        Path | None, typer.Option("--seed", help="Upload every file under this folder at start.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Keep the images and the index in this folder between runs [default: memory]."
        ),
    ] = None,
    compact_every: Annotated[
        float, typer.Option("--compact-every", help="Seconds between compaction runs (0: never).")
    ] = 60.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="Handlers' log level (Powertools): DEBUG, INFO, WARNING.")
    ] = "WARNING",
) -> None:
    """Start moto's S3 + SQS on 127.0.0.1 wired like the AWS stack, run the handlers, serve the API and page."""
    from .local.stack import LocalStack, LocalStackError, Options

    options = Options(
        s3_port=s3_port,
        api_port=api_port,
        bucket=bucket,
        api_key=api_key,
        seed=seed,
        data=data,
        compact_every=compact_every,
        log_level=log_level,
    )
    try:
        LocalStack(options).run()
    except LocalStackError as error:
        raise _fail(str(error)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
