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
from PIL import ExifTags, Image

from zoo.catalog.preprocessing import Preprocessing

# The largest image zoo decodes (a 12000x12000 photo is 144 M pixels), checked on the header
# before any pixel is read. zoo checks it itself, so Pillow's own check (which only warns
# between its limit and twice that) is turned off.
PIXEL_LIMIT = 250_000_000
Image.MAX_IMAGE_PIXELS = None
DECODE_THREADS = max(2, min(8, os.cpu_count() or 2))
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS_AXES = (5, 6, 7, 8)


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


def is_image_file(path: Path) -> bool:
    """Whether the file's header is that of an image Pillow reads (only the first bytes are read)."""
    try:
        with Image.open(path):
            return True
    except Exception:  # Pillow raises many types for what it cannot identify
        return False


def load_pixels(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """Decode any image file to uint8 RGB pixels [height, width, 3] at the input size.

    Geometry as `Preprocessing` describes it: a plain resize, or a resize keeping the aspect
    ratio followed by a centre crop. A big image is shrunk in its own mode first, so that the
    conversions after it (16-bit scaling, transparency composited onto white, EXIF rotation)
    copy a small image.
    """
    height, width = preprocessing.input_size
    try:
        with Image.open(path) as image:
            if image.width * image.height > PIXEL_LIMIT:
                raise BadImage(
                    f"{image.width}x{image.height} pixels is over zoo's limit of "
                    f"{PIXEL_LIMIT // 1_000_000} megapixels; shrink it"
                )
            image.draft(
                "RGB", preprocessing.resize_to(*image.size)
            )  # JPEG: decode big ones smaller
            orientation = image.getexif().get(ExifTags.Base.Orientation)
            shown = image.size[::-1] if orientation in SWAPS_AXES else image.size
            resized_width, resized_height = preprocessing.resize_to(*shown)
            image = _shrunk(image, max(resized_width, resized_height))
            if orientation in EXIF_TRANSPOSE:
                image = image.transpose(EXIF_TRANSPOSE[orientation])
            image = _to_rgb(image)
            image = image.resize(
                (resized_width, resized_height), RESAMPLING[preprocessing.interpolation]
            )
            left, top = (resized_width - width) // 2, (resized_height - height) // 2
            if (left, top) != (0, 0):
                image = image.crop((left, top, left + width, top + height))
            return np.asarray(image, dtype=np.uint8)
    except BadImage:
        raise
    except Exception as error:  # Pillow raises many types for broken files; all mean "skip it"
        raise BadImage(f"{type(error).__name__}: {error}") from None


def _shrunk(image: Image.Image, longest: int) -> Image.Image:
    """`image` reduced by a whole factor, keeping both sides at least twice `longest`.

    `longest` is the target's longer side, so the margin holds whichever way EXIF turns it.
    """
    factor = min(image.size) // (2 * longest)
    if factor < 2:
        return image
    if image.mode in ("1", "P", *SIXTEEN_BIT_MODES):  # modes reduce() does not take
        smaller = (image.width // factor, image.height // factor)
        return image.resize(smaller, Image.NEAREST if image.mode in ("1", "P") else Image.BOX)
    return image.reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in (*SIXTEEN_BIT_MODES, "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode in SIXTEEN_BIT_MODES or values.max() > 255 else 255.0
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
