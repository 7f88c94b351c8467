"""Traps in a dataset that distort test figures: test images that are training images, and
classes of very different sizes. Pure functions over the scanned splits and their digests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.data.folders import Dataset, ImageSet

# A class this much smaller than the largest makes plain accuracy reward the big classes.
SMALL_CLASS_SHARE = 0.1


def exact_leaks(dataset: Dataset, digests: dict[Path, str]) -> np.ndarray:
    """Positions in `dataset.test` of images whose content is also in train (or given validation)."""
    seen = {digests[path] for path in dataset.train.paths}
    return np.array(
        [i for i, path in enumerate(dataset.test.paths) if digests[path] in seen], dtype=np.int64
    )


def class_counts(images: ImageSet) -> dict[str, int]:
    counts = np.bincount(images.labels, minlength=len(images.classes))
    return {name: int(count) for name, count in zip(images.classes, counts)}


def class_imbalance(images: ImageSet) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """((smallest class, count), (largest class, count)) when the smallest is under 10% of the
    largest; None otherwise."""
    counts = class_counts(images)
    least, most = min(counts, key=counts.get), max(counts, key=counts.get)
    if counts[least] < SMALL_CLASS_SHARE * counts[most]:
        return (least, counts[least]), (most, counts[most])
    return None


def imbalance_ratio(counts: dict[str, int]) -> float | None:
    """The largest class's count over the smallest's (None without images)."""
    values = [count for count in counts.values()]
    if not values or min(values) == 0:
        return None
    return max(values) / min(values)
