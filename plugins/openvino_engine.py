"""The OpenVINO extraction engine: 2-3x TensorFlow's speed on CPUs. Registered where installed."""

import zoo


@zoo.hookimpl
def register_engines(register):
    # Imported here, not at the top: commands that extract nothing (`zoo list`) skip NumPy.
    from zoo.extraction.engines.openvino_engine import OpenVinoEngine, installed

    if installed():  # openvino has no wheel for some platforms (see pyproject.toml)
        register("openvino", OpenVinoEngine)
