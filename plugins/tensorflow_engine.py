"""The TensorFlow extraction engine: runs anywhere TensorFlow does, and is every fallback."""

import zoo


@zoo.hookimpl
def register_engines(register):
    # Imported here, not at the top: commands that extract nothing (`zoo list`) skip NumPy.
    from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine

    register("tensorflow", TensorFlowEngine)
