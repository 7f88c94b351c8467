"""Extraction engines: what turns uint8 pixels into feature vectors (TensorFlow, OpenVINO, ...).

Engines are plugins (`register_engines(register)`); zoo's own two are registered by the built-in
plugins `tensorflow_engine` and `openvino_engine`.
"""

from zoo.extraction.engines.base import (
    PRECISIONS,
    Engine,
    EngineUnavailable,
    ResolvedBackbone,
)
from zoo.extraction.engines.registry import AUTO, Engines, load_engines

__all__ = [
    "AUTO",
    "PRECISIONS",
    "Engine",
    "EngineUnavailable",
    "Engines",
    "ResolvedBackbone",
    "load_engines",
]
