"""Deployment targets `openvino-fp32` and `openvino-int8`: the run's model as OpenVINO IR.

OpenVINO reads the run's SavedModel itself (`openvino.convert_model(folder)`); the IR
(`model.xml` + `model.bin`, weights kept in fp32) is compiled for the CPU with
`INFERENCE_NUM_THREADS` and the LATENCY hint. `openvino-int8` is NNCF's post-training
quantization of that IR, calibrated on the same seeded sample of training images as TFLite int8
(25 images); it is offered where NNCF is installed (`pip install nncf`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import zoo

if TYPE_CHECKING:  # NumPy and the exporter load when a target works: `zoo list` stays quick
    import numpy as np

IR_NAME = "model.xml"


class OpenVinoTarget(zoo.DeployTarget):
    name = "openvino-fp32"
    test_batch = 16  # the same probabilities as one image a call (tests/test_deploy.py), less CPU

    def available(self) -> str | None:
        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed (pip install openvino)"
        return None

    def export(self, run, folder: Path) -> Path:
        from zoo.extraction.engines.openvino_engine import import_openvino
        from zoo.runs.artifacts import readable_saved_model

        openvino = import_openvino()
        # An alias without glob characters or commas: OpenVINO reads 'a,b' as a list of files.
        with readable_saved_model(run, "deploy") as saved_model:
            converted = openvino.convert_model(str(saved_model))
        model = self.quantized(converted, run)
        ir = folder / "openvino"
        ir.mkdir()
        openvino.save_model(model, str(ir / IR_NAME), compress_to_fp16=False)
        return ir

    def quantized(self, model, run):
        return model

    def predictor(self, path: Path, threads: int):
        from zoo.extraction.engines.openvino_engine import import_openvino

        openvino = import_openvino()
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(str(path / IR_NAME)),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                # f32 for what is not int8: no bf16 on a CPU with AMX, so figures hold across CPUs
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
        request = compiled.create_infer_request()

        def predict(pixels: np.ndarray) -> np.ndarray:
            request.infer({0: pixels})
            return request.get_output_tensor(0).data.copy()

        return predict


class OpenVinoInt8(OpenVinoTarget):
    name = "openvino-int8"
    calibration_images = 25  # int8 within 0.4 points of float on the demo, half of 100's CPU

    def available(self) -> str | None:
        if importlib.util.find_spec("nncf") is None:
            return "it quantizes with NNCF, which is not installed (pip install nncf)"
        return super().available()

    def quantized(self, model, run):
        import nncf

        from zoo.runs.export import calibration_sample

        sample = calibration_sample(run, self.calibration_images)
        return nncf.quantize(model, nncf.Dataset(sample), subset_size=len(sample))


@zoo.hookimpl
def register_deploy_targets(register):
    register(OpenVinoTarget())
    register(OpenVinoInt8())
