"""Near-duplicate images across splits, from their feature vectors (numpy only).

A resized or re-encoded copy of a training photo in test has a different content digest but
almost the same features: cosine similarity of at least `NEAR_DUPLICATE_COSINE` between two
images' vectors is taken to mean the same picture.
"""

from __future__ import annotations

import numpy as np

NEAR_DUPLICATE_COSINE = 0.98
BLOCK_ROWS = 256  # test rows compared at once: memory is BLOCK_ROWS x train images floats


def near_duplicates(
    test: np.ndarray, train: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE
) -> list[tuple[int, int, float]]:
    """(test row, train row, cosine) of each test vector's most similar train vector, where
    that cosine is at least `threshold`; most similar first."""
    if not len(test) or not len(train):
        return []
    train_unit = _unit(train)
    pairs = []
    for start in range(0, len(test), BLOCK_ROWS):
        similarity = _unit(test[start : start + BLOCK_ROWS]) @ train_unit.T
        best = similarity.argmax(axis=1)
        scores = similarity[np.arange(len(best)), best]
        for offset in np.flatnonzero(scores >= threshold):
            pairs.append((start + int(offset), int(best[offset]), float(scores[offset])))
    return sorted(pairs, key=lambda pair: -pair[2])


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
