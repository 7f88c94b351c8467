"""Top-k predictions from a stored run's saved model (no zoo cache or hub download needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.analysis.record import RunRecord
from zoo.catalog.preprocessing import Preprocessing
from zoo.data.decode import BadImage, load_pixels
from zoo.errors import DataError
from zoo.runs.artifacts import load_serving


def predict(
    record: RunRecord,
    images: list[Path],
    top_k: int = 3,
    warn: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """For each image: the top-k classes with probabilities. A run's model written on this
    first use (artifacts.saved_model_folder) may rebuild a serving template, said to `warn`."""
    import tensorflow as tf

    serve = load_serving(record, "predict with", warn)
    preprocessing = _geometry(record, serve)
    classes = record.classes
    results = []
    for path in images:
        try:
            pixels = load_pixels(path, preprocessing)
        except BadImage as error:
            raise DataError(f"cannot read {path}: {error}") from None
        outputs = serve(pixels=tf.constant(pixels[np.newaxis].astype(np.float32)))
        probabilities = outputs["probabilities"].numpy()[0]
        best = np.argsort(probabilities)[::-1][:top_k]
        results.append(
            {
                "image": str(path),
                "top": [
                    {"class": classes[i], "probability": float(probabilities[i])} for i in best
                ],
            }
        )
    return results


def _geometry(record: RunRecord, serve: Any) -> Preprocessing:
    """How the run resized its images; runs stored before preprocessing was recorded resized
    plainly (bilinear) to the model's input size."""
    facts = record.preprocessing
    if facts:
        return Preprocessing(
            input_size=tuple(facts["input_size"]),
            interpolation=facts["interpolation"],
            crop_fraction=facts["crop_fraction"],
        )
    spec = serve.structured_input_signature[1]["pixels"]
    return Preprocessing(input_size=tuple(spec.shape[1:3]))
