"""Near-duplicate images across splits, from their feature vectors (numpy only).

A resized or re-encoded copy of a training photo in test has a different content digest but
almost the same features: cosine similarity of at least `NEAR_DUPLICATE_COSINE` between two
images' vectors is taken to mean the same picture.
"""

from __future__ import annotations

import numpy as np

NEAR_DUPLICATE_COSINE = 0.98
BLOCK_ROWS = 256  # test rows compared at once: memory is BLOCK_ROWS x train images floats
# Each pair is first bounded from its vectors' parts in a BASIS_SIZE-dimensional subspace, so
# the full dot product is computed only for pairs that may reach the threshold. On the demo's
# EfficientNet-Lite0 features a 32-dimensional basis already left no pair but an image with
# itself; 64 keeps a margin, at 1/20 of the 1280-dimensional products' cost.
BASIS_SIZE = 64
BASIS_SAMPLE = 2048  # training rows the basis is drawn from (any orthonormal basis is exact)
POWER_STEPS = 2
DENSE_SHARE = 0.05  # a block with more candidate pairs than this is compared in full
ROUNDING = 1e-4  # float32 slack on the bound: never drop a pair the full product would keep


def near_duplicates(
    test: np.ndarray, train: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE
) -> list[tuple[int, int, float]]:
    """(test row, train row, cosine) of each test vector's most similar train vector, where
    that cosine is at least `threshold`; most similar first.

    Exact, not approximate: with an orthonormal basis V, a unit vector a = Va' + r_a and
    cos(a, b) = a'.b' + r_a.r_b <= a'.b' + |r_a| |r_b|, so a pair whose bound is under the
    threshold cannot reach it and is never multiplied out in full.
    """
    if not len(test) or not len(train):
        return []
    train_unit = _unit(train)
    basis = _basis(train_unit)
    train_low, train_rest = _split(train_unit, basis)
    pairs = []
    for start in range(0, len(test), BLOCK_ROWS):
        block = _unit(test[start : start + BLOCK_ROWS])
        low, rest = _split(block, basis)
        bound = low @ train_low.T + rest[:, None] * train_rest[None, :]
        maybe = bound >= threshold - ROUNDING
        for row, (column, score) in _best_matches(block, train_unit, maybe).items():
            if score >= threshold:
                pairs.append((start + row, column, score))
    return sorted(pairs, key=lambda pair: -pair[2])


def _best_matches(
    block: np.ndarray, train_unit: np.ndarray, maybe: np.ndarray
) -> dict[int, tuple[int, float]]:
    """Each block row's most similar train row among its candidates (`maybe`), with the cosine."""
    rows = np.flatnonzero(maybe.any(axis=1))
    if maybe.sum() > DENSE_SHARE * maybe.size:  # many look-alikes: one product is faster
        similarity = block[rows] @ train_unit.T
        best = similarity.argmax(axis=1)
        return {
            int(row): (int(column), float(similarity[i, column]))
            for i, (row, column) in enumerate(zip(rows, best))
        }
    found = {}
    for row in rows:
        columns = np.flatnonzero(maybe[row])
        scores = train_unit[columns] @ block[row]
        best = int(scores.argmax())
        found[int(row)] = (int(columns[best]), float(scores[best]))
    return found


def _basis(train_unit: np.ndarray) -> np.ndarray:
    """Up to BASIS_SIZE orthonormal directions (rows) that carry most of the training vectors:
    two steps of subspace iteration on evenly spaced rows (deterministic). Matrix products and
    Gram-Schmidt only: LAPACK's SVD and QR took seconds to a minute on the shared 2-core host."""
    step = max(1, len(train_unit) // BASIS_SAMPLE)
    sample = train_unit[::step][:BASIS_SAMPLE]
    size = min(BASIS_SIZE, *sample.shape)
    directions = sample[np.linspace(0, len(sample) - 1, size).astype(int)].T
    for _ in range(POWER_STEPS):
        directions = _orthonormal(sample.T @ (sample @ _orthonormal(directions)))
    return directions.T.astype(np.float32)


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    """Gram-Schmidt, twice over (float64); a column that adds no direction becomes zero."""
    basis = columns.astype(np.float64)
    for j in range(basis.shape[1]):
        for _ in range(2):
            basis[:, j] -= basis[:, :j] @ (basis[:, :j].T @ basis[:, j])
        norm = np.linalg.norm(basis[:, j])
        basis[:, j] = basis[:, j] / norm if norm > 1e-6 else 0.0
    return basis


def _split(unit: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors' coordinates in the basis, and the length of what lies outside it."""
    low = unit @ basis.T
    rest = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", low, low)))
    return low, rest


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
