#!/usr/bin/env python
"""Build zoo's embedded offline demo dataset from Fashion-MNIST.

The subset mirrors the classic "10 food classes, 10 percent" experiment: 10 classes,
75 training images per class drawn from the official TRAIN split and 250 test images per
class drawn from the official TEST split. Sampling is per class, without replacement, with
``numpy.random.default_rng(SEED)``; the chosen indices are sorted so the output is stable.

Source: the gzipped IDX files of Debian's ``dataset-fashion-mnist`` package (MIT licence).

Usage: python scripts/make_demo_dataset.py [--source DIR] [--out PATH] [--seed N]
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np

SEED = 20240611
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = (
    Path(__file__).resolve().parent.parent / "zoo" / "demo_data" / "fashion_mnist_demo.npz"
)
CLASS_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
TRAIN_PER_CLASS = 75
TEST_PER_CLASS = 250

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one gzipped IDX file of unsigned bytes, checking its magic number and size."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ValueError(f"{path}: magic number {found:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def _load_split(source_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(source_dir / f"{prefix}-images-idx3-ubyte.gz", _IMAGES_MAGIC)
    labels = read_idx(source_dir / f"{prefix}-labels-idx1-ubyte.gz", _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _sample(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Per class, draw `per_class` indices without replacement; return them all, sorted."""
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=per_class, replace=False)
        for cls in range(len(CLASS_NAMES))
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def build_subset(
    source_dir: Path | str = DEFAULT_SOURCE, seed: int = SEED
) -> dict[str, np.ndarray]:
    """Return the demo subset's arrays, exactly as written to the npz."""
    source_dir = Path(source_dir)
    rng = np.random.default_rng(seed)
    train_images, train_labels = _load_split(source_dir, "train")
    test_images, test_labels = _load_split(source_dir, "t10k")
    train_idx = _sample(train_labels, TRAIN_PER_CLASS, rng)
    test_idx = _sample(test_labels, TEST_PER_CLASS, rng)
    return {
        "train_images": train_images[train_idx],
        "train_labels": train_labels[train_idx],
        "test_images": test_images[test_idx],
        "test_labels": test_labels[test_idx],
        "class_names": np.array(CLASS_NAMES),
        "train_indices": train_idx,
        "test_indices": test_idx,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="folder of IDX .gz files"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="npz file to write")
    parser.add_argument("--seed", type=int, default=SEED, help=f"sampling seed (default {SEED})")
    args = parser.parse_args(argv)
    arrays = build_subset(args.source, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, seed {args.seed})")


if __name__ == "__main__":
    main()
