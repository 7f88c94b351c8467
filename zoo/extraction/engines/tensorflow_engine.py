"""The TensorFlow engine: the backbone's tf_keras extractor behind a compiled uint8 tf.function.

It runs wherever TensorFlow does (GPUs included) and is the fallback for every other engine.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np

from zoo.extraction.engines.base import Engine


class TensorFlowEngine(Engine):
    name = "tensorflow"

    @property
    def version(self) -> str:
        return metadata.version("tensorflow")

    def load(self) -> None:
        self._encode = self.resolved.uint8_function()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self._encode(pixels).numpy()
