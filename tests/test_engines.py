"""Extraction engines: registration, the choice of engine, fallback, cache keys, the IR on disk.

These use the tiny SavedModel; the OpenVINO-against-TensorFlow comparison on the real
EfficientNet-Lite0 is in test_efficientnet_lite.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_INPUT, besides_near_copies, registry_text

import zoo
from zoo.catalog.plugins import load_catalog, load_plugins
from zoo.errors import UsageError
from zoo.extraction.cache import features_key
from zoo.extraction.engines import ResolvedBackbone, load_engines, openvino_engine
from zoo.extraction.engines.openvino_engine import OpenVinoEngine, import_openvino, ir_root
from zoo.reporting import Reporter

PY_FUNCTION_MODEL = '''
import tensorflow as tf

def export(folder):
    """Like the tiny model, but through tf.py_function: TensorFlow runs it, OpenVINO cannot."""
    module = tf.train.Checkpoint()
    module.kernel = tf.Variable(tf.random.stateless_normal([48, 8], seed=[0, 7]))
    module.variables = [module.kernel]
    module.trainable_variables = [module.kernel]
    module.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def call(images):
        thumbnails = tf.reshape(tf.image.resize(images, [4, 4]), [-1, 48])
        thumbnails = tf.ensure_shape(tf.py_function(lambda t: t, [thumbnails], tf.float32), [None, 48])
        return tf.matmul(thumbnails, module.kernel)

    module.__call__ = call
    tf.saved_model.save(module, str(folder))
'''


class Warnings(Reporter):
    def __init__(self):
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


def run_tiny(data: Path, **settings):
    reporter = Warnings()
    summary = zoo.run(["tiny"], data=data, reporter=reporter, epochs=2, lr=0.05, **settings)
    (result,) = summary.results
    assert result.ok, result.reason
    return result, besides_near_copies(reporter.lines)


def resolved_tiny() -> ResolvedBackbone:
    backbone = load_catalog().get("tiny")
    return ResolvedBackbone(backbone, Path(backbone.handle))


def test_builtin_engines_are_plugins():
    engines = load_engines(load_plugins())
    assert engines.problems == []
    assert engines.names == ["openvino", "tensorflow"]


def test_auto_is_openvino_on_a_cpu_and_matches_tensorflow(tiny_registry, tiny_images):
    auto, warnings = run_tiny(tiny_images)
    assert warnings == []
    assert auto.engine.startswith("openvino ") and auto.engine.endswith(" fp32")
    (ir,) = ir_root().iterdir()  # one IR folder, whole
    assert {p.name for p in ir.iterdir()} == {"model.xml", "model.bin"}
    tensorflow, _ = run_tiny(tiny_images, engine="tensorflow")
    assert tensorflow.engine.startswith("tensorflow ")
    assert tensorflow.computed_features == 45  # its own cache entry, not OpenVINO's vectors
    assert tensorflow.metrics["accuracy"] == auto.metrics["accuracy"]


def test_feature_cache_keys_differ_per_engine_version_and_precision():
    class Engine:
        def __init__(self, name, version, precision):
            self.name, self.version, self.precision = name, version, precision

    engines = [
        Engine("tensorflow", "2.21.0", "fp32"),
        Engine("openvino", "2026.4.1", "fp32"),
        Engine("openvino", "2026.4.1", "bf16"),
        Engine("openvino", "2026.5.0", "fp32"),
    ]
    keys = {features_key("lite0-0123", engine) for engine in engines}
    assert len(keys) == len(engines)
    assert all(key.startswith("lite0-0123-") for key in keys)


def test_savedmodel_openvino_cannot_convert_falls_back_to_tensorflow_with_a_note(
    tmp_path, tiny_images, monkeypatch
):
    namespace: dict = {}
    exec(PY_FUNCTION_MODEL, namespace)
    namespace["export"](tmp_path / "py_function_model")
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(tmp_path / "py_function_model")))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    result, warnings = run_tiny(tiny_images)
    assert result.engine.startswith("tensorflow ") and result.computed_features == 45
    (warning,) = warnings
    assert "OpenVINO could not convert tiny" in warning and "EagerPyFunc" in warning
    assert warning.endswith("extracting features with tensorflow fp32 instead")
    conversions = []
    monkeypatch.setattr(OpenVinoEngine, "_convert", lambda self: conversions.append(1))
    again, warnings = run_tiny(tiny_images, seed=7)
    assert conversions == []  # the failure was remembered: no second try
    assert again.computed_features == 0  # and TensorFlow's features were found in the cache
    assert len(warnings) == 1 and "EagerPyFunc" in warnings[0]


def test_interrupted_conversion_leaves_no_ir_a_later_run_reads(
    tiny_registry, tiny_images, monkeypatch
):
    openvino = import_openvino()
    save = openvino.save_model

    def save_half_then_interrupt(model, path, **options):
        Path(path).write_text("<?xml version='1.0'?><net")  # half an IR, and no .bin
        raise KeyboardInterrupt

    monkeypatch.setattr(openvino, "save_model", save_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tiny_images)
    assert not ir_root().exists() or list(ir_root().iterdir()) == []
    monkeypatch.setattr(openvino, "save_model", save)
    result, warnings = run_tiny(tiny_images)
    assert warnings == [] and result.engine.startswith("openvino ")
    assert result.computed_features == 45


def test_bf16_is_refused_where_the_cpu_has_no_native_bf16(tiny_registry, tiny_images, monkeypatch):
    monkeypatch.setattr(openvino_engine, "cpu_capabilities", lambda: ("FP32", "INT8"))
    with pytest.raises(UsageError, match="--precision bf16 needs"):
        zoo.run(["tiny"], data=tiny_images, precision="bf16")
    with pytest.raises(UsageError, match="--precision must be one of"):
        zoo.run(["tiny"], data=tiny_images, precision="fp16")
    with pytest.raises(UsageError, match="unknown engine 'onnx'"):
        zoo.run(["tiny"], data=tiny_images, engine="onnx")


def test_bf16_engine_is_compiled_from_its_own_ir(tiny_registry, monkeypatch):
    fp32 = OpenVinoEngine(resolved_tiny(), "fp32")
    bf16 = OpenVinoEngine(resolved_tiny(), "bf16")
    assert fp32.ir_folder != bf16.ir_folder  # converted afresh per precision, never shared


ENGINE_PLUGINS = """
import numpy as np
from zoo.catalog.hookspecs import hookimpl
from zoo.extraction.engines import Engine


class Ones(Engine):
    name = "ones"
    version = "1.0"

    def __call__(self, pixels):
        return np.ones((len(pixels), self.resolved.backbone.feature_dim), np.float32)


@hookimpl
def register_engines(register):
    register("ones", Ones)
"""


def test_a_plugin_engine_is_used_and_a_raising_one_is_skipped_by_name(
    tiny_registry, tiny_images, tmp_path, monkeypatch
):
    good = tmp_path / "ones_engine.py"
    good.write_text(textwrap.dedent(ENGINE_PLUGINS))
    bad = tmp_path / "broken_engine.py"
    bad.write_text(
        "from zoo.catalog.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef register_engines(register):\n    raise RuntimeError('no engine today')\n"
    )
    monkeypatch.setenv("ZOO_PLUGINS", f"{good}:{bad}")
    engines = load_engines(load_plugins())
    assert engines.names == ["ones", "openvino", "tensorflow"]
    (problem,) = engines.problems
    assert "'broken_engine'" in problem and "no engine today" in problem
    result, warnings = run_tiny(tiny_images, engine="ones")
    assert result.engine == "ones 1.0 fp32" and result.computed_features == 45
    assert warnings == [problem]
    assert result.metrics["accuracy"] == pytest.approx(1 / 3)  # constant features: one class


def test_zoo_show_says_which_engine_a_backbone_uses(tiny_registry, tiny_images):
    from typer.testing import CliRunner

    from zoo.cli.app import app

    def shown() -> dict:
        import json

        done = CliRunner().invoke(app, ["show", "tiny", "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.output)

    before = shown()
    assert before["engine"] == "openvino fp32"
    assert before["engine_note"] == "auto: no GPU is visible; converted on first run"
    run_tiny(tiny_images)
    assert "converted at" in shown()["engine_note"]


def test_openvino_is_imported_with_its_telemetry_declined():
    """OpenVINO phones home on import unless told otherwise; zoo's import gets its no-op stub."""
    import subprocess
    import sys

    check = (
        "from zoo.extraction.engines.openvino_engine import import_openvino\n"
        "import_openvino()\n"
        "from openvino.tools.ovc import telemetry_utils\n"
        "print(telemetry_utils.tm.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "openvino.tools.ovc.telemetry_stub"


def test_engines_pixels_contract(tiny_registry):
    engine = OpenVinoEngine(resolved_tiny(), "fp32")
    engine.load()
    pixels = np.random.default_rng(0).integers(0, 256, (5, TINY_INPUT, TINY_INPUT, 3), np.uint8)
    features = engine(pixels)
    assert features.shape == (5, 8) and features.dtype == np.float32
    reference = resolved_tiny().uint8_function()(pixels).numpy()
    np.testing.assert_allclose(features, reference, rtol=1e-5, atol=1e-5)
