"""The OpenVINO engine: the backbone converted once to OpenVINO IR, compiled for this CPU.

What is converted is the uint8 tf.function over the tf_keras extractor, so the backbone's
preprocessing is inside the IR and both engines compute the same function. The IR is kept in
ZOO_HOME/engines/openvino/, one folder per model key, OpenVINO version and precision, written
atomically: an interrupted conversion leaves nothing a later run reads. Each precision is
converted afresh: compiling one converted model for fp32 and then for bf16 gave bf16 features
with cosine 0.46 to fp32 (OpenVINO 2026.4), against 0.997 when compiled alone.

A conversion that fails is remembered (a `.failed` file with the reason, beside the IR folder),
so later runs fall back at once instead of trying again; a new OpenVINO version tries again. A
stored IR that no longer reads or compiles (a truncated `model.bin`, a garbled `model.xml`) is
not such a failure: it is removed and converted again, and only a fresh IR that fails is
remembered.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import sys
import uuid
from importlib import metadata
from pathlib import Path

import numpy as np

from zoo.extraction.cache import backbone_key
from zoo.extraction.engines.base import Engine, EngineUnavailable
from zoo.home import atomic_dir, atomic_write_bytes, zoo_home

# THROUGHPUT: one stream per core pair or so; each batch is split across the streams' requests.
# On the 2-core benchmark machine it beat LATENCY (one stream, all cores on one request).
PERFORMANCE_HINT = "THROUGHPUT"
INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
IR_NAME = "model.xml"
# The line OpenVINO starts its errors with, naming its own C++ source: says nothing to a user.
_SOURCE_LOCATION = re.compile(r"^(Exception from )?\S+\.(cpp|hpp|h):\d+:?$")


def import_openvino():
    """`import openvino`, with its telemetry declined.

    OpenVINO sends a usage event to Google Analytics when imported (and on each conversion) unless
    the user opted out in a file under their home. zoo sends nothing anywhere: with
    `openvino_telemetry` unimportable, OpenVINO uses its own no-op stub instead.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


@functools.cache
def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin can run natively here, e.g. ('FP32', 'BF16', 'INT8')."""
    return tuple(import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def ir_root() -> Path:
    return zoo_home() / "engines" / "openvino"


class OpenVinoEngine(Engine):
    name = "openvino"

    @classmethod
    def precisions(cls) -> tuple[str, ...]:
        return ("fp32", "bf16") if "BF16" in cpu_capabilities() else ("fp32",)

    @property
    def version(self) -> str:
        return metadata.version("openvino")

    @property
    def ir_folder(self) -> Path:
        model_key = backbone_key(self.resolved.backbone, self.resolved.folder)
        return ir_root() / f"{model_key}-openvino{self.version}-{self.precision}"

    @property
    def failure_note(self) -> Path:
        return self.ir_folder.with_name(self.ir_folder.name + ".failed")

    def known_failure(self) -> str | None:
        """Why an earlier run could not convert this backbone, if one could not."""
        with contextlib.suppress(OSError):
            return self.failure_note.read_text().strip() or "conversion failed"
        return None

    def load(self) -> None:
        reason = self.known_failure()
        if reason:
            raise EngineUnavailable(reason)
        if (self.ir_folder / IR_NAME).is_file():
            try:
                self._compile()
                return
            except Exception:  # a damaged IR on disk: this model's own conversion may be sound
                _remove(self.ir_folder)
        self._convert()
        try:
            self._compile()
        except Exception as error:  # freshly converted, but the CPU plugin refuses it
            raise self._failed("compile", error) from None

    def _convert(self) -> None:
        openvino = import_openvino()

        try:
            model = openvino.convert_model(self.resolved.uint8_function().get_concrete_function())
        except Exception as error:  # ops OpenVINO has no conversion for (tf.py_function, ...)
            raise self._failed("convert", error) from None
        with atomic_dir(self.ir_folder) as scratch:
            openvino.save_model(model, str(scratch / IR_NAME), compress_to_fp16=False)

    def _failed(self, step: str, error: Exception) -> EngineUnavailable:
        detail = _gist(str(error))
        where = f" from {self.ir_folder / IR_NAME}" if step == "compile" else ""
        reason = (
            f"OpenVINO could not {step} {self.resolved.backbone.name}{where} "
            f"({type(error).__name__}: {detail})"
        )
        atomic_write_bytes(self.failure_note, reason.encode())
        return EngineUnavailable(reason)

    def _compile(self) -> None:
        openvino = import_openvino()

        core = openvino.Core()
        model = core.read_model(str(self.ir_folder / IR_NAME))  # a fresh model per compile
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "PERFORMANCE_HINT": PERFORMANCE_HINT,
                "INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[self.precision],
            },
        )
        requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self._queue = openvino.AsyncInferQueue(compiled, requests)
        self._queue.set_callback(self._collect)
        self._parts: dict[int, np.ndarray] = {}

    def _collect(self, request, index: int) -> None:
        self._parts[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """One batch, split across the compiled model's parallel requests (one per stream)."""
        parts = [part for part in np.array_split(pixels, len(self._queue)) if len(part)]
        self._parts.clear()
        for index, part in enumerate(parts):
            self._queue.start_async(np.ascontiguousarray(part), index)
        self._queue.wait_all()
        return np.concatenate([self._parts[index] for index in range(len(parts))])


def _remove(folder: Path) -> None:
    """Delete an IR folder; renamed first under a `.tmp-` name that nothing reads."""
    aside = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)


def _gist(message: str) -> str:
    """The informative line of an OpenVINO error: its summary (`-- No conversion rule found for
    operations: EagerPyFunc`) rather than the C++ source location it starts with."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    located = [line for line in lines if not _SOURCE_LOCATION.match(line)]
    lines = located or lines
    summary = [line.removeprefix("-- ") for line in lines if line.startswith("-- ")]
    return (summary or lines or [""])[0][:200]
