"""Preprocessing as data: how an image becomes a backbone's input (timm's `pretrained_cfg`).

Validated the same way whether it comes from TOML or from a plugin's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from zoo.errors import RegistryError

# Pillow's resampling filters, by the names the registry uses.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
CHANNEL_ORDERS = ("RGB", "BGR")
# A smaller centre crop would decode images many times the input size to keep a sliver of them.
MIN_CROP_FRACTION = 0.25


@dataclass(frozen=True)
class Preprocessing:
    """Raw image to network input, in two steps.

    1. Geometry, done by zoo's decoder for every image it reads (training, test, `zoo predict`)
       and stored with each run: `crop_fraction` 1.0 resizes to `input_size` with
       `interpolation` (the aspect ratio is not kept, as Keras's `image_dataset_from_directory`
       does); below 1.0 the image is resized keeping its aspect ratio until it covers
       `input_size / crop_fraction`, then its centre `input_size` is cropped (torchvision's
       `Resize` + `CenterCrop`, timm's `crop_pct`).
    2. Values, done inside every model zoo builds or exports (raw 0..255 RGB pixels in): reorder
       the channels to `channel_order`, then `(pixel - mean) / std` per channel, `mean` and
       `std` in 0..255 pixel units and in `channel_order`.
    """

    input_size: tuple[int, int]
    interpolation: str = "bilinear"
    crop_fraction: float = 1.0
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)

    def __post_init__(self) -> None:
        problem = preprocessing_problem(vars(self))
        if problem:
            raise RegistryError(f"preprocessing: {problem}")

    def resize_to(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) an image of this size is resized to before its centre is cropped."""
        target_height, target_width = self.input_size
        if self.crop_fraction == 1.0:
            return target_width, target_height
        scale = max(target_width / width, target_height / height) / self.crop_fraction
        return max(target_width, round(width * scale)), max(target_height, round(height * scale))

    def facts(self) -> dict[str, Any]:
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_fraction": self.crop_fraction,
            "channel_order": self.channel_order,
            "mean": [v + 0.0 for v in self.mean],  # + 0.0: -0.0 would give another cache key
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
    if isinstance(crop, bool) or not (math.isfinite(crop) and MIN_CROP_FRACTION <= crop <= 1):
        return (
            f"field 'crop_fraction' must be in [{MIN_CROP_FRACTION}, 1], e.g. 0.875, got {crop!r}"
        )
    return None
