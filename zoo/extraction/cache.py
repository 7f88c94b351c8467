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
