#!/usr/bin/env python3
"""Query-time re-ranking levers that need no labels and no retraining, on cached embeddings (numpy only).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python scripts/quality_rerank.py \
        --datasets ../shared/datasets --out bench-out

Same data, splits and mAP as scripts/quality_levers.py (imported from there): CIFAR-10 1,000 queries
against 59,000, PCA-256 floats fitted on the database, mAP@1000; Corel-1k 100 queries against 900, raw
1280-d unit vectors (the default path below 1,000 images), mAP@100; 64-bit ITQ codes on CIFAR-10.

Every lever re-orders the top R of the plain ranking (positions R.. keep their order) and is timed
per query, one thread (median ms of the re-ranking step alone, given the top R ids and scores the index
returned). Levers:

- `jaccard_kK_lL`: a database-side kNN graph (each image's K nearest, found at ingest). Score
  (1-L)·cos + L·|N(q) ∩ N(c)| / |N(q) ∪ N(c)|, N(q) the query's top K, N(c) = {c} ∪ c's K-1 neighbours.
- `krecip_kK_eE_lL`: k-reciprocal weighted Jaccard (Zhong et al. 2017, simplified): sparse vectors
  over image ids, weights max(s,0)^3, kept only where the neighbour relation is reciprocal (s ≥ the
  neighbour's own K-th similarity, which the graph stores); the query's vector averaged with its top E
  neighbours' (local query expansion). Score (1-L)·cos + L·Jaccard.
- `nbmean_kK_bB`: cos(q,c) + B · mean of cos(q, g) over c's K stored neighbours (DBA done at query
  time: needs the neighbours' vectors).
- `diff_online_rR_kK`: diffusion on the top R alone (no database structure): R×R affinity from the
  candidates' vectors, each row's K nearest kept, mutual edges, weights s^3, S = D^-½ W D^-½,
  y = s(q,·)^3 on the query's top 10, f solving (I - 0.99 S) f = y by 20 conjugate-gradient steps.
- `diff_graph_rR_kK`: the same diffusion over the stored kNN graph restricted to the top R (no R×R
  products at query time; Iscen et al. 2017 truncated to the query's neighbourhood).
- `aqe+...`: α-query expansion first (top 10, α = 3: q' = unit(q + Σ max(s_i,0)^3 y_i)), one more
  search, then the lever on q''s ranking. Its own extra time is one more index search
  (`search_step_exact_ms` here is an exact 59,000-row scan; the HNSW step is ~0.5 ms, docs/BENCHMARKS.md).
- codes (CIFAR 64-bit ITQ): the same levers with code similarity 1 - 2·hamming/64 (unit ±1 vectors)
  and a graph of Hamming neighbours: a ranking made from codes alone. `codes+floatgraph` uses a graph
  built from the floats at ingest (ids and similarities only), `hybrid` re-scores the Hamming top R by
  float cosine: neither is a codes-only ranking any more.

Bytes per image of a database graph: K × (4-byte id + 2-byte float16 similarity); unweighted Jaccard
needs only the ids (K × 4).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import average_precision, save_results, say
from quality_levers import expanded, hamming_scores, load_corel, mean_ap, unit

import imgsearch._onnx_first  # noqa: F401  (onnxruntime before usearch)
from imgsearch.encode import fit_itq
from imgsearch.modelspec import default_model_dir

GAMMA = 3.0
ALPHA = 0.99


# --- rankings and mAP ------------------------------------------------------------------------------------

def top_list(scores: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top `length` ids and scores, best first (stable on ties)."""
    length = min(length, scores.shape[1])
    top = np.argpartition(-scores, length - 1, axis=1)[:, :length]
    s = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int32), np.take_along_axis(s, order, axis=1)


def map_of(order: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, k: int) -> float:
    """mAP@k of ranked id lists (benchlib.average_precision: AP over the relevant retrieved)."""
    relevant = db_labels[order[:, :k]] == q_labels[:, None]
    return round(float(np.mean([average_precision(r.astype(np.float64)) for r in relevant])), 4)


def knn_graph(x: np.ndarray, k: int, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows by inner product: ids (int32) and similarities, best first."""
    n = len(x)
    ids = np.empty((n, k), np.int32)
    sims = np.empty((n, k), np.float32)
    for start in range(0, n, chunk):
        part = x[start : start + chunk] @ x.T
        part[np.arange(len(part)), np.arange(start, start + len(part))] = -np.inf
        i, s = top_list(part, k)
        ids[start : start + chunk], sims[start : start + chunk] = i, s
    return ids, sims.astype(np.float16).astype(np.float32)  # as stored: float16


# --- diffusion -------------------------------------------------------------------------------------------

def diffuse(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, y: np.ndarray, iterations: int = 20) -> np.ndarray:
    """f solving (I - α S) f = y, S = D^-½ W D^-½ of the symmetric sparse W (edge list, both directions),
    by conjugate gradient."""
    n = len(y)
    degree = np.bincount(rows, weights=weights, minlength=n)
    dinv = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    weights = weights * dinv[rows] * dinv[cols]

    def apply(f: np.ndarray) -> np.ndarray:
        return f - ALPHA * np.bincount(rows, weights=weights * f[cols], minlength=n)

    f = np.zeros(n)
    r = y.astype(np.float64).copy()
    p = r.copy()
    rs = r @ r
    for _ in range(iterations):
        ap = apply(p)
        step = rs / (p @ ap)
        f += step * p
        r -= step * ap
        new = r @ r
        if new < 1e-20:
            break
        p = r + (new / rs) * p
        rs = new
    return f


def symmetric(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int, mutual: bool):
    """The kNN edges i→j (unique, weights symmetric in i, j) made symmetric: mutual (both i→j and j→i)
    or union."""
    key = rows.astype(np.int64) * n + cols
    back = cols.astype(np.int64) * n + rows
    if mutual:
        keep = np.isin(key, back, assume_unique=True)
        return rows[keep], cols[keep], weights[keep]
    add = ~np.isin(back, key, assume_unique=True)
    return (np.concatenate([rows, cols[add]]), np.concatenate([cols, rows[add]]),
            np.concatenate([weights, weights[add]]))


def query_vector(sims: np.ndarray, size: int, k_query: int, gamma: float = GAMMA) -> np.ndarray:
    y = np.zeros(size)
    y[:k_query] = np.maximum(sims[:k_query], 0.0) ** gamma
    return y


# --- levers: each takes (query vector, top ids, top scores) and returns the re-ordered top R ids ------

class Levers:
    def __init__(self, db: np.ndarray, graph: tuple[np.ndarray, np.ndarray] | None):
        self.db = db
        self.graph_ids, self.graph_sims = graph if graph else (None, None)
        if graph:  # the similarities as a graph could store them: 1 byte each
            self.graph_u8 = np.round(np.clip(self.graph_sims, 0.0, 1.0) * 255).astype(np.float32) / 255
        self.mark = np.zeros(len(db), np.float64)
        self.pos = np.full(len(db), -1, np.int64)

    def jaccard(self, k: int, lam: float, r: int):
        def run(q, ids, sims):
            cand = ids[:r]
            self.mark[ids[:k]] = 1.0
            sets = np.concatenate([cand[:, None], self.graph_ids[cand, : k - 1]], axis=1)
            inter = self.mark[sets].sum(axis=1)
            self.mark[ids[:k]] = 0.0
            score = (1 - lam) * sims[:r] + lam * inter / (2 * k - inter)
            return cand[np.argsort(-score, kind="stable")]
        return run

    def krecip(self, k: int, expand: int, lam: float, r: int):
        gi, gs = self.graph_ids, self.graph_sims

        def vectors(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """k-reciprocal sparse vectors of database items: ids ({c} + its k neighbours), weights."""
            nb, s = gi[items, :k], gs[items, :k]
            keep = s >= gs[nb, k - 1]  # c is among its neighbour's k nearest
            w = np.where(keep, np.maximum(s, 0.0) ** GAMMA, 0.0)
            return (np.concatenate([items[:, None], nb], axis=1),
                    np.concatenate([np.ones((len(items), 1)), w], axis=1))

        def run(q, ids, sims):
            cand = ids[:r]
            top = ids[:k]
            keep = sims[:k] >= gs[top, k - 1]  # q would be among its neighbour's k nearest
            vq = self.mark  # dense scratch, zeroed after
            np.add.at(vq, top, np.where(keep, np.maximum(sims[:k], 0.0) ** GAMMA, 0.0))
            touched = [top]
            if expand:
                e_ids, e_w = vectors(ids[:expand])
                np.add.at(vq, e_ids.ravel(), e_w.ravel())
                touched.append(e_ids.ravel())
                vq /= expand + 1  # the mean (only touched entries are non-zero)
            touched = np.unique(np.concatenate(touched))
            q_mass = vq[touched].sum()
            c_ids, c_w = vectors(cand)
            low = np.minimum(vq[c_ids], c_w).sum(axis=1)
            jac = low / (q_mass + c_w.sum(axis=1) - low)
            vq[touched] = 0.0
            score = (1 - lam) * sims[:r] + lam * jac
            return cand[np.argsort(-score, kind="stable")]
        return run

    def nbmean(self, k: int, beta: float, r: int):
        def run(q, ids, sims):
            cand = ids[:r]
            nb = self.graph_ids[cand, :k]
            s = (self.db[nb.ravel()] @ q).reshape(nb.shape)
            score = sims[:r] + beta * s.mean(axis=1)
            return cand[np.argsort(-score, kind="stable")]
        return run

    def diff_online(self, r: int, k: int, k_query: int = 10, mutual: bool = True):
        def run(q, ids, sims):
            cand = ids[:r]
            x = self.db[cand]
            g = x @ x.T
            np.fill_diagonal(g, -np.inf)
            nn = np.argpartition(-g, k, axis=1)[:, :k].ravel()
            rows = np.repeat(np.arange(len(cand)), k)
            w = np.maximum(g[rows, nn], 0.0).astype(np.float64) ** GAMMA
            f = diffuse(*symmetric(rows, nn, w, len(cand), mutual), query_vector(sims, len(cand), k_query))
            return cand[np.argsort(-f, kind="stable")]
        return run

    def diff_graph(self, r: int, k: int, k_query: int = 10, mutual: bool = True, gamma: float = GAMMA,
                   weights: str = "f16"):
        """weights: the stored float16 similarities, 'u8' one byte each, 'ones' unweighted (ids only)."""
        stored = self.graph_u8 if weights == "u8" else self.graph_sims

        def run(q, ids, sims):
            cand = ids[:r]
            n = len(cand)
            self.pos[cand] = np.arange(n)
            p = self.pos[self.graph_ids[cand, :k]]
            self.pos[cand] = -1
            keep = p >= 0
            rows = np.repeat(np.arange(n), k).reshape(n, k)[keep]
            if weights == "ones":
                w = np.ones(len(rows))
            else:
                w = np.maximum(stored[cand, :k][keep], 0.0).astype(np.float64) ** gamma
            f = diffuse(*symmetric(rows, p[keep], w, n, mutual), query_vector(sims, n, k_query, gamma))
            return cand[np.argsort(-f, kind="stable")]
        return run


def evaluate(name: str, lever, q: np.ndarray, ids: np.ndarray, sims: np.ndarray, q_labels: np.ndarray,
             db_labels: np.ndarray, k: int, *, extra: dict | None = None) -> dict:
    """Re-rank every query's list by `lever`, time each call, print mAP@k and the median ms."""
    orders = np.empty((len(q), k), np.int32)
    times = np.empty(len(q))
    for i in range(len(q)):
        started = time.perf_counter()
        head = lever(q[i], ids[i], sims[i])
        times[i] = time.perf_counter() - started
        merged = np.concatenate([head, ids[i, len(head) :]])[:k]
        orders[i] = merged
    figures = {"mAP": map_of(orders, q_labels, db_labels, k), "ms_p50": round(float(np.median(times)) * 1e3, 3),
               "ms_p90": round(float(np.quantile(times, 0.9)) * 1e3, 3)}
    figures.update(extra or {})
    say(name, figures)
    return figures


def graph_bytes(k: int, weighted: bool | str = True) -> int:
    """A stored kNN list: k uint32 ids, and k float16 (weighted) or uint8 ('u8') similarities."""
    return k * (4 + {True: 2, "f16": 2, "u8": 1, False: 0, "ones": 0}[weighted])


def run_levers(prefix: str, q: np.ndarray, db: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, k_map: int,
               graph: tuple[np.ndarray, np.ndarray], plan: dict, *, base: tuple[np.ndarray, np.ndarray] | None = None,
               graph_label: str = "") -> None:
    """Every lever of `plan` on the plain ranking and (plan['aqe']) after α-query expansion."""
    lengths = [r for _, _, r, *_ in plan["levers"]]
    length = max(max(lengths), k_map)
    ids, sims = base if base is not None else top_list(q @ db.T, length)
    say(f"{prefix}.base", {"mAP": map_of(ids, q_labels, db_labels, k_map)})
    levers = Levers(db, graph)
    rankings = [("", q, ids, sims)]
    if plan.get("aqe"):
        started = time.perf_counter()
        q2 = expanded(q, db, 10, 3.0)  # from the full scan's top 10 (the index's first answer)
        per_query_ms = (time.perf_counter() - started) / len(q) * 1e3  # includes that scan: an upper bound
        ids2, sims2 = top_list(q2 @ db.T, length)
        say(f"{prefix}.aqe", {"mAP": map_of(ids2, q_labels, db_labels, k_map),
                              "ms_expand_and_scan_mean_upper_bound": round(per_query_ms, 3),
                              "extra": "one more index search"})
        rankings.append(("aqe+", q2, ids2, sims2))
    for tag, qq, ii, ss in rankings:
        for kind, params, _r, nbytes, *rest in plan["levers"]:
            if tag and not plan["aqe"](kind, params):
                continue
            label = rest[0] if rest else ""
            lever = getattr(levers, kind)(**params)
            name = f"{prefix}.{tag}{kind}{graph_label if nbytes else ''}_" + "_".join(f"{a}{b}" for a, b in params.items())
            name = (name.replace("lam", "l").replace("beta", "b").replace("expand", "e").replace("k_query", "kq")
                    .replace("gamma", "g").replace("weights", "w"))
            evaluate(name, lever, qq, ii, ss, q_labels, db_labels, k_map,
                     extra={"bytes_per_image": nbytes, **({"note": label} if label else {})})


def float_plan(rs: tuple[int, ...], big: bool) -> dict:
    """The levers tried (kind, params, R, database bytes per image)."""
    r_max = rs[-1]
    levers = [
        ("jaccard", {"k": 10, "lam": 0.5, "r": r_max}, r_max, graph_bytes(10, False)),
        ("jaccard", {"k": 20, "lam": 0.5, "r": r_max}, r_max, graph_bytes(20, False)),
        ("jaccard", {"k": 20, "lam": 0.8, "r": r_max}, r_max, graph_bytes(20, False)),
        ("krecip", {"k": 20, "expand": 0, "lam": 0.7, "r": r_max}, r_max, graph_bytes(20)),
        ("krecip", {"k": 20, "expand": 5, "lam": 0.7, "r": r_max}, r_max, graph_bytes(20)),
        ("nbmean", {"k": 10, "beta": 1.0, "r": r_max}, r_max, graph_bytes(10, False)),
    ]
    for r in rs:
        levers.append(("diff_online", {"r": r, "k": 10}, r, 0))
        levers.append(("diff_graph", {"r": r, "k": 20}, r, graph_bytes(20)))
    levers += [
        ("diff_online", {"r": r_max, "k": 10, "mutual": False}, r_max, 0),
        ("diff_graph", {"r": r_max, "k": 10}, r_max, graph_bytes(10)),
        ("diff_graph", {"r": r_max, "k": 50}, r_max, graph_bytes(50)),
        ("diff_graph", {"r": r_max, "k": 20, "k_query": 20}, r_max, graph_bytes(20)),
        ("diff_graph", {"r": r_max, "k": 20, "gamma": 1.0}, r_max, graph_bytes(20)),
        ("diff_graph", {"r": r_max, "k": 20, "gamma": 5.0}, r_max, graph_bytes(20)),
        # within ~100 bytes an image: 1-byte similarities, or none
        ("diff_graph", {"r": r_max, "k": 20, "weights": "u8"}, r_max, graph_bytes(20, "u8")),
        ("diff_graph", {"r": r_max, "k": 16, "weights": "u8"}, r_max, graph_bytes(16, "u8")),
        ("diff_graph", {"r": r_max, "k": 25, "weights": "ones"}, r_max, graph_bytes(25, "ones")),
        ("diff_graph", {"r": r_max, "k": 50, "weights": "u8"}, r_max, graph_bytes(50, "u8")),
    ]
    if big:  # candidates from beyond the mAP cut-off (CIFAR: 2,000 for mAP@1000), stored graph only
        levers.append(("diff_graph", {"r": 2 * r_max, "k": 20}, 2 * r_max, graph_bytes(20)))
    def after_aqe(kind: str, params: dict) -> bool:  # the combinations measured after αQE as well
        return kind != "nbmean" and params not in (
            {"k": 10, "lam": 0.5, "r": r_max}, {"k": 20, "lam": 0.8, "r": r_max}, {"k": 20, "expand": 0, "lam": 0.7, "r": r_max},
            {"r": r_max, "k": 20, "k_query": 20}, {"r": r_max, "k": 20, "gamma": 1.0}, {"r": r_max, "k": 20, "gamma": 5.0},
            {"r": r_max, "k": 10, "mutual": False})

    return {"levers": levers, "aqe": after_aqe}


def code_plan(r: int) -> dict:
    return {"levers": [
        ("jaccard", {"k": 20, "lam": 0.5, "r": r}, r, graph_bytes(20, False)),
        ("krecip", {"k": 20, "expand": 5, "lam": 0.7, "r": r}, r, graph_bytes(20)),
        ("diff_online", {"r": r, "k": 10}, r, 0),
        ("diff_online", {"r": r, "k": 20}, r, 0),
        ("diff_graph", {"r": r, "k": 20}, r, graph_bytes(20)),
        ("diff_graph", {"r": 2 * r, "k": 20}, 2 * r, graph_bytes(20)),
    ], "aqe": None}


# --- data sets -------------------------------------------------------------------------------------------

def corel(args) -> None:
    vectors, _, labels, splits = load_corel(args.datasets, args.cache or args.out, args.model_dir or default_model_dir())
    vectors = unit(vectors)
    is_query = np.array([s == "query" for s in splits])
    q, db = vectors[is_query], vectors[~is_query]
    ql, dl = labels[is_query], labels[~is_query]
    say("corel.cosine_quality_levers_mean_ap", mean_ap(q @ db.T, ql, dl, 100))
    graph = knn_graph(db, 50)
    run_levers("corel", q, db, ql, dl, 100, graph, float_plan((100, 300, 900), big=False))


def cifar(args) -> None:
    from bench import cifar_raw  # the same split and cache as scripts/bench.py

    raw, db_rows, q_rows, _ = cifar_raw(args.datasets, None, args.cifar_out or args.cache or args.out)  # type: ignore[arg-type]
    raw = unit(raw)
    db_raw, q_raw = raw[: len(db_rows)], raw[len(db_rows) :]
    dl = np.array([r["label"] for r in db_rows])
    ql = np.array([r["label"] for r in q_rows])
    encoder = fit_itq(db_raw, bits=256, dims=256)
    fq, fdb = encoder.floats(q_raw), encoder.floats(db_raw)
    say("cifar.pca256.cosine_quality_levers_mean_ap", mean_ap(fq @ fdb.T, ql, dl, 1000))

    started = time.perf_counter()
    x = fdb[:1000] @ fdb.T
    top_list(x, 51)
    say("cifar.ingest_knn50_exact_ms_per_image", round((time.perf_counter() - started), 3))  # 1,000 images: s → ms
    started = time.perf_counter()
    graph = knn_graph(fdb, 50)
    say("cifar.graph_build_seconds_59k_exact", round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    for i in range(100):
        top_list((fq[i] @ fdb.T)[None, :], 1000)
    say("cifar.search_step_exact_ms", round((time.perf_counter() - started) / 100 * 1e3, 3))
    if not args.skip_floats:
        run_levers("cifar.pca256", fq, fdb, ql, dl, 1000, graph, float_plan((200, 500, 1000), big=True))

    # --- 64-bit ITQ codes ---------------------------------------------------------------------------------
    itq = fit_itq(db_raw, bits=64, dims=256)
    cq, cdb = itq.codes(q_raw), itq.codes(db_raw)
    say("cifar.itq64.hamming_quality_levers_mean_ap", mean_ap(hamming_scores(cq, cdb, 64), ql, dl, 1000))
    signs = lambda c: (np.unpackbits(c, axis=1).astype(np.float32) * 2 - 1) / 8.0  # noqa: E731  unit ±1: cos = 1 - 2h/64
    bq, bdb = signs(cq), signs(cdb)
    ids, sims = top_list(bq @ bdb.T, 2000)
    started = time.perf_counter()
    code_graph = knn_graph(bdb, 20)
    say("cifar.itq64.code_graph_build_seconds", round(time.perf_counter() - started, 1))
    run_levers("cifar.itq64", bq, bdb, ql, dl, 1000, code_graph, code_plan(1000), base=(ids, sims),
               graph_label="[codegraph]")
    # not codes-only: the float graph (built at ingest from the floats, stored as ids + f16 sims) over the
    # Hamming top R, and the hybrid (float cosine over the Hamming top R) with float levers after it
    levers = Levers(bdb, graph)
    for r in (1000, 2000):
        evaluate(f"cifar.itq64.diff_graph[floatgraph]_r{r}_k20", levers.diff_graph(r, 20), bq, ids, sims, ql, dl, 1000,
                 extra={"bytes_per_image": graph_bytes(20), "codes_only": False})
    hybrid_ids, hybrid_sims = [], []
    started = time.perf_counter()
    for i in range(len(fq)):
        s = fdb[ids[i]] @ fq[i]
        order = np.argsort(-s, kind="stable")
        hybrid_ids.append(ids[i][order])
        hybrid_sims.append(s[order])
    rerank_ms = (time.perf_counter() - started) / len(fq) * 1e3
    hybrid = (np.array(hybrid_ids), np.array(hybrid_sims))
    say("cifar.hybrid2000.base", {"mAP": map_of(hybrid[0], ql, dl, 1000), "ms_mean": round(rerank_ms, 3),
                                  "codes_only": False})
    levers = Levers(fdb, graph)
    for name, lever, nbytes in (("diff_online_r1000_k10", levers.diff_online(1000, 10), 0),
                                ("diff_graph_r1000_k20", levers.diff_graph(1000, 20), graph_bytes(20)),
                                ("diff_graph_r2000_k20", levers.diff_graph(2000, 20), graph_bytes(20))):
        evaluate(f"cifar.hybrid2000.{name}", lever, fq, *hybrid, ql, dl, 1000,
                 extra={"bytes_per_image": nbytes, "codes_only": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="where quality-rerank.json goes")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the folder with text/corel1k-*.npz (quality_levers.py's --out); default --out")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--cifar-out", type=Path, default=None, help="the folder with cifar-raw.npy; default --out")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--skip-corel", action="store_true")
    parser.add_argument("--skip-floats", action="store_true", help="CIFAR: codes only")
    args = parser.parse_args()
    say("command", " ".join(sys.argv))
    started = time.perf_counter()
    if not args.skip_corel:
        corel(args)
    if not args.skip_cifar:
        cifar(args)
    say("seconds", round(time.perf_counter() - started, 1))
    save_results(args.out, "quality-rerank.json")


if __name__ == "__main__":
    main()
