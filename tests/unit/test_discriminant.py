"""The discriminant projection (k-means pseudo-classes, then LDA) and the encoder fitted with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsearch import discriminant
from imgsearch.encode import Encoder, fit_itq
from imgsearch.errors import BadParameter
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, classes: int, *, nuisance: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of `classes` clusters that differ in 8 dimensions, with a wider spread than theirs in 2
    others that tell nothing apart (what PCA keeps first), and small noise everywhere."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = np.zeros((classes, DIM))
    centres[:, :8] = rng.standard_normal((classes, 8))
    x = centres[labels] + 0.05 * rng.standard_normal((n, DIM))
    x[:, 8:10] += nuisance * rng.standard_normal((n, 2))
    return unit(x + 4.0 * np.eye(DIM)[60]), labels  # an offset: the embeddings' mean is not zero


def precision_at(floats: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    sims = floats @ floats.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def test_spherical_kmeans_finds_well_separated_clusters() -> None:
    rng = np.random.default_rng(1)
    centres = unit(rng.standard_normal((4, DIM)))
    truth = rng.integers(0, 4, 800)
    found = discriminant.spherical_kmeans(unit(centres[truth] + 0.05 * rng.standard_normal((800, DIM))), 4)
    for c in range(4):  # each true cluster is one found cluster, and no two share one
        assert len(set(found[truth == c])) == 1
    assert len(set(found)) == 4


def test_lda_picks_the_direction_that_separates_classes_not_the_one_that_varies_most() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 2000)
    x = np.zeros((2000, 3))
    x[:, 0] = 2.0 * labels + 0.3 * rng.standard_normal(2000)  # separates
    x[:, 1] = 10.0 * rng.standard_normal(2000)  # varies most, separates nothing
    x[:, 2] = rng.standard_normal(2000)
    direction = discriminant.lda(x, labels, 1)[:, 0]
    assert abs(direction[0]) / np.linalg.norm(direction) > 0.99


def test_discriminant_floats_rank_same_cluster_images_above_plain_pca() -> None:
    x, labels = clustered(3000, 10)
    pca = fit_itq(x, bits=8, dims=2)  # the two widest directions: the nuisance
    lda = fit_itq(x, bits=8, dims=2, clusters=20)
    assert lda.floats(x).shape[1] == 2
    assert precision_at(lda.floats(x), labels) > precision_at(pca.floats(x), labels) + 0.2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustering_again_in_the_discriminant_space_finds_the_classes_the_first_clustering_split(seed: int) -> None:
    # 20 clusters of 10 classes on PCA floats that the nuisance dominates: the first k-means cuts along
    # the nuisance too; in the discriminant space it is gone, and the rounds after cluster by class
    x, labels = clustered(3000, 10, seed=seed)
    centred = x - x.mean(axis=0)
    once = discriminant.projection(centred, clusters=20, dims=8, refinements=0)
    refined = discriminant.projection(centred, clusters=20, dims=8)
    assert discriminant.REFINEMENTS > 0
    assert precision_at(centred @ refined, labels) > precision_at(centred @ once, labels) + 0.2


def test_the_discriminant_floats_have_at_most_clusters_minus_one_dimensions_and_short_codes_live_in_them() -> None:
    x, _ = clustered(3000, 10)
    encoder = fit_itq(x, bits=8, dims=32, clusters=10)
    assert encoder.projection is not None and encoder.projection.shape == (DIM, 9)
    assert encoder.version.startswith("itq-8b-9d-")
    # an 8-bit code is ITQ within the floats: its hyperplanes lie in the projection's column space
    coefficients, *_ = np.linalg.lstsq(encoder.projection, encoder.hashing, rcond=None)
    assert np.allclose(encoder.projection @ coefficients, encoder.hashing, atol=1e-4)
    longer = fit_itq(x, bits=16, dims=32, clusters=10)  # more bits than float dimensions: ITQ on PCA
    coefficients, *_ = np.linalg.lstsq(longer.projection, longer.hashing, rcond=None)
    assert longer.hashing.shape == (DIM, 16)
    assert not np.allclose(longer.projection @ coefficients, longer.hashing, atol=1e-2)


def test_a_discriminant_encoder_survives_its_bytes_and_differs_from_plain_pca() -> None:
    x, _ = clustered(2000, 10)
    encoder = fit_itq(x, bits=8, dims=16, clusters=10)
    again = Encoder.from_bytes(encoder.to_bytes())
    assert again.version == encoder.version != fit_itq(x, bits=8, dims=16).version
    assert np.array_equal(again.floats(x[:50]), encoder.floats(x[:50]))
    assert np.array_equal(again.codes(x[:50]), encoder.codes(x[:50]))


def test_embedding_of_maps_discriminant_floats_back_to_embeddings_with_the_same_floats_and_codes() -> None:
    x, _ = clustered(2000, 10)
    encoder = fit_itq(x, bits=8, dims=16, clusters=10)
    floats = encoder.floats(x[:200])
    back = encoder.embedding_of(floats)
    assert np.min(np.sum(encoder.floats(back) * floats, axis=1)) > 0.999
    assert np.mean(encoder.codes(back) == encoder.codes(x[:200])) > 0.95
    pca = fit_itq(x, bits=8, dims=16)
    assert pca.back is not None and np.array_equal(pca.back, pca.projection.T)  # PCA: the transpose, as before


@pytest.mark.parametrize(
    ("clusters", "whiten", "n", "message"),
    [(1, 0.0, 2000, "at least 2"), (10, 0.5, 2000, "without whitening"), (50, 0.0, 2000, "needs at least 2500 images")],
)
def test_a_discriminant_fit_refuses_what_it_cannot_do(clusters: int, whiten: float, n: int, message: str) -> None:
    x, _ = clustered(n, 10)
    with pytest.raises(BadParameter, match=message):
        fit_itq(x, bits=8, dims=16, clusters=clusters, whiten=whiten)


def test_an_index_fitted_with_clusters_finds_each_image_first(tmp_path: Path, spec: ModelSpec) -> None:
    x = unit(np.random.default_rng(5).standard_normal((1200, DIM)))
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    index.append([ObjectRef(bucket="b", key=f"{i:04d}", sequencer="1") for i in range(len(x))], x)
    encoder, result = index.fit(bits=8, dims=16, clusters=12, min_count=1000)
    assert encoder.projection is not None and encoder.projection.shape[1] == 11 and result.entries == 1200
    searcher = Searcher(index)
    for metric in ("cosine", "hybrid"):
        hits = searcher.search(x[:20], k=3, metric=metric)
        assert [h[0].key for h in hits] == [f"{i:04d}" for i in range(20)]


@pytest.mark.parametrize(("images", "clusters"), [(1000, 0), (2499, 0), (2500, 50), (4999, 99), (5000, 100), (10**7, 100)])
def test_the_policy_fits_100_clusters_or_as_many_as_50_a_cluster_allow_down_to_50(images: int, clusters: int) -> None:
    from imgsearch.maintain import fit_clusters

    assert fit_clusters(images) == clusters


@pytest.mark.parametrize(("images", "float_dims"), [(1200, 16), (3000, 16)])
def test_an_index_fitted_by_default_takes_the_policys_clusters_for_its_size(
    tmp_path: Path, spec: ModelSpec, images: int, float_dims: int
) -> None:
    x = unit(np.random.default_rng(7).standard_normal((images, DIM)))
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    index.append([ObjectRef(bucket="b", key=f"{i:05d}", sequencer="1") for i in range(images)], x)
    encoder, _ = index.fit(bits=8, dims=16, min_count=1000)
    assert encoder.projection is not None and encoder.projection.shape[1] == float_dims
    # 1,200 images: plain PCA (orthonormal columns); 3,000: 60 clusters, the 16 leading of their 59 directions
    orthonormal = np.allclose(encoder.projection.T @ encoder.projection, np.eye(float_dims), atol=1e-4)
    assert orthonormal == (images < 2500)
