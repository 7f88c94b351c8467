"""The paired bootstrap: for metrics with no exact paired test, such as balanced accuracy.

NumPy lives here, not in statistics.py, which `zoo list` and the tables import.
"""

from __future__ import annotations

import numpy as np


def balanced_accuracy(correct: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-class recall, over the classes present in `labels`."""
    hits = np.bincount(labels, weights=correct.astype(float))
    totals = np.bincount(labels)
    present = totals > 0
    return float((hits[present] / totals[present]).mean())


def paired_bootstrap_p(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, resamples: int = 2000, seed: int = 0
) -> float:
    """Two-sided p-value that two runs' balanced accuracies differ, by a paired bootstrap.

    `first` and `second` say which test images each run got right. The same resampled images
    score both runs, so the shared noise cancels as in McNemar's test; p is twice the smaller
    share of resampled differences on either side of zero (with the usual +1 correction).
    """
    rng = np.random.default_rng(seed)
    gap = first.astype(float) - second.astype(float)
    count, classes = len(labels), int(labels.max()) + 1
    below = above = 0
    for _ in range(resamples):
        chosen = rng.integers(0, count, count)
        drawn = labels[chosen]
        totals = np.bincount(drawn, minlength=classes)
        present = totals > 0
        per_class = np.bincount(drawn, weights=gap[chosen], minlength=classes)[present]
        difference = (per_class / totals[present]).mean()
        below += difference <= 0
        above += difference >= 0
    return min(1.0, 2 * (min(below, above) + 1) / (resamples + 1))
