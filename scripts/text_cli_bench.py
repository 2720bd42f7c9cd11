#!/usr/bin/env python3
"""Search by words through the default path, as a user runs it: `imgsearch index` a folder, then
`imgsearch search --text ... --json` and `imgsearch search QUERY.jpg --with-text ... --json`.

    .venv/bin/python scripts/text_cli_bench.py --datasets ../shared/datasets --out bench-out

- Text → image: every class name as a query over all the set's images (CIFAR-10: the 10,000 test
  images; Corel-1k: all 1,000), mAP@100 and P@10 (relevant: that class), and the harder queries of
  scripts/text_bench.py (synonyms, broader words).
- Image + text (Corel-1k): each of the 100 query images (class A) with the name of each other class B;
  P@10 of class B, and how often the top hit is of class B.
- Cost: the search step of a text query in-process (words → concepts → ranked hits) on the CIFAR index,
  p50 / p99 over the class names and hard queries, and the same for image + text; image queries with
  the hits' tags on against the same searcher with them off.

Prints every figure and writes OUT/text-cli-results.json. The extracted images and the indexes live in a
temporary folder (--keep DIR keeps them).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import average_precision, save_results, say
from text_bench import HARD_QUERIES, query_text

CLI = [str(Path(sys.executable).with_name("imgsearch"))]
K = 100




def extract(archive_path: Path, folder: Path, *, split: str | None) -> dict[str, str]:
    """The set's images under `folder` (only `split` if given); key (as the CLI names it) → label."""
    with zipfile.ZipFile(archive_path) as archive:
        root = archive_path.stem
        rows = list(csv.DictReader(io.TextIOWrapper(archive.open(f"{root}/labels.csv"), encoding="utf-8")))
        labels = {}
        for row in rows:
            if split is not None and row["split"] != split:
                continue
            target = folder / row["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(f"{root}/{row['path']}"))
            labels[row["path"]] = row["label"]
    return labels


def run(*args: str) -> list[dict[str, object]]:
    """The JSON lines of one CLI run; a refused option value (exit 2, e.g. --with-text words that match no
    concept) as one line {"error": ...}."""
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    if done.returncode == 2 and "no concept matches" in done.stderr:
        return [{"error": done.stderr.strip().removeprefix("error: ")}]
    if done.returncode not in (0, 1):
        raise SystemExit(f"imgsearch {' '.join(args[:3])} … failed ({done.returncode}): {done.stderr[-1500:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def index(folder: Path, location: Path, threads: int, prefix: str) -> None:
    started = time.perf_counter()
    facts = run("index", "--index", str(location), str(folder), "--threads", str(threads), "--json")
    seconds = time.perf_counter() - started
    say(f"{prefix}.index", {**facts[-1], "seconds": round(seconds, 1)})
    info = run("info", "--index", str(location), "--json")[0]
    say(f"{prefix}.encoder", info["encoder"])


def quality(hits: list[str], labels: dict[str, str], relevant: set[str]) -> dict[str, float]:
    found = np.array([labels.get(key) in relevant for key in hits], dtype=float)
    return {f"mAP@{K}": average_precision(found[:K]), "P@10": float(found[:10].mean()) if len(found) else 0.0}


def mean(per: dict[str, dict[str, float]]) -> dict[str, float]:
    names = next(iter(per.values())).keys()
    return {name: round(float(np.mean([q[name] for q in per.values()])), 4) for name in names}


def words_queries(location: Path, labels: dict[str, str], queries: list[tuple[str, list[str]]], prefix: str) -> None:
    args = ["search", "--index", str(location), "--json", "--k", str(K)]
    for text, _ in queries:
        args += ["--text", text]
    answers = {a["query"]: a for a in run(*args)}
    per = {}
    for text, relevant in queries:
        answer = answers[text]
        if "error" in answer:
            per[text] = {f"mAP@{K}": 0.0, "P@10": 0.0}
            say(f"{prefix}[{text}]", {"rejected": answer["error"]})
            continue
        per[text] = quality([h["key"] for h in answer["hits"]], labels, set(relevant))  # type: ignore[index]
        say(f"{prefix}[{text}]", {name: round(v, 3) for name, v in per[text].items()})
    say(f"{prefix}.mean", mean(per))


def image_and_text(location: Path, folder: Path, labels: dict[str, str], query_keys: list[str]) -> None:
    classes = sorted(set(labels.values()))
    per_pair: list[dict[str, float]] = []
    first_hit = []
    for named in classes:
        queries = [key for key in query_keys if labels[key] != named]
        answers = run(
            "search", "--index", str(location), *[str(folder / key) for key in queries],
            "--with-text", query_text(named), "--json", "--k", "10",
        )
        if answers and "error" in answers[0]:
            say(f"corel.image+text[{named}]", {"rejected": answers[0]["error"]})
            continue
        scores = []
        for answer in answers:
            keys = [h["key"] for h in answer["hits"]]  # type: ignore[union-attr]
            scores.append(quality(keys, labels, {named})["P@10"])
            first_hit.append(float(bool(keys) and labels.get(keys[0]) == named))
        per_pair += [{"P@10": s} for s in scores]
        say(f"corel.image+text[{named}].P@10", round(float(np.mean(scores)), 3))
    say("corel.image+text.pairs", len(per_pair))
    say("corel.image+text.P@10", round(float(np.mean([p["P@10"] for p in per_pair])), 4))
    say("corel.image+text.top1_of_named_class", round(float(np.mean(first_hit)), 4))


def latency(location: Path, texts: list[str], image: Path, threads: int) -> None:
    """The search step of a text query in-process: words → concepts (MiniLM) → hits, on a warm Searcher."""
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.concepts import NoConceptMatches
    from imgsearch.embed import Embedder
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher
    from imgsearch.text import TextSearch

    started = time.perf_counter()
    words = TextSearch.load(threads=threads)
    say("cost.text_search_load_seconds", round(time.perf_counter() - started, 3))
    searcher = Searcher(ImageIndex.open(str(location)))
    searcher.refresh(force=True)
    raw = Embedder.load(threads=threads).embed_bytes([image.read_bytes()])[0]
    for label, run_one in (
        ("words", lambda text: searcher.search_text(words.query(text), k=10)),
        ("words_concepts_only", lambda text: words.query(text)),
        ("image+words", lambda text: searcher.search_text(words.query(text), image=raw[0], k=10)),
    ):
        for text in texts[:3]:
            run_one(text)  # warm
        times = []
        for _ in range(5):
            for text in texts:
                t0 = time.perf_counter()
                with contextlib.suppress(NoConceptMatches):  # a rejected query costs its matching only
                    run_one(text)
                times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        say(f"cost.{label}_ms", {"p50": round(statistics.median(times), 2), "p99": round(times[int(0.99 * (len(times) - 1))], 2),
                                 "queries": len(times)})


def tag_cost(location: Path, image_paths: list[Path], threads: int, rounds: int = 5) -> None:
    """Image queries with tags on the hits (concepts stored: the default) against the same Searcher with
    tags off (an empty vocabulary), alternating, same index, same query vectors: what stored concepts
    add to a query."""
    import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.concepts import Vocabulary
    from imgsearch.embed import Embedder
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher
    from imgsearch.tagging import TagNames

    vectors, _ = Embedder.load(threads=threads).embed_bytes([p.read_bytes() for p in image_paths])
    on = Searcher(ImageIndex.open(str(location)))
    off = Searcher(ImageIndex.open(str(location)))
    off.tagging = TagNames(vocabulary=Vocabulary([]))  # no names: hits carry no tags
    for searcher in (on, off):
        searcher.refresh(force=True)
        searcher.search(vectors[:5], k=10)  # warm
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(rounds):
        for row in vectors:
            for name, searcher in (("on", on), ("off", off)):
                t0 = time.perf_counter()
                searcher.search(row[None, :], k=10)
                times[name].append((time.perf_counter() - t0) * 1000)
    for name, values in times.items():
        values.sort()
        say(f"cost.image_query_tags_{name}_ms", {"p50": round(statistics.median(values), 3),
                                                "p99": round(values[int(0.99 * (len(values) - 1))], 3), "queries": len(values)})
    say("cost.concept_bytes_per_image", 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the images and indexes here")
    args = parser.parse_args()
    say("command", " ".join(sys.argv))
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="text-cli-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        sets = {}
        for name, split in (("cifar10", "test"), ("corel1k", None)):
            folder, location = scratch / name, scratch / f"{name}-index"
            labels = extract(args.datasets / f"{name}.zip", folder, split=split)  # unchanged files: same keys
            if not (location / "manifest.json").exists():
                index(folder, location, args.threads, name)
            sets[name] = (folder, location, labels)
            say(f"{name}.images", len(labels))
        for name, hard in (("cifar10", HARD_QUERIES["cifar10"]), ("corel1k", HARD_QUERIES["corel1k"])):
            folder, location, labels = sets[name]
            names = [(query_text(label), [label]) for label in sorted(set(labels.values()))]
            words_queries(location, labels, names, f"{name}.class_names")
            words_queries(location, labels, hard, f"{name}.hard")
        folder, location, labels = sets["corel1k"]
        query_keys = sorted(key for key in labels if key.startswith("query/"))
        image_and_text(location, folder, labels, query_keys)
        folder, location, labels = sets["cifar10"]
        texts = [query_text(label) for label in sorted(set(labels.values()))] + [t for t, _ in HARD_QUERIES["cifar10"]]
        latency(location, texts, folder / next(iter(labels)), args.threads)
        tag_cost(location, [folder / key for key in sorted(labels)[::50]], args.threads)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    save_results(args.out, "text-cli-results.json")


if __name__ == "__main__":
    main()
