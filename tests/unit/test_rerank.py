"""Diffusion over a query's own candidates (imgsearch/rerank.py)."""

from __future__ import annotations

import numpy as np

from imgsearch import rerank

DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def chain_and_blob(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """40 points along an arc that leaves the query's direction (cosine 1 down to 0.27), and 30 in a
    tight blob off the arc at cosine 0.53: (candidates, their cosine to the query)."""
    rng = np.random.default_rng(seed)
    e = np.eye(DIM)
    angles = np.linspace(0, 1.3, 40)
    chain = np.cos(angles)[:, None] * e[0] + np.sin(angles)[:, None] * e[1] + 0.01 * rng.standard_normal((40, DIM))
    blob = 0.55 * e[0] + 0.835 * e[2] + 0.08 * rng.standard_normal((30, DIM))
    x = unit(np.vstack([chain, blob]))
    return x, x @ e[0].astype(np.float32)


def test_diffusion_ranks_the_candidates_along_the_querys_manifold_above_closer_ones_off_it() -> None:
    x, cosine = chain_and_blob()
    order = np.argsort(-cosine, kind="stable")
    final = order[np.argsort(-rerank.diffused(x[order], cosine[order]), kind="stable")]
    assert (order[:40] < 40).mean() <= 0.8  # by cosine, the blob takes a quarter of the first 40
    assert (final[:40] < 40).mean() >= 0.9  # diffused (at the default weight), the arc takes nine in ten


def test_diffused_scores_are_the_cosine_plus_the_normalised_solution_of_the_diffusion_system() -> None:
    x, cosine = chain_and_blob(seed=1)
    order = np.argsort(-cosine, kind="stable")
    x, scores = x[order], cosine[order]
    n, k = len(x), rerank.NEIGHBOURS
    similarity = (x @ x.T).astype(np.float64)
    np.fill_diagonal(similarity, -np.inf)
    near = np.zeros((n, n), bool)
    near[np.repeat(np.arange(n), k), np.argsort(-similarity, axis=1)[:, :k].ravel()] = True
    w = np.where(near & near.T, np.maximum(similarity, 0) ** rerank.GAMMA, 0.0)
    d = 1 / np.sqrt(np.maximum(w.sum(axis=1), 1e-12))  # a candidate without mutual edges: no mass flows
    y = np.zeros(n)
    y[: rerank.SEEDS] = scores[: rerank.SEEDS].astype(np.float64) ** rerank.GAMMA
    f = np.linalg.solve(np.eye(n) - rerank.ALPHA * d[:, None] * w * d[None, :], y)
    assert np.allclose(rerank.diffused(x, scores), scores + rerank.WEIGHT * f / f.max(), atol=2e-3)


def test_too_few_candidates_keep_their_scores() -> None:
    x, cosine = chain_and_blob()
    few = rerank.MIN_CANDIDATES - 1
    assert np.array_equal(rerank.diffused(x[:few], cosine[:few]), cosine[:few])
