"""Preprocessing as data: how an image becomes a backbone's input (timm's `pretrained_cfg`).

Validated the same way whether it comes from TOML or from a plugin's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Pillow's resampling filters, by the names the registry uses.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class Preprocessing:
    """Raw image to network input, in two steps.

    1. Geometry, done by the decoder for every image zoo reads (training, test, `zoo predict`):
       resize with `interpolation` so that the centre crop of `crop_fraction` of each side is
       `input_size`, then crop that centre. `crop_fraction` 1.0 is a plain resize.
    2. Values, done inside every model zoo builds or exports (raw 0..255 pixels in): reorder the
       channels to `channel_order`, then `(pixel - mean) / std` per channel, `mean` and `std`
       in 0..255 pixel units and in `channel_order`.
    """

    input_size: tuple[int, int]
    interpolation: str = "bilinear"
    crop_fraction: float = 1.0
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)

    @property
    def resize_to(self) -> tuple[int, int]:
        """The (height, width) an image is resized to before its centre is cropped."""
        return tuple(max(side, round(side / self.crop_fraction)) for side in self.input_size)

    def facts(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_fraction": self.crop_fraction,
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def range_as_mean_std(low: float, high: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`input_range` [low, high], the short form: 0..255 mapped linearly onto low..high."""
    std = 255.0 / (high - low)
    return (-low * std,) * 3, (std,) * 3


def preprocessing_problem(values: dict[str, Any]) -> str | None:
    """What is wrong with these preprocessing fields, or None; shared by TOML and code."""
    given_range = values.get("input_range") is not None
    mean, std = values.get("mean"), values.get("std")
    if (mean is None) != (std is None):
        return "give both 'mean' and 'std', or neither"
    if given_range and mean is not None:
        return "give 'input_range' or 'mean' and 'std', not both"
    if given_range:
        low, high = values["input_range"]
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            return f"field 'input_range' must be finite with low < high, got {list(values['input_range'])}"
    if mean is not None:
        for name, triple in (("mean", mean), ("std", std)):
            if len(triple) != 3 or not all(math.isfinite(v) for v in triple):
                return f"field {name!r} must be three finite numbers (0..255 units), got {list(triple)}"
        if not all(v > 0 for v in std):
            return f"field 'std' must be positive, got {list(std)}"
    if values.get("channel_order", "RGB") not in CHANNEL_ORDERS:
        return f"field 'channel_order' must be one of {', '.join(CHANNEL_ORDERS)}, got {values['channel_order']!r}"
    if values.get("interpolation", "bilinear") not in INTERPOLATIONS:
        return f"field 'interpolation' must be one of {', '.join(INTERPOLATIONS)}, got {values['interpolation']!r}"
    crop = values.get("crop_fraction", 1.0)
    if not (math.isfinite(crop) and 0 < crop <= 1):
        return f"field 'crop_fraction' must be in (0, 1], e.g. 0.875, got {crop!r}"
    return None
