#!/usr/bin/env python3
"""Retrieval-quality levers measured on cached embeddings (numpy only), for docs/BENCHMARKS.md.

    .venv/bin/python scripts/quality_levers.py --datasets ../shared/datasets --out bench-out

Needs the caches the other benchmarks write: `bench-out/cifar-raw.npy` (scripts/bench.py: the 59,000
database then 1,000 query embeddings of the deep-hashing protocol) and `bench-out/text/corel1k-*.npz`
(scripts/text_bench.py: Corel-1k vectors and class logits, sorted by path).

Protocols as scripts/bench.py: Corel-1k 100 queries against 900 images, mAP@100; CIFAR-10 1,000 queries
against 59,000, mAP@1000 (AP over the relevant retrieved). Levers:

- semantic: feature cosine + β × the similarity of the two images' stored top-5 concepts (Σ p·p over
  shared classes, uint8 probabilities as stored). Corel: from the model's logits; CIFAR: the logits
  recomputed from the unit vectors by the classifier head (T = 15, as concepts.ConceptHead.scores).
- query expansion (αQE): the query replaced by unit(q + Σ_{i≤n} s_i^α d_i) over its top n, searched again.
- database-side augmentation (DBA): each database vector replaced by unit(Σ_{i≤n} s_i^α d_i) over its
  own top n (measured only: it rewrites old vectors whenever new ones arrive).
- a PCA for small indexes: fitted once on a public set (CIFAR-10's 59,000) and applied to Corel-1k,
  or fitted on Corel's own 900, against the raw 1280-d cosine of the unfitted default.
- codes: 64-bit ITQ on the PCA of the features (the default) against ITQ on features joined with
  γ × the top-5 concept vector (semantic codes).
- `--pooling DIR --pooling DIR2 ...`: GeM instead of average pooling (Lite0 folders), and the vectors
  of two folders (two input scales, or two models) pooled.
- `--agh`: unsupervised hashing beyond ITQ, numpy only: Anchor Graph Hashing at 64 bits on CIFAR-10.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import sys
import zipfile
from pathlib import Path

import numpy as np
from benchlib import save_results, say

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.concepts import ConceptHead, TopConcepts, top_concepts
from imgsearch.encode import fit_itq
from imgsearch.maintain import FIT_CLUSTERS
from imgsearch.modelspec import ModelSpec, default_model_dir


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def mean_ap(scores: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, k: int) -> float:
    """mAP@k (AP over the relevant retrieved in the top k, as scripts/bench.py)."""
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable"), axis=1)
    relevant = (db_labels[order] == q_labels[:, None]).astype(np.float64)
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, k + 1)
    found = relevant.sum(axis=1)
    ap = np.where(found > 0, (precision * relevant).sum(axis=1) / np.maximum(found, 1), 0.0)
    return round(float(ap.mean()), 4)


def concept_matrix(top: TopConcepts, classes: int) -> np.ndarray:
    """n × classes dense probabilities of the stored top concepts (uint8 / 255), zeros elsewhere."""
    dense = np.zeros((len(top), classes), np.float32)
    np.put_along_axis(dense, top.ids.astype(np.int64), top.scores.astype(np.float32) / 255.0, axis=1)
    return dense


def hamming_scores(q_codes: np.ndarray, db_codes: np.ndarray, bits: int) -> np.ndarray:
    table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)
    out = np.empty((len(q_codes), len(db_codes)), np.float32)
    for i, q in enumerate(q_codes):
        out[i] = 1.0 - table[np.bitwise_xor(db_codes, q)].sum(axis=1) / bits
    return out


def expanded(q: np.ndarray, db: np.ndarray, n: int, alpha: float) -> np.ndarray:
    sims = q @ db.T
    top = np.argpartition(-sims, n, axis=1)[:, :n]
    weights = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** alpha
    return unit(q + np.einsum("qn,qnd->qd", weights, db[top]))


def augmented(db: np.ndarray, n: int, alpha: float, chunk: int = 2000) -> np.ndarray:
    out = np.empty_like(db)
    for start in range(0, len(db), chunk):
        part = db[start : start + chunk]
        sims = part @ db.T
        top = np.argpartition(-sims, n, axis=1)[:, :n]  # includes the vector itself
        weights = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0) ** alpha
        out[start : start + chunk] = unit(np.einsum("qn,qnd->qd", weights, db[top]))
    return out


def levers(name: str, q: np.ndarray, db: np.ndarray, q_top: TopConcepts, db_top: TopConcepts,
           q_labels: np.ndarray, db_labels: np.ndarray, k: int, classes: int) -> None:
    base = q @ db.T
    say(f"{name}.cosine", mean_ap(base, q_labels, db_labels, k))
    qc, dc = concept_matrix(q_top, classes), concept_matrix(db_top, classes)
    semantic = qc @ dc.T
    say(f"{name}.concepts_only", mean_ap(semantic, q_labels, db_labels, k))
    for beta in (0.1, 0.2, 0.3, 0.5, 1.0):
        say(f"{name}.cosine+{beta}*concepts", mean_ap(base + beta * semantic, q_labels, db_labels, k))
    for n, alpha in ((5, 3.0), (10, 3.0), (20, 3.0)):
        say(f"{name}.aqe_n{n}_a{alpha:g}", mean_ap(expanded(q, db, n, alpha) @ db.T, q_labels, db_labels, k))
    for n in (5, 10):
        aug = augmented(db, n, 3.0)
        say(f"{name}.dba_n{n}", mean_ap(q @ aug.T, q_labels, db_labels, k))


def load_corel(datasets: Path, out: Path, model_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Corel-1k's vectors and logits (sorted by path) from text_bench's cache, or embedded here once."""
    from imgsearch.embed import Embedder

    embedder = Embedder.load(model_dir)
    with zipfile.ZipFile(datasets / "corel1k.zip") as archive:
        rows = list(csv.DictReader(io.TextIOWrapper(archive.open("corel1k/labels.csv"), encoding="utf-8")))
        rows.sort(key=lambda r: r["path"])
        cache = out / "text" / f"corel1k-{embedder.spec.fingerprint}.npz"
        if not cache.exists():
            vectors, logits = [], []
            for start in range(0, len(rows), 32):
                batch = [embedder.pixels(archive.read(f"corel1k/{r['path']}")) for r in rows[start : start + 32]]
                v, lg = embedder.run_concepts(batch)
                vectors.append(v)
                logits.append(lg)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, vectors=np.concatenate(vectors).astype(np.float16), logits=np.concatenate(logits).astype(np.float16))
    with np.load(cache) as data:
        vectors, logits = data["vectors"].astype(np.float32), data["logits"].astype(np.float32)
    return vectors, logits, np.array([r["label"] for r in rows]), [r["split"] for r in rows]


def hashing_levers(datasets: Path, cifar_out: Path) -> None:
    """CIFAR-10 64-bit codes: ITQ (the default encoder) against Anchor Graph Hashing on the PCA-256 floats."""
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import cifar_raw

    raw, db_rows, q_rows, _ = cifar_raw(datasets, None, cifar_out)  # type: ignore[arg-type]
    raw = unit(raw)
    db, q = raw[: len(db_rows)], raw[len(db_rows) :]
    db_labels, q_labels = np.array([r["label"] for r in db_rows]), np.array([r["label"] for r in q_rows])
    itq = fit_itq(db, bits=64, dims=256)
    say("cifar.itq64", mean_ap(hamming_scores(itq.codes(q), itq.codes(db), 64), q_labels, db_labels, 1000))
    floats = fit_itq(db, bits=256, dims=256).floats
    for anchors, s in ((1000, 3), (2000, 3), (2000, 5), (4000, 3)):
        started = time.perf_counter()
        codes, q_codes = anchor_graph_hashing(floats(db), floats(q), bits=64, anchors=anchors, s=s)
        seconds = time.perf_counter() - started
        say(f"cifar.agh64.m{anchors}_s{s}", {"mAP@1000": mean_ap(hamming_scores(q_codes, codes, 64), q_labels, db_labels, 1000),
                                             "train_seconds": round(seconds, 1)})


def kmeans(x: np.ndarray, m: int, *, iterations: int = 15, seed: int = 0) -> np.ndarray:
    """Spherical k-means: m unit centres of unit rows."""
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), m, replace=False)].copy()
    for _ in range(iterations):
        nearest = np.argmax(x @ centres.T, axis=1)
        for j in range(m):
            members = x[nearest == j]
            if len(members):
                centres[j] = members.mean(axis=0)
        centres = unit(centres)
    return centres


def anchor_weights(x: np.ndarray, anchors: np.ndarray, s: int, bandwidth: float | None = None) -> tuple[np.ndarray, float]:
    """AGH's Z: each row's weights on its s nearest anchors (Gaussian of the squared distance, rows sum to 1)."""
    sims = x @ anchors.T
    nearest = np.argpartition(-sims, s, axis=1)[:, :s]
    squared = 2 - 2 * np.take_along_axis(sims, nearest, axis=1)
    bandwidth = bandwidth or float(squared.mean())
    weights = np.exp(-squared / bandwidth)
    weights /= weights.sum(axis=1, keepdims=True)
    z = np.zeros((len(x), len(anchors)), np.float32)
    np.put_along_axis(z, nearest, weights.astype(np.float32), axis=1)
    return z, bandwidth


def anchor_graph_hashing(db: np.ndarray, q: np.ndarray, *, bits: int, anchors: int, s: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Anchor Graph Hashing (Liu, Wang, Kumar, Chang, ICML 2011), numpy only: the graph Laplacian's
    eigenvectors through m anchors; codes = sign(Z W). Returns packed (database codes, query codes)."""
    centres = kmeans(db, anchors)
    z, bandwidth = anchor_weights(db, centres, s)
    zq, _ = anchor_weights(q, centres, s, bandwidth)
    scale = 1 / np.sqrt(z.sum(axis=0) + 1e-9)
    values, vectors = np.linalg.eigh((scale[:, None] * (z.T @ z)) * scale[None, :])
    order = np.argsort(-values)[1 : bits + 1]  # the first is trivial (constant)
    w = (scale[:, None] * vectors[:, order]) / np.sqrt(np.maximum(values[order], 1e-9))[None, :]
    return np.packbits(z @ w > 0, axis=1), np.packbits(zq @ w > 0, axis=1)


def discriminant_levers(datasets: Path, cifar_out: Path, out: Path, work: Path) -> None:
    """The discriminant projection (encode.fit_itq clusters=K) against plain PCA: numpy on the cached
    embeddings for several K (CIFAR-10 floats, 64-bit codes, αQE), Corel-1k fitted on its 900 with few
    clusters, then CIFAR-10 through the index (ImageIndex.fit, Searcher) as `imgsearch fit --clusters`."""
    import shutil
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import build_index, cifar_raw, quality, rankings

    from imgsearch.embed import Embedder
    from imgsearch.search import Searcher
    from imgsearch.segment import ObjectRef

    raw, db_rows, q_rows, _ = cifar_raw(datasets, None, cifar_out)  # type: ignore[arg-type]
    db, q = raw[: len(db_rows)], raw[len(db_rows) :]
    db_labels, q_labels = np.array([r["label"] for r in db_rows]), np.array([r["label"] for r in q_rows])
    for clusters in (0, 50, 100, 200):
        started = time.perf_counter()
        floats = fit_itq(db, bits=256, dims=256, clusters=clusters)
        seconds = time.perf_counter() - started
        codes = fit_itq(db, bits=64, dims=256, clusters=clusters)
        fq, fdb = floats.floats(q), floats.floats(db)
        say(f"cifar.discriminant_k{clusters}", {
            "float_dims": int(fdb.shape[1]),
            "floats_mAP@1000": mean_ap(fq @ fdb.T, q_labels, db_labels, 1000),
            "floats_aqe10_mAP@1000": mean_ap(expanded(fq, fdb, 10, 3.0) @ fdb.T, q_labels, db_labels, 1000),
            "codes64_mAP@1000": mean_ap(hamming_scores(codes.codes(q), codes.codes(db), 64), q_labels, db_labels, 1000),
            "fit_seconds": round(seconds, 1),
        })
    # Corel-1k: 900 images allow at most 18 clusters (50 a cluster); raw cosine (no fit) is the default
    vectors, _, labels, splits = load_corel(datasets, out, default_model_dir())
    is_query = np.array([split == "query" for split in splits])
    cq, cdb = vectors[is_query], vectors[~is_query]
    for clusters in (0, 10, 14, 18):
        encoder = fit_itq(cdb, bits=256, dims=256, clusters=clusters)
        say(f"corel.fit900.discriminant_k{clusters}",
            mean_ap(encoder.floats(cq) @ encoder.floats(cdb).T, labels[is_query], labels[~is_query], 100))

    # through the index, as `imgsearch fit --clusters K` leaves it: HNSW base, hybrid and 64-bit Hamming
    embedder = Embedder.load(default_model_dir())
    refs = [ObjectRef(bucket="cifar", key=r["path"], sequencer="1") for r in db_rows]
    label_of = {r["path"]: r["label"] for r in db_rows}
    query_labels = [r["label"] for r in q_rows]
    for clusters in (0, 100):
        for bits, metric in ((256, "hybrid"), (64, "hamming")):
            root = work / f"cifar-k{clusters}-{bits}"
            shutil.rmtree(root, ignore_errors=True)
            index = build_index(root, refs, db, embedder, bits=bits, dims=256, whiten=0.0, hnsw_min=1, clusters=clusters)
            searcher = Searcher(index)
            say(f"cifar.index.k{clusters}.{bits}b.{metric}", quality(rankings(searcher, q, k=1000, metric=metric), query_labels, label_of, 1000))
            if metric == "hybrid":
                say(f"cifar.index.k{clusters}.{bits}b.hybrid_expand10",
                    quality(rankings(searcher, q, k=1000, metric=metric, expand=10), query_labels, label_of, 1000))
            shutil.rmtree(root, ignore_errors=True)


def beyond_discriminant(datasets: Path, cifar_out: Path, out: Path) -> None:
    """Three probes on top of the default fit (100 clusters on CIFAR-10), numpy on the cached embeddings:
    signed power p of the features before fitting (p = 0.5 is the square root: not a linear encoder),
    Anchor Graph Hashing on the discriminant floats instead of ITQ, and the classifier's logit space
    (x @ Wᵀ of the ImageNet head, a fixed supervised projection shipped with the model) as the floats."""
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import cifar_raw

    raw, db_rows, q_rows, _ = cifar_raw(datasets, None, cifar_out)  # type: ignore[arg-type]
    raw = np.asarray(raw, dtype=np.float32)
    n = len(db_rows)
    db_labels, q_labels = np.array([r["label"] for r in db_rows]), np.array([r["label"] for r in q_rows])
    vectors, _, labels, splits = load_corel(datasets, out, default_model_dir())
    vectors = vectors.astype(np.float32)
    is_query = np.array([split == "query" for split in splits])

    def corel(x: np.ndarray) -> float:
        return mean_ap(x[is_query] @ x[~is_query].T, labels[is_query], labels[~is_query], 100)

    def cifar(x: np.ndarray) -> float:
        return mean_ap(x[n:] @ x[:n].T, q_labels, db_labels, 1000)

    for power in (1.0, 0.7, 0.5):
        powered = unit(np.sign(raw) * np.abs(raw) ** power)
        db, q = powered[:n], powered[n:]
        floats = fit_itq(db, bits=256, dims=256, clusters=FIT_CLUSTERS)
        codes = fit_itq(db, bits=64, dims=256, clusters=FIT_CLUSTERS)
        fq, fdb = floats.floats(q), floats.floats(db)
        result = {
            "floats_mAP@1000": mean_ap(fq @ fdb.T, q_labels, db_labels, 1000),
            "floats_aqe10_mAP@1000": mean_ap(expanded(fq, fdb, 10, 3.0) @ fdb.T, q_labels, db_labels, 1000),
            "codes64_mAP@1000": mean_ap(hamming_scores(codes.codes(q), codes.codes(db), 64), q_labels, db_labels, 1000),
        }
        for anchors in (1000, 2000):
            started = time.perf_counter()
            agh, agh_q = anchor_graph_hashing(fdb, fq, bits=64, anchors=anchors, s=5)
            result[f"agh64_m{anchors}_s5_mAP@1000"] = mean_ap(hamming_scores(agh_q, agh, 64), q_labels, db_labels, 1000)
            result[f"agh64_m{anchors}_train_seconds"] = round(time.perf_counter() - started, 1)
        say(f"cifar.k100.power{power:g}", result)
        corel_powered = unit(np.sign(vectors) * np.abs(vectors) ** power)
        fitted = {k: fit_itq(corel_powered[~is_query], bits=256, dims=256, clusters=k) for k in (0, 14)}
        say(f"corel.power{power:g}", {
            "raw_cosine_mAP@100": corel(corel_powered),
            "aqe10_mAP@100": mean_ap(expanded(corel_powered[is_query], corel_powered[~is_query], 10, 3.0)
                                     @ corel_powered[~is_query].T, labels[is_query], labels[~is_query], 100),
            **{f"fit900_k{k}_mAP@100": corel(e.floats(corel_powered)) for k, e in fitted.items()},
        })
    head = ConceptHead.load(default_model_dir(), ModelSpec.load(default_model_dir()))
    for name, x, score in (("corel", vectors, corel), ("cifar", raw, cifar)):
        logits = x @ head.weight.T
        say(f"{name}.logit_space", {
            "raw_cosine": score(unit(x)),
            "logits": score(unit(logits)),
            "logits_centred": score(unit(logits - logits.mean(axis=0))),
            "features_and_centred_logits": score(unit(np.hstack([unit(x - x.mean(axis=0)), unit(logits - logits.mean(axis=0))]))),
        })


def policy_path(datasets: Path, cifar_out: Path, work: Path) -> None:
    """CIFAR-10 the way `imgsearch index` leaves it: appends, then the maintenance policy (maintain.run: the
    automatic fit takes maintain.fit_clusters for the index's size), HNSW base; hybrid (256-bit index)
    and Hamming (64-bit index), with and without query expansion."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import cifar_raw, quality, rankings

    from imgsearch import maintain
    from imgsearch.embed import Embedder
    from imgsearch.index import ImageIndex
    from imgsearch.search import Searcher
    from imgsearch.segment import ObjectRef

    raw, db_rows, q_rows, _ = cifar_raw(datasets, None, cifar_out)  # type: ignore[arg-type]
    db, q = raw[: len(db_rows)], raw[len(db_rows) :]
    spec = Embedder.load(default_model_dir()).spec
    refs = [ObjectRef(bucket="cifar", key=r["path"], sequencer="1") for r in db_rows]
    label_of = {r["path"]: r["label"] for r in db_rows}
    query_labels = [r["label"] for r in q_rows]
    for bits, metric in ((256, "hybrid"), (64, "hamming")):
        root = work / f"cifar-policy-{bits}"
        shutil.rmtree(root, ignore_errors=True)
        index = ImageIndex.open(str(root))
        index.ensure(spec, bits=bits)
        for start in range(0, len(refs), 5000):
            index.append(refs[start : start + 5000], db[start : start + 5000])
        maintain.run(index)
        encoder = index.encoder(index.manifest().encoder)
        searcher = Searcher(index)
        say(f"cifar.policy.{bits}b.encoder", {"version": encoder.version, "float_dims": int(encoder.projection.shape[1])})
        for expand in (0, 10):
            say(f"cifar.policy.{bits}b.{metric}.expand{expand}",
                quality(rankings(searcher, q, k=1000, metric=metric, expand=expand), query_labels, label_of, 1000))
        shutil.rmtree(root, ignore_errors=True)


def pooling_and_scales(datasets: Path, out: Path, model_dirs: list[Path]) -> None:
    """Corel-1k: GeM against average pooling (PyTorch on the feature maps, the build extra), and two
    input scales (or two models) pooled: unit(unit(a) + unit(b)), with and without αQE."""
    import torch

    from imgsearch.build_model import feature_model
    from imgsearch.embed import Embedder

    torch.set_num_threads(2)
    net = feature_model()
    with zipfile.ZipFile(datasets / "corel1k.zip") as archive:
        rows = sorted(csv.DictReader(io.TextIOWrapper(archive.open("corel1k/labels.csv"), encoding="utf-8")),
                      key=lambda r: r["path"])
        images = [archive.read(f"corel1k/{r['path']}") for r in rows]
    labels = np.array([r["label"] for r in rows])
    q = np.array([r["split"] == "query" for r in rows])
    vectors = {}
    for model_dir in model_dirs:
        spec = ModelSpec.load(model_dir)
        vectors[model_dir] = unit(load_corel(datasets, out, model_dir)[0])
        if spec.name != "efficientnet-lite0":
            continue  # feature_model() is Lite0's
        embedder = Embedder.load(model_dir)
        with torch.inference_mode():
            maps = torch.cat([
                net.backbone.extract_features(torch.from_numpy(np.stack([embedder.pixels(d) for d in images[i : i + 50]])))
                for i in range(0, len(images), 50)
            ])
        for power in (2.0, 3.0, 4.0):
            v = unit(maps.clamp(min=1e-6).pow(power).mean(dim=(2, 3)).pow(1.0 / power).numpy())
            say(f"corel.gem_p{power:g}.{spec.input_size}px", mean_ap(v[q] @ v[~q].T, labels[q], labels[~q], 100))
    names = list(vectors)
    for a, b in itertools.combinations(names, 2):
        v = unit(vectors[a] + vectors[b])
        key = f"corel.pooled[{Path(a).name}+{Path(b).name}]"
        say(key, mean_ap(v[q] @ v[~q].T, labels[q], labels[~q], 100))
        say(key + ".aqe_n10", mean_ap(expanded(v[q], v[~q], 10, 3.0) @ v[~q].T, labels[q], labels[~q], 100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--model-dir", type=Path, default=None, help="the model (default: the model folder)")
    parser.add_argument("--cifar-out", type=Path, default=None,
                        help="the folder with this model's cifar-raw.npy (scripts/bench.py --out); default --out")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--agh", action="store_true", help="only Anchor Graph Hashing against ITQ, CIFAR-10 64-bit")
    parser.add_argument("--discriminant", action="store_true",
                        help="only the discriminant projection (fit --clusters) against plain PCA")
    parser.add_argument("--policy", action="store_true",
                        help="only CIFAR-10 through appends and the maintenance policy (what `imgsearch index` does)")
    parser.add_argument("--beyond", action="store_true",
                        help="only the probes on top of the default fit: feature power, AGH, logit space")
    parser.add_argument("--work", type=Path, default=Path("/tmp/levers-work"), help="scratch indexes (--discriminant)")
    parser.add_argument("--pooling", type=Path, action="append", default=None, metavar="MODEL_DIR",
                        help="only GeM pooling and pooled scales/models on Corel over these model folders")
    args = parser.parse_args()
    say("command", " ".join(sys.argv))
    if args.pooling:
        pooling_and_scales(args.datasets, args.out, args.pooling)
        save_results(args.out, "quality-levers-pooling.json")
        return
    if args.policy:
        policy_path(args.datasets, args.cifar_out or args.out, args.work)
        save_results(args.out, "quality-levers-policy.json")
        return
    if args.discriminant:
        discriminant_levers(args.datasets, args.cifar_out or args.out, args.out, args.work)
        save_results(args.out, "quality-levers-discriminant.json")
        return
    if args.beyond:
        beyond_discriminant(args.datasets, args.cifar_out or args.out, args.out)
        save_results(args.out, "quality-levers-beyond.json")
        return
    if args.agh:
        hashing_levers(args.datasets, args.cifar_out or args.out)
        save_results(args.out, "quality-levers-agh.json")
        return
    model_dir = args.model_dir or default_model_dir()
    spec = ModelSpec.load(model_dir)
    head = ConceptHead.load(model_dir, spec)
    classes = head.weight.shape[0]

    # --- Corel-1k: 100 queries against 900 --------------------------------------------------------------
    say("model", {"name": spec.name, "input_size": spec.input_size, "resize": spec.resize})
    vectors, logits, labels, splits = load_corel(args.datasets, args.out, model_dir)
    vectors = unit(vectors)
    is_query = np.array([s == "query" for s in splits])
    top = top_concepts(logits)
    q, db = vectors[is_query], vectors[~is_query]
    levers("corel", q, db, top.take(np.flatnonzero(is_query)), top.take(np.flatnonzero(~is_query)),
           labels[is_query], labels[~is_query], 100, classes)

    if args.skip_cifar:
        write(args.out, spec)
        return
    # --- CIFAR-10: 1,000 queries against 59,000 ------------------------------------------------------------
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import cifar_raw  # the same split and cache as scripts/bench.py

    raw, db_rows, q_rows, _ = cifar_raw(args.datasets, None, args.cifar_out or args.out)  # type: ignore[arg-type]
    raw = unit(raw)
    db_raw, q_raw = raw[: len(db_rows)], raw[len(db_rows) :]
    db_labels = np.array([r["label"] for r in db_rows])
    q_labels = np.array([r["label"] for r in q_rows])
    approx = ConceptHead(head.weight, head.bias)
    cifar_top = top_concepts(np.concatenate([15.0 * (part @ approx.weight.T) + approx.bias
                                             for part in np.array_split(raw, 30)]))
    db_top, q_top = cifar_top.take(np.arange(len(db_rows))), cifar_top.take(np.arange(len(db_rows), len(raw)))
    encoder = fit_itq(db_raw, bits=256, dims=256)
    fq, fdb = encoder.floats(q_raw), encoder.floats(db_raw)
    levers("cifar.pca256", fq, fdb, q_top, db_top, q_labels, db_labels, 1000, classes)

    # codes: 64-bit ITQ on the features, and on features joined with their concept vectors
    qc, dc = concept_matrix(q_top, classes), concept_matrix(db_top, classes)
    for gamma in (0.0, 0.5, 1.0, 2.0):
        joined_db = np.concatenate([db_raw, gamma * dc], axis=1) if gamma else db_raw
        joined_q = np.concatenate([q_raw, gamma * qc], axis=1) if gamma else q_raw
        codes = fit_itq(joined_db, bits=64, dims=256)
        scores = hamming_scores(codes.codes(joined_q), codes.codes(joined_db), 64)
        say(f"cifar.itq64.concepts_gamma{gamma:g}", mean_ap(scores, q_labels, db_labels, 1000))
        if gamma:
            floats = codes.floats
            say(f"cifar.pca256.joined_gamma{gamma:g}", mean_ap(floats(joined_q) @ floats(joined_db).T, q_labels, db_labels, 1000))

    # --- a PCA for small indexes, fitted on a public set ----------------------------------------------------
    for source, fit_on in (("cifar59k", db_raw), ("corel900", db)):
        for dims, whiten in ((128, 0.0), (256, 0.0), (256, 0.5)):
            pca = fit_itq(fit_on, bits=64, dims=dims, whiten=whiten)
            say(f"corel.pca_from_{source}.{dims}d_w{whiten:g}", mean_ap(pca.floats(q) @ pca.floats(db).T,
                                                                       labels[is_query], labels[~is_query], 100))
    write(args.out, spec)


def write(out: Path, spec: ModelSpec) -> None:
    save_results(out, f"quality-levers-{spec.name}-{spec.input_size}-{spec.resize}.json")


if __name__ == "__main__":
    main()
