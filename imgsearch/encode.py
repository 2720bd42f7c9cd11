"""Feature encoding: embeddings → PCA float vectors for cosine and packed binary codes for Hamming.

Two kinds of encoder, both versioned and stored with the index:
- `lsh`: a fixed random projection; needs no data, used until the index is large enough to fit.
- `itq`: PCA (optionally whitened) for the floats, PCA + a learned ITQ rotation for the codes,
  fitted on the indexed embeddings themselves. With `clusters`, the floats are a discriminant
  projection learned on k-means pseudo-classes instead (discriminant.py), and codes no longer than the
  floats are ITQ within it.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import discriminant
from .errors import BadParameter

KINDS = ("lsh", "itq")
DEFAULT_BITS = 256
DEFAULT_DIMS = 256
DEFAULT_WHITEN = 0.0
DEFAULT_CLUSTERS = 0  # pseudo-classes of a discriminant projection (discriminant.py); 0: plain PCA floats
DISCRIMINANT_BASIS = 256  # the PCA dimensions the discriminant projection is learned in
MIN_PER_CLUSTER = 50  # a discriminant fit needs at least this many embeddings per cluster
MIN_FIT = 1000


@dataclass(frozen=True, eq=False)
class Encoder:
    """A frozen, serialisable encoder; `version` names it everywhere (manifest, segments)."""

    version: str
    kind: str
    bits: int
    dim_in: int
    mean: np.ndarray  # (dim_in,) subtracted before both projections
    projection: np.ndarray | None  # (dim_in, dims) for floats; None keeps the embedding itself
    hashing: np.ndarray  # (dim_in, bits): sign of (x - mean) @ hashing gives the code bits

    def floats(self, embeddings: np.ndarray) -> np.ndarray:
        """L2-normalised float32 vectors for cosine similarity."""
        x = np.asarray(embeddings, dtype=np.float32)
        if self.projection is not None:
            x = (x - self.mean) @ self.projection
        return _normalise(x)

    def codes(self, embeddings: np.ndarray) -> np.ndarray:
        """Packed binary codes (uint8, bits/8 bytes per row) for USearch `b1` / Hamming."""
        x = np.asarray(embeddings, dtype=np.float32) - self.mean
        return np.packbits((x @ self.hashing) > 0, axis=1)

    def direction(self, directions: np.ndarray) -> np.ndarray:
        """Unit float vectors of directions in the embedding space (a text query's): projected without
        subtracting the mean, since a direction is not a point."""
        x = np.asarray(directions, dtype=np.float32)
        return _normalise(x if self.projection is None else x @ self.projection)

    @functools.cached_property
    def back(self) -> np.ndarray | None:
        """(dims, dim_in): float vectors back to directions in the embedding space: the projection's
        transpose when its columns are orthonormal (PCA), else its pseudo-inverse scaled so that a unit
        vector maps to one of about unit length (a whitened or discriminant projection)."""
        if self.projection is None:
            return None
        p = self.projection.astype(np.float64)
        if np.allclose(p.T @ p, np.eye(p.shape[1]), atol=1e-4):
            return self.projection.T
        inverse = np.linalg.pinv(p)
        return (inverse * (np.sqrt(p.shape[1]) / np.linalg.norm(inverse))).astype(np.float32)

    def embedding_of(self, floats: np.ndarray) -> np.ndarray:
        """Embeddings whose float vectors are (about) these: mean + r·(floats @ back), r = √(1 − |mean|²)
        (exact for the codes' signs, which r does not change); the floats themselves without a projection."""
        y = np.asarray(floats, dtype=np.float32)
        if self.back is None:
            return y
        return (self.mean + spread(self.mean) * (y @ self.back)).astype(np.float32)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {"mean": self.mean, "hashing": self.hashing}
        if self.projection is not None:
            arrays["projection"] = self.projection
        meta = np.frombuffer(f"{self.version}|{self.kind}|{self.bits}|{self.dim_in}".encode(), dtype=np.uint8)
        np.savez(buffer, meta=meta, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Encoder:
        with np.load(io.BytesIO(data)) as npz:
            version, kind, bits, dim_in = bytes(npz["meta"]).decode().split("|")
            projection = npz["projection"] if "projection" in npz.files else None
            return cls(
                version=version,
                kind=kind,
                bits=int(bits),
                dim_in=int(dim_in),
                mean=npz["mean"],
                projection=projection,
                hashing=npz["hashing"],
            )


_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between packed codes (the last axis; rows broadcast)."""
    return _POPCOUNT[np.bitwise_xor(a, b)].sum(axis=-1)


def spread(mean: np.ndarray) -> float:
    """|v − mean| for a unit vector v around that mean, on average: √(1 − |mean|²) (what a unit float
    vector of the encoder is scaled by to map back into the embedding space)."""
    m = np.asarray(mean, dtype=np.float32)
    return float(np.sqrt(max(1.0 - float(m @ m), 1e-6)))


def radius_bits(radius: float, bits: int) -> int:
    """A Hamming radius given as a share of the code's bits (below 1) or as a number of bits (1 or more)."""
    return int(radius) if radius >= 1 else round(radius * bits)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _check_bits(bits: int) -> None:
    if bits < 8 or bits % 8 or bits > 4096:
        raise BadParameter(f"code length must be a multiple of 8 between 8 and 4096 bits, not {bits}")


def _version(kind: str, bits: int, dims: int, *arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return f"{kind}-{bits}b-{dims}d-{digest.hexdigest()[:8]}"


def lsh(*, dim_in: int, bits: int = DEFAULT_BITS, seed: int = 0) -> Encoder:
    """Random-hyperplane hashing; floats are the embeddings themselves."""
    _check_bits(bits)
    hashing = np.random.default_rng(seed).standard_normal((dim_in, bits)).astype(np.float32)
    mean = np.zeros(dim_in, dtype=np.float32)
    return Encoder(
        version=_version("lsh", bits, dim_in, hashing),
        kind="lsh",
        bits=bits,
        dim_in=dim_in,
        mean=mean,
        projection=None,
        hashing=hashing,
    )


def fit_itq(
    embeddings: np.ndarray,
    *,
    bits: int = DEFAULT_BITS,
    dims: int = DEFAULT_DIMS,
    whiten: float = DEFAULT_WHITEN,
    clusters: int = DEFAULT_CLUSTERS,
    iterations: int = 50,
    seed: int = 0,
    max_samples: int = 100_000,
) -> Encoder:
    """Fit PCA(-whitening) floats and ITQ codes on embeddings (n × dim_in, n ≥ max(bits, dims)).

    `whiten` is the power of the eigenvalues divided out: 0 plain PCA, 1 full whitening. `clusters`
    (2 or more) makes the floats the leading min(dims, clusters − 1) discriminant directions of that
    many k-means pseudo-classes (discriminant.py); codes of at most that many bits are then ITQ on
    those floats, longer ones stay ITQ on PCA.
    """
    _check_bits(bits)
    x = np.asarray(embeddings, dtype=np.float32)
    n, dim_in = x.shape
    if bits > dim_in or dims > dim_in:
        raise BadParameter(f"bits ({bits}) and dims ({dims}) cannot exceed the embedding size {dim_in}")
    if n < max(bits, dims, 2):
        raise BadParameter(
            f"fitting {bits}-bit codes and {dims} float dimensions needs at least {max(bits, dims)} "
            f"images, the index has {n}: index more images first, or keep the LSH encoder"
        )
    if clusters and (clusters < 2 or whiten):
        raise BadParameter(f"clusters must be 0 (plain PCA) or at least 2, without whitening (got {clusters}, whiten {whiten})")
    if clusters and n < clusters * MIN_PER_CLUSTER:
        raise BadParameter(
            f"a discriminant projection on {clusters} clusters needs at least {clusters * MIN_PER_CLUSTER} "
            f"images ({MIN_PER_CLUSTER} a cluster), the index has {n}: use fewer clusters, or 0 for plain PCA"
        )
    rng = np.random.default_rng(seed)
    if n > max_samples:
        x = x[rng.choice(n, max_samples, replace=False)]
    mean = x.mean(axis=0)
    centred = (x - mean).astype(np.float64)
    covariance = centred.T @ centred / max(len(x) - 1, 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 0.0), eigenvectors[:, order]

    if clusters:
        basis = eigenvectors[:, : min(DISCRIMINANT_BASIS, dim_in)]
        projection = (basis @ discriminant.projection(centred @ basis, clusters=clusters, dims=dims, seed=seed)).astype(np.float32)
    else:
        scale = (eigenvalues[:dims] + 1e-6 * eigenvalues[0]) ** (-whiten / 2) if whiten else np.ones(dims)
        projection = (eigenvectors[:, :dims] * scale).astype(np.float32)

    if clusters and bits <= projection.shape[1]:
        # codes within the discriminant floats: ITQ on their unit rows (a code's sign ignores the scale)
        floats = centred @ projection
        floats /= np.maximum(np.linalg.norm(floats, axis=1, keepdims=True), 1e-12)
        values, vectors = np.linalg.eigh(floats.T @ floats)
        leading = vectors[:, np.argsort(values)[::-1][:bits]]
        pca, v = projection.astype(np.float64) @ leading, floats @ leading
    else:
        pca = eigenvectors[:, :bits]
        v = centred @ pca
    hashing = (pca @ _itq_rotation(v, iterations, rng)).astype(np.float32)
    mean = mean.astype(np.float32)
    dims = projection.shape[1]
    return Encoder(
        version=_version("itq", bits, dims, mean, projection, hashing),
        kind="itq",
        bits=bits,
        dim_in=dim_in,
        mean=mean,
        projection=projection,
        hashing=hashing,
    )


def _itq_rotation(v: np.ndarray, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """ITQ (Gong & Lazebnik): the orthogonal rotation of v's rows that brings them nearest to ±1 vertices."""
    bits = v.shape[1]
    rotation = np.linalg.qr(rng.standard_normal((bits, bits)))[0]
    for _ in range(iterations):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)
        ub, _, uat = np.linalg.svd(b.T @ v)
        rotation = uat.T @ ub.T
    return rotation
