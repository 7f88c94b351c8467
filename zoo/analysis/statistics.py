"""The statistics of a comparison on one test set: intervals, paired tests, multiple testing.

Exact and small on purpose: the tests check each formula against scipy's, which zoo does not
need at run time.
"""

from __future__ import annotations

from statistics import NormalDist


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: right near 0 and 1, where the normal one is not."""
    if trials <= 0:
        raise ValueError("an interval needs at least one trial")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = successes / trials
    spread = z * (share * (1 - share) / trials + z * z / (4 * trials * trials)) ** 0.5
    centre = share + z * z / (2 * trials)
    scale = 1 + z * z / trials
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of b discordant pairs against b + c at 1/2.

    b: images only the first model got right; c: only the second. The tail is summed in exact
    integers, so p stays exact for any test-set size (it underflows to 0.0 below about 1e-308).
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    pairs = b + c
    if pairs == 0 or b == c:
        return 1.0
    return min(1.0, 2 * _lower_tail(pairs, min(b, c)) / 2**pairs)


def mcnemar_one_sided(b: int, c: int) -> float:
    """One-sided exact McNemar p-value that the first model is the better one: the chance of b or
    more of the b + c discordant pairs going its way were each a fair coin, P(X >= b) for
    X ~ Binomial(b + c, 1/2) (by symmetry P(X <= c), summed in exact integers). Half the
    two-sided value when b > c."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    pairs = b + c
    if pairs == 0:
        return 1.0
    return min(1.0, _lower_tail(pairs, c) / 2**pairs)


def _lower_tail(pairs: int, upto: int) -> int:
    """C(pairs, 0) + ... + C(pairs, upto), in exact integers."""
    term = tail = 1  # C(pairs, 0)
    for k in range(1, upto + 1):
        term = term * (pairs - k + 1) // k
        tail += term
    return tail


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: reject where adjusted p < alpha keeps the family-wise error."""
    count = len(p_values)
    order = sorted(range(count), key=lambda index: p_values[index])
    adjusted = [0.0] * count
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def accuracy_interval(metrics: dict) -> tuple[float, float] | None:
    """A stored run's 95% Wilson interval on test accuracy. Runs stored before zoo kept it get
    theirs from their confusion matrix: its diagonal counts the test images they got right."""
    stored = metrics.get("accuracy_ci")
    if isinstance(stored, (list, tuple)) and len(stored) == 2:
        return float(stored[0]), float(stored[1])
    confusion = metrics.get("confusion_matrix")
    if not isinstance(confusion, list) or not all(isinstance(row, list) for row in confusion):
        return None
    total = sum(sum(row) for row in confusion)
    right = sum(row[index] for index, row in enumerate(confusion) if index < len(row))
    return wilson_interval(right, total) if total > 0 else None
