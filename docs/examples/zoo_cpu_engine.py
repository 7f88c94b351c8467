"""An example zoo engine plugin: TensorFlow kept on the CPU, e.g. to leave a shared GPU free.

ZOO_PLUGINS=docs/examples/zoo_cpu_engine.py zoo run efficientnet_lite0 --engine tensorflow-cpu
"""

import zoo
from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine


class CpuTensorFlowEngine(TensorFlowEngine):
    """TensorFlow's engine with every batch placed on the CPU."""

    name = "tensorflow-cpu"

    def __call__(self, pixels):
        import tensorflow as tf

        with tf.device("/CPU:0"):
            return super().__call__(pixels)


@zoo.hookimpl
def register_engines(register):
    register("tensorflow-cpu", CpuTensorFlowEngine)
