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
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from zoo.catalog.backbone import Backbone
from zoo.home import atomic_write_bytes, features_dir

# Bump when the decoder (zoo/data/decode.py) changes the pixels it gives for the same settings.
DECODER_VERSION = "pillow-rgb-v2"


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
        "preprocessing": backbone.preprocessing.facts(),
        "decoder": DECODER_VERSION,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return f"{backbone.name}-{digest}"


def features_key(model_key: str, engine: Any) -> str:
    """The cache key of one engine's features of one model: fp32 and bf16, TensorFlow and
    OpenVINO features never mix. `engine` has `name`, `version` and `precision`."""
    identity = f"{engine.name}-{engine.version}-{engine.precision}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"{model_key}-{engine.name}-{engine.precision}-{digest}"


class UnusableShard(Exception):
    """A shard that cannot be read, or holds what this cache does not expect."""


class OtherWidth(UnusableShard):
    """A whole shard of vectors of another width than expected: the shard or the expectation
    (a backbone's declared feature_dim) is wrong, which only the model can tell."""


class FeatureCache:
    """An index of one backbone key's cached vectors, plus atomic appends.

    Opening the cache reads every shard once, to check it against what the cache expects (string
    digests, one float32 row of `width` values each), but keeps only where each digest's row is:
    memory does not grow with the cache, only with the matrix a run asks for (`gather`). A shard
    that fails the check (damaged, written under another key, holding NaN) is removed, its
    vectors computed again, and the reason kept in `discarded` for the caller to report. A sound
    shard of another width is only left out, in `other_width`: the caller removes those with
    `discard_other_width()` once the model has shown the expected width is right. A cache only
    read (`removes=False`: `zoo inspect`, `zoo run`'s near-copy check) leaves such shards in
    place for the extraction to remove and report.
    """

    def __init__(
        self, key: str, root: Path | None = None, width: int | None = None, removes: bool = True
    ):
        self.key, self.removes = key, removes
        self.folder = (root or features_dir()) / key
        self.width = width  # None: the first whole shard decides
        self.shards: list[Path] = []
        self.rows: dict[str, tuple[int, int]] = {}  # digest -> (shard number, row in it)
        self.discarded: list[str] = []
        self.other_width: list[tuple[Path, str]] = []
        for shard in sorted(self.folder.glob("shard-*.npz")):  # never the `.tmp-*` files
            try:
                self._index(shard, self._read_shard(shard)[0])
            except OtherWidth as error:
                self.other_width.append((shard, str(error)))
            except UnusableShard as error:
                self._discard(shard, str(error))

    def discard_other_width(self) -> None:
        for shard, why in self.other_width:
            self._discard(shard, why)
        self.other_width = []

    def _discard(self, shard: Path, why: str) -> None:
        self.discarded.append(f"{shard.name}: {why}")
        if self.removes:
            with contextlib.suppress(OSError):
                shard.unlink()

    def __contains__(self, digest: str) -> bool:
        return digest in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, digests: list[str], features: np.ndarray) -> None:
        import io

        if not np.isfinite(features).all():  # the caller refuses them; never cache one
            raise ValueError("non-finite feature vectors are never cached")
        buffer = io.BytesIO()
        np.savez(
            buffer,
            digests=np.array(digests),
            features=features.astype(np.float32),
            key=np.array(self.key),  # a shard copied into another backbone's folder is refused
        )
        shard = self.folder / f"shard-{uuid.uuid4().hex}.npz"
        atomic_write_bytes(shard, buffer.getvalue())
        self.width = self.width or features.shape[1]
        self._index(shard, digests)

    def gather(self, digests: list[str]) -> np.ndarray:
        """The vectors of `digests`, in that order, as one float32 matrix; each shard read once."""
        matrix = np.empty((len(digests), self.width or 0), dtype=np.float32)
        wanted: dict[int, list[tuple[int, int]]] = {}  # shard -> (row in shard, row in matrix)
        for position, digest in enumerate(digests):
            shard, row = self.rows[digest]
            wanted.setdefault(shard, []).append((row, position))
        for shard, pairs in wanted.items():
            features = self._read_shard(self.shards[shard])[1]
            rows, positions = np.array(pairs).T
            matrix[positions] = features[rows]
        return matrix

    def _index(self, shard: Path, digests) -> None:
        self.shards.append(shard)
        number = len(self.shards) - 1
        self.rows.update((digest, (number, row)) for row, digest in enumerate(digests))

    def _read_shard(self, shard: Path) -> tuple[list[str], np.ndarray]:
        """One shard's digests and vectors, or UnusableShard saying why not.

        zoo's own writes are atomic, so a bad shard means a disk fault, a hand-copied cache or
        another version's layout: removing it lets the recomputed vectors replace it instead of
        failing every later run.
        """
        try:
            with np.load(shard, allow_pickle=False) as stored:
                digests, features = stored["digests"], stored["features"]
                key = str(stored["key"]) if "key" in stored.files else self.key  # older shards
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise UnusableShard(f"damaged ({type(error).__name__})") from None
        if digests.ndim != 1 or digests.dtype.kind != "U":
            raise UnusableShard(f"digests of dtype {digests.dtype}, expected strings")
        if features.ndim != 2 or features.dtype != np.float32:
            raise UnusableShard(
                f"features of shape {features.shape} and dtype {features.dtype}, "
                "expected rows of float32"
            )
        if len(digests) != len(features):
            raise UnusableShard(f"{len(digests)} digests for {len(features)} vectors")
        if key != self.key:
            raise UnusableShard(f"written for features {key[:60]}, not {self.key}")
        if not np.isfinite(features).all():
            raise UnusableShard("holds non-finite values (NaN or infinity)")
        if self.width is not None and features.shape[1] != self.width:
            raise OtherWidth(f"vectors {features.shape[1]} wide, expected {self.width}")
        self.width = features.shape[1]
        return digests.tolist(), features
