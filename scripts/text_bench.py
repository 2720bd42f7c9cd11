#!/usr/bin/env python3
"""Text → image quality and cost on ../shared/datasets (CIFAR-10 test, Corel-1k), docs/TEXT-SEARCH.md.

    .venv/bin/python scripts/text_bench.py --datasets ../shared/datasets --out bench-out [--model-dir DIR]

Every class name of a set is a query over all its images (relevant: that class): mAP@100 and P@10,
for each text → concepts matcher (lexical, sentence, fused) and each way of ranking images by
concepts (stored top-5 concepts, full class scores, classifier directions against the stored vectors,
fusion). Then harder queries, rejected nonsense, image + text queries on Corel, and the costs.
Prints every figure and writes bench-out/text-results.json; the images' vectors and class logits are
cached in bench-out/text/ so reruns take seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchlib import average_precision, read_zip, save_results, say

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.concepts import (
    ConceptHead,
    ConceptQuery,
    NoConceptMatches,
    class_scores,
    concept_scores,
    image_text_vector,
    softmax,
    text_scores,
    top_concepts,
)
from imgsearch.embed import Embedder
from imgsearch.encode import MIN_PER_CLUSTER, fit_itq
from imgsearch.maintain import FIT_CLUSTERS
from imgsearch.modelspec import ModelSpec, default_model_dir
from imgsearch.text import MATCH_MODES, TextSearch

K = 100  # mAP@100




# --- data ----------------------------------------------------------------------------------------------




class Dataset:
    """One image set: rows (path, label, split), unit vectors (float16, as an index stores them), logits."""

    def __init__(self, name: str, rows: list[dict[str, str]], vectors: np.ndarray, logits: np.ndarray) -> None:
        self.name, self.rows = name, rows
        self.vectors = vectors.astype(np.float16).astype(np.float32)
        self.logits = logits.astype(np.float32)
        self.labels = np.array([r["label"] for r in rows])
        self.classes = sorted(set(self.labels.tolist()))
        self.probabilities = softmax(self.logits)
        self.top = top_concepts(self.logits)


def load_set(name: str, datasets: Path, out: Path, embedder: Embedder) -> Dataset:
    archive, root, rows = read_zip(datasets / f"{name}.zip")
    rows.sort(key=lambda r: r["path"])
    if name == "cifar10":
        rows = [r for r in rows if r["split"] == "test"]  # the 10,000 test images
    cache = out / "text" / f"{name}-{embedder.spec.fingerprint}.npz"
    if cache.exists():
        with np.load(cache) as data:
            return Dataset(name, rows, data["vectors"], data["logits"])
    started = time.perf_counter()
    vectors = np.empty((len(rows), embedder.dim), dtype=np.float32)
    # Full logits for the study (an index keeps only each image's top 5), from the same forward pass.
    logits = np.empty((len(rows), embedder.spec.concepts.count), dtype=np.float32)  # type: ignore[union-attr]
    for start in range(0, len(rows), 64):
        batch = [embedder.pixels(archive.read(f"{root}/{r['path']}")) for r in rows[start : start + 64]]
        vectors[start : start + len(batch)], logits[start : start + len(batch)] = embedder.run_concepts(batch)
    say(f"{name}.cache_seconds", round(time.perf_counter() - started, 1))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors.astype(np.float16), logits=logits.astype(np.float16))
    return Dataset(name, rows, vectors, logits)


# --- quality -------------------------------------------------------------------------------------------


def ranking_quality(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order].astype(float)
    return {
        f"mAP@{K}": average_precision(hits[:K]),
        "P@10": float(hits[:10].mean()),
        "mAP": average_precision(hits, int(relevant.sum())),
    }


def mean_quality(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = next(iter(per_query.values())).keys()
    return {k: round(float(np.mean([q[k] for q in per_query.values()])), 4) for k in keys}


def scorers(data: Dataset, head: ConceptHead) -> dict[str, Callable[[ConceptQuery], np.ndarray]]:
    """The ways of ranking images for a concept query."""
    return {
        # the 5 concepts stored per image (uint8 probabilities)
        "top5": lambda query: concept_scores(data.top, query),
        # all 1000 class probabilities (an upper bound of what storing more concepts would give)
        "full": lambda query: class_scores(data.probabilities, query),
        # one query vector (the concepts' weighted unit directions) against the stored vectors: ANN-ready
        "direction_vector": lambda query: head.cosines(data.vectors, query),
        # the concepts' logits recomputed from the stored vectors, log-sum-exp weighted
        "direction_logits": lambda query: head.scores(data.vectors, query),
        # the chosen fusion: 0.5 × top5 + 1.0 × direction_logits (text_scores)
        "top5+direction": lambda query: text_scores(query, stored=data.top, vectors=data.vectors, head=head),
    }


def encoded_queries(data: Dataset, search: TextSearch, head: ConceptHead, *, prefix: str) -> None:
    """The same class-name queries against vectors stored as an index stores them: ITQ encoder fitted on
    the set (PCA 256 floats, f16), the head projected through it (ConceptHead.projected); then the same
    with a discriminant encoder (`imgsearch fit --clusters`, 100 clusters or as many as 50 a cluster allow)."""
    queries = {label: concepts_or_none(search, query_text(label)) for label in data.classes}
    zero = {f"mAP@{K}": 0.0, "P@10": 0.0, "mAP": 0.0}
    for name, clusters in (("pca256", 0), ("discriminant", min(FIT_CLUSTERS, len(data.vectors) // MIN_PER_CLUSTER))):
        encoder = fit_itq(data.vectors, bits=256, dims=256, whiten=0.0, clusters=clusters)
        floats = encoder.floats(data.vectors).astype(np.float16).astype(np.float32)
        projected = head.projected(encoder.mean, encoder.back)
        methods: dict[str, Callable[[ConceptQuery], np.ndarray]] = {
            "direction_vector": lambda q, f=floats, h=projected: h.cosines(f, q),
            "direction_logits": lambda q, f=floats, h=projected: h.scores(f, q),
            "top5+direction": lambda q, f=floats, h=projected: text_scores(q, stored=data.top, vectors=f, head=h),
        }
        label = name if not clusters else f"{name}{clusters}"
        for method, score in methods.items():
            per = {lab: ranking_quality(score(q), data.labels == lab) if q is not None else zero
                   for lab, q in queries.items()}
            say(f"{prefix}.{label}.fused.{method}", mean_quality(per))


def storage_sweep(data: Dataset, search: TextSearch, *, prefix: str) -> None:
    """Class-name queries ranked by stored concepts only, for k concepts kept per image, uint8 or float16."""
    queries = {label: q for label in data.classes if (q := concepts_or_none(search, query_text(label))) is not None}
    for k in (1, 3, 5, 10, 32):
        top = top_concepts(data.logits, k)
        exact = np.take_along_axis(data.probabilities, top.ids.astype(np.int64), axis=1).astype(np.float16)
        ids = top.ids.astype(np.int64)
        scorings: dict[str, Callable[[ConceptQuery], np.ndarray]] = {
            "uint8": lambda q, top=top: concept_scores(top, q),
            "float16": lambda q, ids=ids, exact=exact: (q.dense(1000)[ids] * exact.astype(np.float32)).sum(axis=1),
        }
        out = {}
        for kind, score in scorings.items():
            per = {label: ranking_quality(score(q), data.labels == label) for label, q in queries.items()}
            out[kind] = mean_quality(per)
        say(f"{prefix}.stored_top{k}", {"bytes": 3 * k, **out})


def sensitivity(data: Dataset, search: TextSearch, head: ConceptHead, *, prefix: str) -> None:
    """The fused rule's two main knobs (sentence margin, keep) around the defaults (0.20, 0.2)."""
    from imgsearch.text import ConceptMatcher, FusionRule, SentenceMatcher

    assert search.matcher is not None and search.matcher.sentence is not None
    sentence = search.matcher.sentence
    score = scorers(data, head)["top5+direction"]
    zero = {f"mAP@{K}": 0.0, "P@10": 0.0, "mAP": 0.0}
    for margin in (0.15, 0.20, 0.25):
        for keep in (0.1, 0.15, 0.2, 0.3):
            matcher = ConceptMatcher(
                search.matcher.vocabulary,
                SentenceMatcher(sentence.encoder, sentence.vectors, rule=replace(sentence.rule, margin=margin)),
                fusion=replace(FusionRule(), keep=keep),
                lexical=search.matcher.lexical,
            )
            per = {}
            for label in data.classes:
                try:
                    per[label] = ranking_quality(score(matcher.match(query_text(label))), data.labels == label)
                except NoConceptMatches:
                    per[label] = zero
            quality = mean_quality(per)
            say(f"{prefix}.sensitivity.margin{margin}.keep{keep}", {f"mAP@{K}": quality[f"mAP@{K}"],
                **({"deer": round(per["deer"][f"mAP@{K}"], 3)} if "deer" in per else {})})


def vocabulary_gap(cifar: Dataset, search: TextSearch, head: ConceptHead) -> None:
    """CIFAR-10's deer: ImageNet-1k has no deer class; the antelopes its deer are classified as would do."""
    names = search.vocabulary.names  # type: ignore[union-attr]
    antelopes = ConceptQuery.of([names.index(n) for n in ("hartebeest", "impala", "gazelle")], [1.0, 1.0, 1.0])
    say("cifar.deer_with_antelope_concepts", {k: round(v, 3) for k, v in ranking_quality(
        scorers(cifar, head)["top5+direction"](antelopes), cifar.labels == "deer").items()})
    encoder = search.encoder
    assert encoder is not None
    for a, b in (("deer", "antelope"), ("deer", "horse"), ("deer", "moose"), ("puppy", "dog")):
        va, vb = encoder.encode([a])[0], encoder.encode([b])[0]
        say(f"text.cosine[{a}, {b}]", round(float(va @ vb), 3))


def query_text(label: str) -> str:
    return label.replace("_", " ")


def concepts_or_none(search: TextSearch, text: str, mode: str = "fused") -> ConceptQuery | None:
    try:
        return search.concepts(text, mode=mode)
    except NoConceptMatches:
        return None


def described(search: TextSearch, query: ConceptQuery | None, n: int) -> object:
    return query.describe(search.vocabulary, n) if query is not None else "rejected"  # type: ignore[arg-type]


def class_name_queries(data: Dataset, search: TextSearch, head: ConceptHead, *, prefix: str) -> None:
    """Every class name as a query over all images of the set (a rejected query scores 0)."""
    zero = {f"mAP@{K}": 0.0, "P@10": 0.0, "mAP": 0.0}
    for mode in MATCH_MODES:
        queries = {label: concepts_or_none(search, query_text(label), mode) for label in data.classes}
        rejected = [label for label, q in queries.items() if q is None]
        if rejected:
            say(f"{prefix}.{mode}.rejected", rejected)
        for method, score in scorers(data, head).items():
            per = {label: ranking_quality(score(q), data.labels == label) if q is not None else zero
                   for label, q in queries.items()}
            say(f"{prefix}.{mode}.{method}", mean_quality(per))
            if mode == "fused" and method == "top5+direction":
                say(f"{prefix}.{mode}.{method}.per_class_P@10", {k: round(v["P@10"], 2) for k, v in per.items()})
                say(f"{prefix}.{mode}.{method}.per_class_mAP@{K}", {k: round(v[f"mAP@{K}"], 3) for k, v in per.items()})
    for label in data.classes:
        say(f"{prefix}.concepts[{label}]", described(search, concepts_or_none(search, query_text(label)), 4))


# Harder queries, judged before running: a query is relevant to the listed classes of its set (the
# labels are the only ground truth; a query's set is the one whose classes it describes).
HARD_QUERIES: dict[str, list[tuple[str, list[str]]]] = {
    "cifar10": [
        ("puppy", ["dog"]),
        ("kitten", ["cat"]),
        ("car", ["automobile"]),
        ("lorry", ["truck"]),
        ("jet plane", ["airplane"]),
        ("boat", ["ship"]),
        ("toad", ["frog"]),
        ("pony", ["horse"]),
        ("antelope", ["deer"]),
        ("sparrow", ["bird"]),
        ("animal", ["bird", "cat", "deer", "dog", "frog", "horse"]),
        ("vehicle", ["airplane", "automobile", "ship", "truck"]),
        ("pet", ["cat", "dog"]),
    ],
    "corel1k": [
        ("elephant", ["elephants"]),
        ("horse", ["horses"]),
        ("food", ["foods"]),
        ("building", ["monuments"]),
        ("ancient ruins", ["monuments"]),
        ("sea", ["beaches"]),
        ("sand", ["beaches"]),
        ("snowy peaks", ["mountains_and_snow"]),
        ("roses", ["flowers"]),
        ("dinner plate", ["foods"]),
        ("dinosaur", ["dinosaurs"]),
        ("double-decker bus", ["bus"]),
        ("african tribe", ["people_and_villages_in_Africa"]),
        ("animal", ["dinosaurs", "elephants", "horses"]),
    ],
}
NONSENSE = ["xyzzy", "qwertyuiop", "blorft zindle", "asdfgh", "zzzz"]
ABSTRACT = ["justice", "yesterday", "the meaning of life"]


def hard_queries(data: Dataset, search: TextSearch, head: ConceptHead, *, prefix: str) -> None:
    per: dict[str, dict[str, float]] = {}
    score = scorers(data, head)["top5+direction"]
    for text, relevant_classes in HARD_QUERIES[data.name]:
        query = concepts_or_none(search, text)
        relevant = np.isin(data.labels, relevant_classes)
        per[text] = ranking_quality(score(query), relevant) if query is not None else {
            f"mAP@{K}": 0.0, "P@10": 0.0, "mAP": 0.0}
        say(f"{prefix}.hard[{text}]", {**{k: round(v, 3) for k, v in per[text].items()},
                                       "concepts": described(search, query, 3)})
    say(f"{prefix}.hard.mean", mean_quality(per))


def rejected(search: TextSearch) -> None:
    for group, texts in (("nonsense", NONSENSE), ("abstract", ABSTRACT)):
        for text in texts:
            try:
                query = search.concepts(text)
                say(f"text.{group}[{text}]", {"accepted": query.describe(search.vocabulary, 3)})  # type: ignore[arg-type]
            except NoConceptMatches as error:
                say(f"text.{group}[{text}]", {"rejected": str(error), "best_cosine": error.best})


# --- image + text on Corel ------------------------------------------------------------------------------


def image_text_scores(image_cosines: np.ndarray, text: np.ndarray, *, keep: float) -> np.ndarray:
    """Images whose text score reaches keep × the best first, by cosine to the query image; then the rest."""
    best = float(text.max())
    return np.where(text >= keep * best, 3.0 + image_cosines, text / max(best, 1e-12)).astype(np.float32)


def image_and_text(data: Dataset, search: TextSearch, head: ConceptHead) -> None:
    """A query image of class A plus the name of class B: images of B should come first (P@10), and be
    like the query image (mean cosine of the top 10 to it; the class-B images' mean cosine as reference)."""
    queries = [i for i, r in enumerate(data.rows) if r["split"] == "query"]
    found = {label: concepts_or_none(search, query_text(label)) for label in data.classes}
    texts = {label: q for label, q in found.items() if q is not None}
    say("corel.image+text.named_classes", sorted(texts))
    sims_of = data.vectors @ data.vectors.T
    text_of = {label: text_scores(q, stored=data.top, vectors=data.vectors, head=head) for label, q in texts.items()}

    def scaled(x: np.ndarray) -> np.ndarray:
        return (x - x.min()) / max(float(x.max() - x.min()), 1e-12)

    rules: dict[str, Callable[[int, str], np.ndarray]] = {
        "image only": lambda i, label: sims_of[i].copy(),
        "text only": lambda i, label: text_of[label].copy(),
        "text >= 0.6 best, by image": lambda i, label: image_text_scores(sims_of[i], text_of[label], keep=0.6),
        "text >= 0.8 best, by image": lambda i, label: image_text_scores(sims_of[i], text_of[label], keep=0.8),
        "text x image^0.5": lambda i, label: scaled(text_of[label]) * scaled(sims_of[i]) ** 0.5,
    }
    for alpha in (0.25, 0.5):
        rules[f"{alpha} image + {1 - alpha} text"] = (
            lambda i, label, a=alpha: a * scaled(sims_of[i]) + (1 - a) * scaled(text_of[label]))
    for n in (20, 50):
        def rerank(i: int, label: str, n: int = n) -> np.ndarray:
            keep = np.argsort(-text_of[label], kind="stable")[:n]
            out = np.full(len(data.rows), -np.inf, dtype=np.float32)
            out[keep] = sims_of[i][keep]
            return out
        rules[f"text top {n}, by image"] = rerank
    for lam in (2.0, 3.0, 4.0, 6.0, 8.0):
        def arithmetic(i: int, label: str, lam: float = lam) -> np.ndarray:
            return data.vectors @ image_text_vector(data.vectors[i], head.direction(texts[label]), weight=lam)
        rules[f"vector v + {lam} direction"] = arithmetic  # 4.0: the proposal (image_text_vector)
    bound = []
    for i in queries:
        for label in texts:
            if label != data.labels[i]:
                bound.append(float(np.sort(sims_of[i][data.labels == label])[-10:].mean()))
    say("corel.image+text.best_possible_top10_cosine", round(float(np.mean(bound)), 4))
    for name, rule in rules.items():
        p10, likeness = [], []
        for i in queries:
            for label in texts:
                if label == data.labels[i]:
                    continue
                scores = rule(i, label)
                scores[i] = -np.inf
                top = np.argsort(-scores, kind="stable")[:10]
                p10.append(float((data.labels[top] == label).mean()))
                likeness.append(float(sims_of[i][top].mean()))
        say(f"corel.image+text[{name}]", {"P@10": round(float(np.mean(p10)), 4),
                                           "top10_cosine_to_image": round(float(np.mean(likeness)), 4)})


# --- cost -----------------------------------------------------------------------------------------------


def embed_cost(datasets: Path, embedder: Embedder) -> None:
    """Images/s with concepts on vs off: the whole embed pipeline (decode included) on the same 256 Corel
    images, and the forward pass alone on the same 128 preprocessed images, alternating, medians."""
    archive, root, rows = read_zip(datasets / "corel1k.zip")
    data = [archive.read(f"{root}/{r['path']}") for r in rows[:256]]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(5):
        for mode in ("off", "on"):
            started = time.perf_counter()
            if mode == "off":
                embedder.embed_stream(lambda i: data[i], len(data))
            else:
                done = embedder.embed_all(lambda i: data[i], len(data), concepts=True)
                assert done.concepts is not None and len(done.concepts) == len(data)
            rates[mode].append(len(data) / (time.perf_counter() - started))
    say("cost.embed_img_per_s.concepts_off", round(statistics.median(rates["off"]), 1))
    say("cost.embed_img_per_s.concepts_on", round(statistics.median(rates["on"]), 1))
    say("cost.embed_img_per_s.runs", {k: [round(v, 1) for v in vs] for k, vs in rates.items()})
    pixels = [embedder.pixels(item) for item in data[:128]]
    forward: dict[str, list[float]] = {"run": [], "run_concepts": []}
    for _ in range(8):
        for name, run in (("run", embedder.run), ("run_concepts", embedder.run_concepts)):
            started = time.perf_counter()
            for start in range(0, len(pixels), 32):
                run(pixels[start : start + 32])
            forward[name].append(len(pixels) / (time.perf_counter() - started))
    say("cost.forward_img_per_s.features", round(statistics.median(forward["run"]), 1))
    say("cost.forward_img_per_s.features+logits", round(statistics.median(forward["run_concepts"]), 1))
    stored = embedder.embed_all(lambda i: data[i], 8, concepts=True).concepts
    assert stored is not None
    say("cost.bytes_per_image", {"ids_uint16": stored.ids[0].nbytes, "scores_uint8": stored.scores[0].nbytes,
                                 "total": stored.nbytes // len(stored)})


def text_cost(search: TextSearch, data: Dataset, head: ConceptHead, model_dir: Path, threads: int) -> None:
    texts = ["dogs", "puppy", "mountains and snow", "a red sports car", "people and villages in Africa"]
    for mode in MATCH_MODES:
        times = []
        for _ in range(5):
            for text in texts:
                started = time.perf_counter()
                concepts_or_none(search, text, mode)  # a rejection costs the same
                times.append((time.perf_counter() - started) * 1000)
        say(f"cost.text_to_concepts_ms.{mode}", {"p50": round(statistics.median(times), 2), "max": round(max(times), 2)})
    query = search.concepts("dogs")
    for method, score in scorers(data, head).items():
        times = []
        for _ in range(20):
            started = time.perf_counter()
            score(query)
            times.append((time.perf_counter() - started) * 1000)
        say(f"cost.rank_{len(data.rows)}_images_ms.{method}", round(statistics.median(times), 2))
    spec = search.spec
    assert spec.text is not None
    say("cost.text_model_bytes.int8", (model_dir / spec.text.onnx_file).stat().st_size)
    say("cost.text_load_s.int8", round(search.encoder.load_seconds, 3))  # type: ignore[union-attr]
    started = time.perf_counter()
    TextSearch(spec, model_dir, threads=threads)
    say("cost.text_search_load_s", round(time.perf_counter() - started, 3))
    say("cost.concept_files_bytes", {name: (model_dir / name).stat().st_size for name in spec.files()
                                     if name not in (spec.onnx_file, spec.text.onnx_file)})


def fp32_comparison(search: TextSearch, corel: Dataset, cifar: Dataset, head: ConceptHead, model_dir: Path,
                    work: Path, threads: int) -> None:
    """The same figures with the fp32 text model (exported into a temporary folder, then dropped)."""
    try:
        from imgsearch.build_model import export_text_model
    except ImportError:
        return
    spec = search.spec
    assert spec.text is not None and spec.concepts is not None
    text = export_text_model(work, vocabulary=model_dir / spec.concepts.vocabulary_file, quantise=False)
    say("cost.text_model_bytes.fp32", (work / text.onnx_file).stat().st_size)
    fp32_dir = work
    for name in (spec.onnx_file, spec.concepts.vocabulary_file, spec.concepts.head_file):
        link = fp32_dir / name
        if not link.exists():
            link.symlink_to(model_dir / name)
    fp32 = TextSearch(replace(spec, text=text), fp32_dir, threads=threads)
    say("cost.text_load_s.fp32", round(fp32.encoder.load_seconds, 3))  # type: ignore[union-attr]
    int8_vectors = search.matcher.sentence.vectors  # type: ignore[union-attr]
    fp32_vectors = fp32.matcher.sentence.vectors  # type: ignore[union-attr]
    cosines = (int8_vectors * fp32_vectors).sum(axis=1)
    say("text.int8_vs_fp32_cosine_on_concept_texts", {"mean": round(float(cosines.mean()), 4),
                                                       "min": round(float(cosines.min()), 4)})
    zero = {f"mAP@{K}": 0.0, "P@10": 0.0, "mAP": 0.0}
    for data, prefix in ((cifar, "cifar"), (corel, "corel")):
        score = scorers(data, head)["top5+direction"]
        for mode in ("sentence", "fused"):
            queries = {label: concepts_or_none(fp32, query_text(label), mode) for label in data.classes}  # type: ignore[arg-type]
            per = {label: ranking_quality(score(q), data.labels == label) if q is not None else zero
                   for label, q in queries.items()}
            say(f"{prefix}.fp32_text.{mode}.top5+direction", mean_quality(per))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-cost", action="store_true", help="quality only (no timing runs)")
    args = parser.parse_args()
    model_dir = args.model_dir or default_model_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    say("command", " ".join(sys.argv))
    embedder = Embedder.load(model_dir, threads=args.threads)
    spec = ModelSpec.load(model_dir)
    search = TextSearch(spec, model_dir, threads=args.threads)
    head = ConceptHead.load(model_dir, spec)
    cifar = load_set("cifar10", args.datasets, args.out, embedder)
    corel = load_set("corel1k", args.datasets, args.out, embedder)
    say("cifar.images", len(cifar.rows))
    say("corel.images", len(corel.rows))
    class_name_queries(cifar, search, head, prefix="cifar")
    class_name_queries(corel, search, head, prefix="corel")
    storage_sweep(cifar, search, prefix="cifar")
    storage_sweep(corel, search, prefix="corel")
    sensitivity(cifar, search, head, prefix="cifar")
    sensitivity(corel, search, head, prefix="corel")
    vocabulary_gap(cifar, search, head)
    encoded_queries(cifar, search, head, prefix="cifar")
    encoded_queries(corel, search, head, prefix="corel")
    hard_queries(cifar, search, head, prefix="cifar")
    hard_queries(corel, search, head, prefix="corel")
    rejected(search)
    image_and_text(corel, search, head)
    if not args.skip_cost:
        embed_cost(args.datasets, embedder)
        text_cost(search, cifar, head, Path(model_dir), args.threads)
        with tempfile.TemporaryDirectory() as scratch:
            fp32_comparison(search, corel, cifar, head, Path(model_dir), Path(scratch), args.threads)
    save_results(args.out, "text-results.json")


if __name__ == "__main__":
    main()
