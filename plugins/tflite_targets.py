"""Deployment targets `tflite-float16` and `tflite-int8`: the run's model as one TFLite file.

The conversion and the int8 calibration are `zoo export`'s (zoo.runs.export); the file is run by
TensorFlow's TFLite interpreter with `num_threads`. Input: float32 raw 0..255 pixels, as the
SavedModel takes; output: class probabilities.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import zoo

if TYPE_CHECKING:  # NumPy and the exporter load when a target works: `zoo list` stays quick
    import numpy as np

FILE_NAME = "model.tflite"


class TfliteTarget(zoo.DeployTarget):
    quantize = "float16"

    def export(self, run, folder: Path) -> Path:
        from zoo.runs.export import calibration_sample, saved_model_of, tflite_bytes

        calibration = calibration_sample(run) if self.quantize == "int8" else None
        path = folder / FILE_NAME
        path.write_bytes(tflite_bytes(saved_model_of(run), self.quantize, calibration))
        return path

    def predictor(self, path: Path, threads: int):
        import tensorflow as tf

        with warnings.catch_warnings():  # its notice that LiteRT will replace it, on every load
            warnings.filterwarnings("ignore", message=r"(?s).*tf.lite.Interpreter is deprecated")
            interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.allocate_tensors()
        shape = [list(source["shape"])]  # the batch the tensors are allocated for

        def predict(pixels: np.ndarray) -> np.ndarray:
            if list(pixels.shape) != shape[0]:  # a new batch size: reallocate once
                interpreter.resize_tensor_input(source["index"], list(pixels.shape))
                interpreter.allocate_tensors()
                shape[0] = list(pixels.shape)
            interpreter.set_tensor(source["index"], pixels)
            interpreter.invoke()
            return interpreter.get_tensor(target["index"]).copy()

        return predict


class TfliteFloat16(TfliteTarget):
    name = "tflite-float16"
    quantize = "float16"


class TfliteInt8(TfliteTarget):
    name = "tflite-int8"
    quantize = "int8"


@zoo.hookimpl
def register_deploy_targets(register):
    register(TfliteFloat16())
    register(TfliteInt8())
