"""`--augment K`: K augmented views of each training image, deterministic so they can be cached.

A view is a function of (the image's content digest, the view index, the settings) alone: the
same image gets the same view in every run, so its features are computed once through the frozen
backbone and cached like the originals' (under a key of their own per view, see `key`).

The operations work on the decoder's output, the uint8 rows at the backbone's input size
(zoo/data/decode.py), not on the Pillow image before the resize: decoding stays one code path
for originals, views, `zoo predict` and export, a view does not depend on the file's size or
format, and it costs a resize of an input-sized image. The price is that a crop is upsampled
from the already-resized image (at most 1/sqrt(0.7) = 1.2x at the default scale), which blurs a
large photo slightly; on the demo's 28-pixel images upscaled to 224 it loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

OPERATIONS = ("flip", "crop", "color")  # applied in this order, each drawn per view
MAX_VIEWS = 16
CROP_SCALE = (0.7, 1.0)  # share of the image's area a crop keeps
CROP_RATIO = (3 / 4, 4 / 3)  # its aspect ratio, drawn log-uniformly
COLOR_STRENGTH = 0.2  # brightness, contrast and saturation factors in 1 +- this
VERSION = "augment-v1"  # bump when a view's pixels change for the same settings


@dataclass(frozen=True)
class Augmentation:
    views: int
    ops: tuple[str, ...] = OPERATIONS

    @classmethod
    def parse(cls, views: int, ops: str) -> Augmentation:
        """From `--augment K --augment-ops a,b`; a ValueError says what is wrong, in one line."""
        names = tuple(dict.fromkeys(part.strip() for part in ops.split(",") if part.strip()))
        unknown = [name for name in names if name not in OPERATIONS]
        if not 0 <= views <= MAX_VIEWS:
            raise ValueError(f"--augment must be between 0 and {MAX_VIEWS} views per image")
        if unknown or not names:
            raise ValueError(
                f"--augment-ops takes a comma-separated list of {', '.join(OPERATIONS)}, "
                f"not {ops!r}"
            )
        return cls(views, tuple(name for name in OPERATIONS if name in names))

    def facts(self) -> dict:
        """What the run record keeps and the settings that make a view what it is."""
        return {
            "views": self.views,
            "ops": list(self.ops),
            "crop_scale": list(CROP_SCALE),
            "crop_ratio": [round(r, 6) for r in CROP_RATIO],
            "color_strength": COLOR_STRENGTH,
            "version": VERSION,
        }

    def key(self, view: int) -> str:
        """The cache-key suffix of view `view`: settings and index, never the number of views,
        so `--augment 3` reuses the two views `--augment 2` computed."""
        settings = {key: value for key, value in self.facts().items() if key != "views"}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        return f"aug-{'-'.join(self.ops)}-{digest}-view{view}"

    def apply(self, pixels: np.ndarray, digests: list[str], view: int) -> np.ndarray:
        """View `view` of each row of a uint8 batch [N, H, W, 3]; row i is the image `digests[i]`."""
        return np.stack(
            [self.view_of(image, digest, view) for image, digest in zip(pixels, digests)]
        ).reshape(pixels.shape)

    def view_of(self, image: np.ndarray, digest: str, view: int) -> np.ndarray:
        rng = np.random.default_rng(self._seed(digest, view))
        draws = rng.random(9)  # a fixed number, so one op's draws never shift another's
        picture = Image.fromarray(image)
        if "flip" in self.ops and draws[0] < 0.5:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if "crop" in self.ops:
            picture = _crop_and_resize(picture, draws[1:5])
        if "color" in self.ops:
            picture = _color(picture, draws[5:8])
        return np.asarray(picture, dtype=np.uint8)

    def _seed(self, digest: str, view: int) -> int:
        text = f"{self.key(view)}/{digest}"
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _crop_and_resize(picture: Image.Image, draws: np.ndarray) -> Image.Image:
    """A random crop of CROP_SCALE of the area, resized back to the image's size (bilinear)."""
    width, height = picture.size
    area = width * height * (CROP_SCALE[0] + draws[0] * (CROP_SCALE[1] - CROP_SCALE[0]))
    low, high = (math.log(r) for r in CROP_RATIO)
    ratio = math.exp(low + draws[1] * (high - low))
    crop_width = min(width, max(1, round(math.sqrt(area * ratio))))
    crop_height = min(height, max(1, round(math.sqrt(area / ratio))))
    left = int(draws[2] * (width - crop_width + 1))
    top = int(draws[3] * (height - crop_height + 1))
    box = (left, top, left + crop_width, top + crop_height)
    return picture.resize((width, height), Image.Resampling.BILINEAR, box=box)


def _color(picture: Image.Image, draws: np.ndarray) -> Image.Image:
    """Brightness, contrast and saturation, each scaled by a factor in 1 +- COLOR_STRENGTH."""
    for enhancer, draw in zip(
        (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), draws
    ):
        picture = enhancer(picture).enhance(1 + COLOR_STRENGTH * (2 * draw - 1))
    return picture
