"""`zoo export`: a stored run's model for deployment, as a SavedModel or TFLite, with its labels.

The TFLite file keeps the run's SavedModel contract: float32 raw 0..255 pixels at the input size
in, class probabilities out (the value scaling is inside). Quantization:

- `float16`: weights stored as float16 (half the size), computed in float32;
- `int8`: weights and activations in int8, calibrated on a seeded sample of the run's training
  images; input and output stay float32, so callers feed the same pixels.

Every TFLite export is checked with the TFLite interpreter against the SavedModel on the run's
test images: the share of images where both give the same top-1 class is reported with the size.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.analysis.record import RunRecord
from zoo.catalog.preprocessing import Preprocessing
from zoo.data.decode import BadImage, load_pixels
from zoo.data.folders import ImageSet, control_characters, scan_folder
from zoo.data.layouts import recorded_layout
from zoo.errors import DataError, UsageError
from zoo.home import atomic_dir
from zoo.quiet import stderr_hidden
from zoo.reporting import Reporter
from zoo.runs.artifacts import load_serving, readable_saved_model, saved_model_folder
from zoo.runs.runner import prepared

FORMATS = ("savedmodel", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_IMAGES = 100  # the usual few hundred at most; 100 kept int8 within 1% on the demo


@dataclass
class ExportReport:
    folder: Path
    model: Path
    labels: Path
    size_bytes: int
    agreement: float | None = None  # TFLite vs SavedModel top-1, on `checked` test images
    checked: int = 0

    def facts(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "model": str(self.model),
            "labels": str(self.labels),
            "size_bytes": self.size_bytes,
            "top1_agreement": self.agreement,
            "test_images_checked": self.checked,
        }


def check_options(fmt: str, quantize: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}")
    if fmt == "savedmodel" and quantize != "none":
        raise UsageError("--quantize applies to --format tflite; a SavedModel is exported as is")


def _check_classes(record: RunRecord) -> None:
    """labels.txt holds one class a line: a name that breaks a line would shift every label after it
    (runs stored before zoo refused such class folders may hold one)."""
    for name in record.classes:
        if control_characters(name):
            raise UsageError(
                f"run {record.id}'s class {name!r} holds a control character, so "
                "labels.txt cannot list one class a line; rename the class folder and run again"
            )


def export_run(
    record: RunRecord,
    out: Path,
    fmt: str,
    quantize: str = "none",
    data: dict[str, str] | None = None,
    limit: int | None = None,
    reporter: Reporter | None = None,
) -> ExportReport:
    """Write the run's model and labels.txt into `out` (atomically); check a TFLite file.

    `data` (a `Layout.folders`: train and test folders, or a root or manifest) overrides the
    folders the run recorded; `limit` caps the test images checked.
    """
    check_options(fmt, quantize)
    _check_classes(record)
    reporter = reporter or Reporter()
    model_dir = saved_model_folder(record, "export", reporter.warning)  # written on first use
    if out.exists():
        raise UsageError(f"{out} already exists; remove it or give another --out")
    preprocessing = _geometry(record)
    if fmt == "tflite":
        train, test = run_images(record, data, reporter)
    with atomic_dir(out) as scratch:
        labels = scratch / "labels.txt"
        labels.write_text("".join(f"{name}\n" for name in record.classes))
        if fmt == "savedmodel":
            shutil.copytree(model_dir, scratch / "saved_model")
            name = "saved_model"
        else:
            calibration = None
            if quantize == "int8":
                calibration = _sample(train.paths, preprocessing, record.settings["seed"])
            with readable_saved_model(record, "export") as readable:
                converted = _convert(readable, quantize, calibration)
            (scratch / "model.tflite").write_bytes(converted)
            name = "model.tflite"
    _readable_by_all(out)
    model = out / name
    size = _size(model)
    report = ExportReport(out, model, out / "labels.txt", size)
    if fmt == "tflite":
        test = test.paths[:limit]
        with reporter.task("checking against the SavedModel", len(test)) as advance:
            report.agreement, report.checked = top1_agreement(
                load_serving(record, "export"), model, test, preprocessing, advance
            )
    return report


def _readable_by_all(out: Path) -> None:
    """Folders as `mkdir` makes them (0755), not the 0700 of a private scratch folder: an
    export is for serving, often by another user."""
    for folder in [out, *(path for path in out.rglob("*") if path.is_dir())]:
        folder.chmod(0o755)


def run_images(
    record: RunRecord, data: dict[str, str] | None = None, reporter: Reporter | None = None
) -> tuple[ImageSet, ImageSet]:
    """The run's training and test images, found again where the run recorded them (or in
    `data`, a `Layout.folders`): given split folders are scanned; a carved or listed test split
    is made again from the layout's root or manifest, by content digest as the run made it."""
    folders = data or record.settings.get("data", {})
    if not ({"train", "test"} <= set(folders) or {"root", "manifest"} & set(folders)):
        raise UsageError(
            f"run {record.id} does not record its image folders; give them with --data DIR"
        )
    if not data:
        _check_recorded_folders(record, folders)
    classes = record.classes
    layout = recorded_layout(folders)
    if layout is None:
        train = scan_folder(Path(folders["train"]))
        return train, scan_folder(Path(folders["test"]), classes=classes)
    split = record.settings.get("split", {})
    fraction, drop_leaks = split.get("test_fraction", 0.2), bool(split.get("dropped_leaks"))
    dataset, _ = prepared(layout, reporter or Reporter(), fraction, drop_leaks)
    if dataset.classes != classes:
        raise UsageError(
            f"run {record.id} had classes {', '.join(classes)}; {layout.root} now has "
            f"{', '.join(dataset.classes)}; give the run's data with --data DIR"
        )
    return dataset.train, dataset.test


def _check_recorded_folders(record: RunRecord, folders: dict[str, str]) -> None:
    """The images a run recorded may have moved since: name the folder, and --data."""
    for split, where in folders.items():
        there = Path(where).is_file() if split == "manifest" else Path(where).is_dir()
        if not there:
            name = "manifest" if split == "manifest" else f"{split} images"
            raise UsageError(
                f"run {record.id}'s {name} {'is' if split == 'manifest' else 'are'} no "
                f"longer at {where}; give the run's data folder with --data DIR"
            )


def _geometry(record: RunRecord) -> Preprocessing:
    facts = record.preprocessing
    if not facts:
        raise UsageError(f"run {record.id} predates recorded preprocessing; run it again")
    return Preprocessing(
        input_size=tuple(facts["input_size"]),
        interpolation=facts["interpolation"],
        crop_fraction=facts["crop_fraction"],
    )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _pixels(paths: list[Path], preprocessing: Preprocessing) -> Iterator[np.ndarray]:
    """[1, h, w, 3] float32 raw pixels per readable image (unreadable ones are skipped)."""
    for path in paths:
        try:
            yield load_pixels(path, preprocessing)[np.newaxis].astype(np.float32)
        except BadImage:
            continue


def _sample(
    paths: list[Path], preprocessing: Preprocessing, seed: int, images: int = CALIBRATION_IMAGES
) -> list[np.ndarray]:
    chosen = random.Random(seed).sample(paths, min(images, len(paths)))
    pixels = list(_pixels(chosen, preprocessing))
    if not pixels:
        where = paths[0].parent if paths else "the run's data"
        raise DataError(f"no readable training image in {where} to calibrate int8 with")
    return pixels


def _convert(model_dir: Path, quantize: str, calibration: list[np.ndarray] | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(model_dir))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if calibration is not None:
        converter.representative_dataset = lambda: ([pixels] for pixels in calibration)
    with _library_notes_hidden():  # int8 calibration prints `fully_quantize: 0, ...` lines
        return converter.convert()


def top1_agreement(
    serve: Any,
    tflite_file: Path,
    images: list[Path],
    preprocessing: Preprocessing,
    advance=lambda n: None,
) -> tuple[float, int]:
    """(share of images where TFLite and the SavedModel's `serve` agree on the top class, images)."""
    import tensorflow as tf

    with _library_notes_hidden():
        interpreter = tf.lite.Interpreter(model_path=str(tflite_file))
        interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    agree = seen = 0
    for pixels in _pixels(images, preprocessing):
        interpreter.set_tensor(source["index"], pixels)
        interpreter.invoke()
        lite = int(np.argmax(interpreter.get_tensor(target["index"])[0]))
        full = int(np.argmax(serve(pixels=tf.constant(pixels))["probabilities"].numpy()[0]))
        agree, seen = agree + (lite == full), seen + 1
        advance(1)
    return (agree / seen if seen else None), seen


@contextlib.contextmanager
def _library_notes_hidden() -> Iterator[None]:
    """Hide what TFLite prints on every export: the Python interpreter's 6-line deprecation
    warning and its C++ `INFO: Created TensorFlow Lite XNNPACK delegate` line."""
    with warnings.catch_warnings(), stderr_hidden():
        warnings.simplefilter("ignore")
        yield


# The steps above, for deployment targets (zoo.runs.deploy and the target plugins): one
# conversion, one calibration sample and one geometry for `zoo export` and `--deploy`.
def geometry_of(record: RunRecord) -> Preprocessing:
    """The resize and crop the run's images went through (the value scaling is in the model)."""
    return _geometry(record)


def calibration_sample(record: RunRecord, images: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """The seeded sample of the run's training images that int8 calibrates on, [1, h, w, 3] each."""
    train, _ = run_images(record)
    return _sample(train.paths, _geometry(record), record.settings["seed"], images)


def tflite_bytes(
    model_dir: Path, quantize: str, calibration: list[np.ndarray] | None = None
) -> bytes:
    """The SavedModel as a TFLite flatbuffer: none, float16 or int8 (calibrated)."""
    return _convert(model_dir, quantize, calibration)


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    return _size(path)
