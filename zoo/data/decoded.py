"""Decoded images on disk, read back a batch at a time: memory stays flat in the image count.

End-to-end training (fine-tuning, from scratch) sees every image once per epoch. Decoding them
all into memory cost ~590 KB an image (25,000 images: 14.7 GB); here each image is decoded once
into one uint8 file (150 KB a row at 224x224) and every epoch reads only its current batch back
with `os.pread`, which leaves nothing mapped: the process holds a batch, not the data set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from zoo.catalog.preprocessing import Preprocessing
from zoo.data.decode import decoded_batches


class DecodedImages:
    """uint8 pixel rows [height, width, 3] in one file; indexing with an array gives a view."""

    def __init__(self, path: Path, row_shape: tuple[int, int, int], rows: np.ndarray):
        self.path, self.row_shape, self.rows = path, row_shape, rows
        self.row_bytes = int(np.prod(row_shape))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: np.ndarray) -> DecodedImages:
        return DecodedImages(self.path, self.row_shape, self.rows[positions])

    def read(self, positions: np.ndarray) -> np.ndarray:
        """The pixels of `positions` (indices into this view), as [len, height, width, 3]."""
        out = np.empty((len(positions), *self.row_shape), np.uint8)
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            for slot, row in enumerate(self.rows[positions]):
                data = os.pread(descriptor, self.row_bytes, int(row) * self.row_bytes)
                out[slot] = np.frombuffer(data, np.uint8).reshape(self.row_shape)
        finally:
            os.close(descriptor)
        return out


def decode_to_disk(
    paths: list[Path],
    preprocessing: Preprocessing,
    file: Path,
    batch_size: int,
    on_progress: Callable[[int], None] = lambda done: None,
) -> tuple[DecodedImages, np.ndarray, dict[int, str]]:
    """Decode every path into `file`: (the images that decoded, their indices, failures)."""
    good: list[int] = []
    failed: dict[int, str] = {}
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as out:
        for indices, pixels, failures in decoded_batches(paths, preprocessing, batch_size):
            out.write(pixels.tobytes())
            good += indices
            failed.update(failures)
            on_progress(len(indices) + len(failures))
    row_shape = (*preprocessing.input_size, 3)
    return DecodedImages(file, row_shape, np.arange(len(good))), np.array(good, int), failed
