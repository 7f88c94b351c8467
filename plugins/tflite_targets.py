"""Deployment targets `tflite-float16` and `tflite-int8`: the run's model as one TFLite file.

The conversion and the int8 calibration are `zoo export`'s (zoo.runs.export), calibrated on 25
training images (`zoo export`: 100): the int8 conversion's CPU time grows by 0.15-0.19 s an image
(Lite0: 11.9 s of CPU with 25, 25.8 s with 100). The file is run by TensorFlow's TFLite
interpreter with `num_threads`. Input: float32 raw 0..255 pixels, as the
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
    calibration_images = 25  # int8 within 0.6 points of float on the demo (docs/deploy.md)
    test_batch = 16  # the same probabilities as one image a call (tests/test_deploy.py), less CPU

    def export(self, run, folder: Path) -> Path:
        from zoo.runs.artifacts import readable_saved_model
        from zoo.runs.export import calibration_sample, tflite_bytes

        calibration = None
        if self.quantize == "int8":
            calibration = calibration_sample(run, self.calibration_images)
        path = folder / FILE_NAME
        with readable_saved_model(run, "deploy") as model:  # the converter globs the path
            path.write_bytes(tflite_bytes(model, self.quantize, calibration))
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
