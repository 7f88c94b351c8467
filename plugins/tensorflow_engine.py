"""The TensorFlow extraction engine: runs anywhere TensorFlow does, and is every fallback."""

import zoo
from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine


@zoo.hookimpl
def register_engines(register):
    register("tensorflow", TensorFlowEngine)
