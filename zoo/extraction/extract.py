"""Features for a list of images: from the cache where present, else computed in batches.

What computes the missing vectors is a `Compute`: in this process, an engine fed by zoo's decode
threads (`local_compute`); across a Ray cluster, `zoo.extraction.cluster`. Either way the vectors
land in the same feature cache, a shard at a time, keyed by each image's content digest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.catalog.preprocessing import Preprocessing
from zoo.data.decode import decoded_batches
from zoo.extraction.cache import FeatureCache

# Vectors written per cache shard: an interrupted run loses at most one shard's worth.
SHARD_SIZE = 512

# (indices into the paths given that decoded, their vectors, failures: index -> why), per batch;
# batches may come in any order, each path exactly once.
Batch = tuple[list[int], np.ndarray, dict[int, str]]
# Called with the images' paths and their content digests.
Compute = Callable[[list[Path], list[str]], Iterator[Batch]]
# Changes a decoded uint8 batch before it is encoded (an augmented view, zoo/data/augment.py),
# given the images' digests; the cache the vectors go to must be keyed by it.
Transform = Callable[[np.ndarray, list[str]], np.ndarray]


@dataclass
class Extraction:
    good: np.ndarray  # indices of the input paths that decoded
    bad: dict[Path, str]  # path -> why it could not be read
    computed: int  # how many vectors the backbone produced this time (the rest came from cache)
    seconds: float
    cache: FeatureCache
    good_digests: list[str]

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """[len(positions), feature_dim] vectors of the good images at `positions` (of `good`),
        read from the cache straight into the order wanted: a caller that splits them needs no
        second copy."""
        chosen = [self.good_digests[p] for p in positions]
        return self.cache.gather(chosen)


def local_compute(
    preprocessing: Preprocessing,
    encode: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    transform: Transform | None = None,
) -> Compute:
    """Decode in zoo's threads (a batch ahead), `transform`, and run `encode` here, batch by batch."""

    def compute(paths: list[Path], digests: list[str]) -> Iterator[Batch]:
        for indices, pixels, failures in decoded_batches(paths, preprocessing, batch_size):
            if not len(indices):
                yield indices, np.zeros((0, 0), np.float32), failures
                continue
            if transform is not None:
                pixels = transform(pixels, [digests[i] for i in indices])
            yield indices, encode(pixels), failures

    return compute


def extract(
    paths: list[Path],
    digests: list[str],
    compute: Compute,
    cache: FeatureCache,
    on_progress: Callable[[int], None] = lambda done: None,
) -> Extraction:
    """Every path's features into `cache` (through `compute` where missing); which decoded."""
    started = time.perf_counter()
    missing = [i for i, digest in enumerate(digests) if digest not in cache]
    on_progress(len(paths) - len(missing))
    bad: dict[Path, str] = {}
    new_digests: list[str] = []
    new_vectors: list[np.ndarray] = []
    for indices, vectors, failures in compute(
        [paths[i] for i in missing], [digests[i] for i in missing]
    ):
        bad.update({paths[missing[i]]: reason for i, reason in failures.items()})
        if len(indices):
            new_vectors.append(vectors)
            new_digests += [digests[missing[i]] for i in indices]
        if len(new_digests) >= SHARD_SIZE:
            cache.add(new_digests, np.concatenate(new_vectors))
            new_digests, new_vectors = [], []
        on_progress(len(indices) + len(failures))
    if new_digests:
        cache.add(new_digests, np.concatenate(new_vectors))
    good = np.array([i for i, path in enumerate(paths) if path not in bad], dtype=int)
    computed = len(missing) - len(bad)
    seconds = time.perf_counter() - started
    return Extraction(good, bad, computed, seconds, cache, [digests[i] for i in good])
