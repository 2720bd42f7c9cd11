"""Re-ranking an image query's first hits: their moved-query scores, then diffusion over the candidates
(numpy only; the Searcher gathers the hits and moves the query: search.Searcher._reranked).

After α-query expansion has ordered the first candidates by the moved query, the candidates' own
neighbour graph says which of them lie on the same manifold as the query's best hits: each candidate's
NEIGHBOURS nearest among the candidates (kept where the relation is mutual, weighted by similarity to
the power GAMMA) form W, and f solves (I − α S) f = y with S = D^-½ W D^-½ and y the query's first
SEEDS similarities to the power GAMMA (Iscen et al. 2017, on the candidates alone: nothing is stored
beside the index). A candidate's final score is its moved-query cosine + WEIGHT × f / max f.

After three rounds of expansion, on Corel-1k (900 images, k = 100) this takes mAP@100 from 0.9436 to
0.9603, on CIFAR-10 (59,000, 100-cluster floats, k = 1,000) from 0.6493 to 0.6504; a weight of 1 gave
0.9625 and 0.6486, 0.25 gave 0.9572 and 0.6509 (docs/BENCHMARKS.md "Re-ranking"). Its cost grows with
the square of the candidates: about 0.25 ms for the 100 of a k = 10 query, 15–30 ms for 1,000.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .encode import hamming

EXPAND_ALPHA = 3.0  # α-query expansion: a hit's weight is its score to this power (docs/BENCHMARKS.md)
RERANK_WIDTH = 10  # … which re-orders this many hits for each one asked for (up to MAX_K)
EXPAND_ROUNDS = 3  # … moving the query again from the order the last move gave, this many times
NEIGHBOURS = 10  # diffusion: each candidate's nearest candidates that make its edges
ALPHA = 0.99  # how far the query's mass spreads along the graph (1: only the graph; 0: only y)
GAMMA = 3  # similarities to this (whole) power: edges and the query's seeds
SEEDS = 10  # the first candidates the query's mass starts on
WEIGHT = 0.5  # the diffusion's share beside the cosine (0.25 / 0.5 / 0.75 / 1: docs/BENCHMARKS.md)
STEPS = 20  # conjugate-gradient steps (S is symmetric and I − αS positive definite) …
DIRECT = 256  # … for more candidates than this; fewer are solved directly (faster there, and exact)
MIN_CANDIDATES = NEIGHBOURS + 2  # fewer candidates than this: no graph worth diffusing over


def expanded_order(
    query: np.ndarray, vectors: np.ndarray, scores: np.ndarray, expand: int
) -> tuple[np.ndarray, np.ndarray]:
    """α-query expansion within the candidates (unit rows of `vectors`, ranked by `scores`, best first):
    EXPAND_ROUNDS times, the query moves to unit(q + Σ max(s, 0)^α y) over the first `expand` of the order
    so far (s their scores in it) and the candidates are ordered by their cosine to it. (order, the
    candidates' cosine to the last moved query)."""
    order, again = np.arange(len(scores)), np.asarray(scores, dtype=np.float32)
    for _ in range(EXPAND_ROUNDS):
        top = order[:expand]
        moved = query + (np.maximum(again[top], 0.0) ** EXPAND_ALPHA) @ vectors[top]
        moved /= max(float(np.linalg.norm(moved)), 1e-12)
        again = vectors @ moved.astype(np.float32)
        order = np.argsort(-again, kind="stable")
    return order, again


def diffused(vectors: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Final scores of candidates (unit rows of `vectors`, ranked by `scores`, the moved query's cosine,
    best first): scores + WEIGHT × the normalised diffusion. Candidates too few to form a graph keep
    their scores."""
    n = len(scores)
    if n < MIN_CANDIDATES:
        return scores
    x = np.asarray(vectors, dtype=np.float32)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    kth = np.partition(similarity, n - NEIGHBOURS, axis=1)[:, n - NEIGHBOURS]  # each row's NEIGHBOURS-th best
    near = similarity >= kth[:, None]
    edges = np.where(near & near.T, _powered(np.maximum(similarity, 0.0)), 0.0)  # mutual, symmetric
    scale = 1.0 / np.sqrt(np.maximum(edges.sum(axis=1), 1e-12))
    system = -ALPHA * (scale[:, None] * edges * scale[None, :]).astype(np.float64)
    system.flat[:: n + 1] += 1.0  # I − α S
    y = np.zeros(n)
    y[:SEEDS] = _powered(np.maximum(np.asarray(scores[:SEEDS], dtype=np.float64), 0.0))
    f = np.linalg.solve(system, y) if n <= DIRECT else _conjugate_gradient(system, y)
    top = float(f.max())
    return scores + WEIGHT * (f / top if top > 0 else f)


def _powered(x: np.ndarray) -> np.ndarray:
    """x ** GAMMA by multiplying (several times faster than a float power on these small matrices)."""
    out = x
    for _ in range(GAMMA - 1):
        out = out * x
    return out


def _conjugate_gradient(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    f = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs = float(r @ r)
    for _ in range(STEPS):
        if rs < 1e-20:
            break
        ap = a @ p
        step = rs / float(p @ ap)
        f += step * p
        r -= step * ap
        new = float(r @ r)
        p = r + (new / rs) * p
        rs = new
    return f


@dataclass(frozen=True)
class Group:
    """Some of one query's hits that lie in one segment: its encoder, where they are in the hit list, and
    their stored codes (hamming) or float vectors."""

    encoder: str
    at: np.ndarray
    stored: np.ndarray


def moved_scores(
    groups: list[Group], moved: Callable[[str], tuple[np.ndarray, np.ndarray]], q: int, metric: str, n: int
) -> np.ndarray:
    """Query q's moved scores for its n hits: code similarity (hamming) or the floats' cosine."""
    again = np.empty(n, np.float32)
    for g in groups:
        floats, codes = moved(g.encoder)
        if metric == "hamming":
            again[g.at] = 1.0 - hamming(g.stored, codes[q]) / (g.stored.shape[1] * 8)
        else:
            again[g.at] = g.stored @ floats[q]
    return again
