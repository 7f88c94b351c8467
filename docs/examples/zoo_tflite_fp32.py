"""An example zoo deployment target: the run's model as a float32 TFLite file, no quantization
(the baseline to weigh `tflite-float16` and `tflite-int8` against).

ZOO_PLUGINS=docs/examples/zoo_tflite_fp32.py zoo run efficientnet_lite0 --deploy tflite-fp32
"""

import zoo
from zoo.runs.artifacts import readable_saved_model
from zoo.runs.export import tflite_bytes


class TfliteFloat32(zoo.DeployTarget):
    """The SavedModel converted as it is, run by TensorFlow's TFLite interpreter."""

    name = "tflite-fp32"
    test_batch = 16  # TFLite gives the same probabilities at any batch

    def export(self, run, folder):
        shipped = folder / "model.tflite"
        with readable_saved_model(run, "deploy") as model:  # the converter globs the path
            shipped.write_bytes(tflite_bytes(model, "none"))
        return shipped

    def predictor(self, path, threads):
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.allocate_tensors()

        def predict(pixels):  # float32 raw 0..255 pixels [N, height, width, 3]
            if tuple(interpreter.get_input_details()[0]["shape"]) != pixels.shape:
                interpreter.resize_tensor_input(source["index"], list(pixels.shape))
                interpreter.allocate_tensors()  # only when the batch size changes
            interpreter.set_tensor(source["index"], pixels)
            interpreter.invoke()
            return interpreter.get_tensor(target["index"]).copy()

        return predict


@zoo.hookimpl
def register_deploy_targets(register):
    register(TfliteFloat32())
