"""The OpenVINO extraction engine: 2.2x TensorFlow's speed on the CPU of docs/benchmarks.md
(EfficientNet-Lite0, fp32). Registered where installed."""

import zoo
from zoo.extraction.engines.openvino_engine import OpenVinoEngine, installed


@zoo.hookimpl
def register_engines(register):
    if installed():  # openvino has no wheel for some platforms (see pyproject.toml)
        register("openvino", OpenVinoEngine)
