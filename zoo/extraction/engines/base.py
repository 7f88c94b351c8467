"""What an extraction engine is: uint8 pixel batches in, float32 feature vectors out.

An engine is built from a resolved backbone (its Backbone spec plus its local SavedModel folder)
and a precision. Building it is cheap: its name, version and precision are known at once, so the
feature cache can be consulted before anything is loaded. `load()` does the expensive part
(loading, converting, compiling) only when some image is not cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from zoo.catalog.backbone import Backbone
from zoo.errors import ZooError
from zoo.quiet import import_tensorflow

if TYPE_CHECKING:
    import numpy as np

PRECISIONS = ("fp32", "bf16")


class EngineUnavailable(ZooError):
    """An engine cannot run this backbone here (conversion failed, library missing, ...)."""


@dataclass
class ResolvedBackbone:
    """A backbone whose SavedModel is on disk; its tf_keras layer is loaded at most once.

    The layer is shared by whoever needs it in one run: the TensorFlow engine, the OpenVINO
    conversion and the serving template.
    """

    backbone: Backbone
    folder: Path
    loaded_layer: Any = field(default=None, repr=False)  # None until something needs it

    def layer(self) -> Any:
        from zoo.extraction.layers import feature_layer

        if self.loaded_layer is None:
            import_tensorflow()  # a child's first import of it: its start-up lines hidden
            self.loaded_layer = feature_layer(self.backbone)
        return self.loaded_layer

    def extractor(self) -> Any:
        """The tf_keras feature extractor: raw 0..255 pixels in, with the backbone's preprocessing."""
        from zoo.extraction.layers import feature_extractor

        return feature_extractor(self.backbone, self.layer())

    def uint8_function(self) -> Any:
        """The extractor behind a uint8 `tf.function`: what every engine computes."""
        import_tensorflow()  # a child's first import of it: its start-up lines hidden
        import tensorflow as tf

        extractor = self.extractor()
        height, width = self.backbone.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)])
        def encode(pixels):
            return extractor(tf.cast(pixels, tf.float32), training=False)

        return encode


class Engine:
    """Base class of extraction engines. Subclasses set `name` and implement `precisions`,
    `load` and `__call__`; one that converts the backbone also sets `ir_folder` and
    `known_failure`.

    `precisions()` lists what this machine can compute (cheaply: `zoo run` checks a request
    before any work starts); `load()` raises EngineUnavailable with a one-line reason.
    """

    name: ClassVar[str] = ""

    def __init__(self, resolved: ResolvedBackbone, precision: str = "fp32"):
        self.resolved = resolved
        self.precision = precision

    @classmethod
    def precisions(cls) -> tuple[str, ...]:
        return ("fp32",)

    @functools.cached_property
    def version(self) -> str:
        return "0"

    @property
    def label(self) -> str:
        """e.g. `openvino 2026.4.1 fp32`: what a run record and `zoo show` say."""
        return f"{self.name} {self.version} {self.precision}"

    @property
    def ir_folder(self) -> Path | None:
        """Where the engine keeps the backbone converted to its own format (`zoo show` says
        whether it is there yet); None for an engine that runs the SavedModel as it is."""
        return None

    def known_failure(self) -> str | None:
        """Why an earlier run could not load this backbone on this engine, if one could not:
        the run then makes way for TensorFlow at once, before looking up the feature cache."""
        return None

    def load(self) -> None:
        """Get ready to compute (load, convert, compile): the slow part, done once per run."""

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 pixels [N, height, width, 3] -> float32 features [N, feature_dim]."""
        raise NotImplementedError
