"""Frozen feature extraction with an on-disk cache.

A frozen backbone sees no augmentation, so each image's feature vector is computed once per
backbone and reused by every epoch and every later run. Vectors are stored in shards under a key
of backbone identity + preprocessing; inside a shard each row is keyed by the image's content hash.
Shards are written atomically (temp file + rename): an interrupted run loses at most the shard in
flight, and two processes never corrupt each other's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.backbone import Backbone
from zoo.data import BadImage, load_pixels
from zoo.home import atomic_write_bytes, features_dir

PREPROCESSING_VERSION = "pillow-bilinear-rgb-v1"
SHARD_SIZE = 512
DECODE_THREADS = max(2, min(8, os.cpu_count() or 2))


def backbone_key(backbone: Backbone, model_folder: Path) -> str:
    """Identity of what turns an image into features: the model's bytes and its preprocessing.

    The model is its graph plus its variables' index, which holds a checksum of every tensor: new
    weights in the same graph are a new backbone too.
    """
    model_digest = hashlib.sha256()
    for part in ("saved_model.pb", "variables/variables.index"):
        if (model_folder / part).is_file():  # a model may hold no variables at all
            model_digest.update((model_folder / part).read_bytes())
    identity = {
        "model": model_digest.hexdigest(),
        "input_size": list(backbone.input_size),
        "input_range": list(backbone.input_range),
        "preprocessing": PREPROCESSING_VERSION,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return f"{backbone.name}-{digest}"


class FeatureCache:
    """All cached vectors of one backbone key, loaded into memory, plus atomic appends."""

    def __init__(self, key: str, root: Path | None = None):
        self.folder = (root or features_dir()) / key
        self.vectors: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):  # never the `.tmp-*` files
            self.vectors.update(_read_shard(shard))

    def add(self, digests: list[str], features: np.ndarray) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, digests=np.array(digests), features=features.astype(np.float32))
        atomic_write_bytes(self.folder / f"shard-{uuid.uuid4().hex}.npz", buffer.getvalue())
        self.vectors.update(zip(digests, features))


def _read_shard(shard: Path) -> dict[str, np.ndarray]:
    """One shard's vectors. A damaged shard counts as absent: its vectors are computed again.

    zoo's own writes are atomic, so damage means a disk fault or a hand-copied cache; removing
    the file lets the recomputed vectors replace it instead of failing every later run.
    """
    try:
        with np.load(shard) as stored:
            return dict(zip(stored["digests"].tolist(), stored["features"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        with contextlib.suppress(OSError):
            shard.unlink()
        return {}


@dataclass
class Extraction:
    features: np.ndarray  # [number of good images, feature_dim], in input order
    good: np.ndarray  # indices of the input paths that decoded
    bad: dict[Path, str]  # path -> why it could not be read
    computed: int  # how many vectors the backbone produced this time (the rest came from cache)
    seconds: float


def decoded_batches(
    paths: list[Path], size: tuple[int, int], batch_size: int
) -> Iterator[tuple[list[int], np.ndarray, dict[int, str]]]:
    """Decode images in parallel threads, a batch ahead of the consumer."""

    def decode(index: int):
        try:
            return index, load_pixels(paths[index], size), None
        except BadImage as error:
            return index, None, str(error)

    chunks = [
        list(range(i, min(i + batch_size, len(paths)))) for i in range(0, len(paths), batch_size)
    ]
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        pending = [pool.map(decode, chunk) for chunk in chunks[:2]]
        for number in range(len(chunks)):
            results = list(pending.pop(0))
            if number + 2 < len(chunks):
                pending.append(pool.map(decode, chunks[number + 2]))
            good = [(i, pixels) for i, pixels, _ in results if pixels is not None]
            bad = {i: reason for i, pixels, reason in results if pixels is None}
            batch = np.stack([p for _, p in good]) if good else np.zeros((0, *size, 3), np.uint8)
            yield [i for i, _ in good], batch, bad


def extract(
    paths: list[Path],
    digests: list[str],
    size: tuple[int, int],
    encode: Callable[[np.ndarray], np.ndarray],
    cache: FeatureCache,
    batch_size: int = 64,
    on_progress: Callable[[int], None] = lambda done: None,
) -> Extraction:
    """Features for every path: from the cache where present, else through `encode`."""
    started = time.perf_counter()
    missing = [i for i, digest in enumerate(digests) if digest not in cache.vectors]
    on_progress(len(paths) - len(missing))
    bad: dict[Path, str] = {}
    new_digests: list[str] = []
    new_vectors: list[np.ndarray] = []
    for indices, pixels, failures in decoded_batches([paths[i] for i in missing], size, batch_size):
        bad.update({paths[missing[i]]: reason for i, reason in failures.items()})
        if len(indices):
            new_vectors.append(encode(pixels))
            new_digests += [digests[missing[i]] for i in indices]
        if len(new_digests) >= SHARD_SIZE:
            cache.add(new_digests, np.concatenate(new_vectors))
            new_digests, new_vectors = [], []
        on_progress(len(indices) + len(failures))
    if new_digests:
        cache.add(new_digests, np.concatenate(new_vectors))
    good = np.array([i for i, path in enumerate(paths) if path not in bad], dtype=int)
    features = (
        np.stack([cache.vectors[digests[i]] for i in good]) if len(good) else np.zeros((0, 0))
    )
    computed = len(missing) - len(bad)
    return Extraction(features, good, bad, computed, time.perf_counter() - started)
