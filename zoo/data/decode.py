"""Decoding: any image file to uint8 RGB pixels at a backbone's input size, with Pillow.

JPEG, PNG, BMP, GIF and more; any mode (grayscale, RGBA, CMYK, palette, 16-bit). The geometry of
the backbone's Preprocessing (interpolation, centre crop, size) is applied here, for training,
test and `zoo predict` alike; pixels stay raw 0..255 RGB: each model applies the value steps
(channel order, mean, std) itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from zoo.catalog.preprocessing import Preprocessing

# Pillow refuses bigger images as decompression bombs; a 12000x12000 photo is 144 M pixels.
Image.MAX_IMAGE_PIXELS = 250_000_000
DECODE_THREADS = max(2, min(8, os.cpu_count() or 2))


class BadImage(Exception):
    """One file that is not a decodable image."""


RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def load_pixels(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """Decode any image file to uint8 RGB pixels [height, width, 3] at the input size.

    Geometry as `Preprocessing` describes it: a plain resize, or a resize keeping the aspect
    ratio followed by a centre crop.
    """
    height, width = preprocessing.input_size
    try:
        with Image.open(path) as image:
            image.draft("RGB", preprocessing.resize_to(*image.size))  # JPEG: decode big ones smaller
            image = _to_rgb(ImageOps.exif_transpose(image))
            resized_width, resized_height = preprocessing.resize_to(*image.size)
            image = image.resize((resized_width, resized_height), RESAMPLING[preprocessing.interpolation])
            left, top = (resized_width - width) // 2, (resized_height - height) // 2
            if (left, top) != (0, 0):
                image = image.crop((left, top, left + width, top + height))
            return np.asarray(image, dtype=np.uint8)
    except Exception as error:  # Pillow raises many types for broken files; all mean "skip it"
        raise BadImage(f"{type(error).__name__}: {error}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / peak * 255.0, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decoded_batches(
    paths: list[Path], preprocessing: Preprocessing, batch_size: int
) -> Iterator[tuple[list[int], np.ndarray, dict[int, str]]]:
    """Decode images in parallel threads, a batch ahead of the consumer."""

    def decode(index: int):
        try:
            return index, load_pixels(paths[index], preprocessing), None
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
            empty = np.zeros((0, *preprocessing.input_size, 3), np.uint8)
            batch = np.stack([p for _, p in good]) if good else empty
            yield [i for i, _ in good], batch, bad
