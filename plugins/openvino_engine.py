"""The OpenVINO extraction engine: 2.2x TensorFlow's speed on the CPU of docs/benchmarks.md
(EfficientNet-Lite0, fp32). Registered where installed."""

import zoo


@zoo.hookimpl
def register_engines(register):
    # Imported here, not at the top: commands that extract nothing (`zoo list`) skip NumPy.
    from zoo.extraction.engines.openvino_engine import OpenVinoEngine, installed

    if installed():  # openvino has no wheel for some platforms (see pyproject.toml)
        register("openvino", OpenVinoEngine)
