"""The docs' examples run as written: the plugin guide's plugin and the notebook example."""

import dataclasses
import re
from pathlib import Path

import numpy as np
from conftest import TINY_FEATURES, TINY_INPUT, plant_demo_slice

from zoo.catalog.plugins import load_catalog

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_example_plugin_adds_its_backbone(monkeypatch, tiny_savedmodel):
    from zoo.extraction.layers import check_feature_size

    monkeypatch.setenv("ZOO_PLUGINS", str(DOCS / "examples" / "zoo_inception.py"))
    catalog = load_catalog()
    assert catalog.problems == []
    inception = catalog.get("inception_v3")
    assert inception.input_size == (299, 299) and inception.feature_dim == 2048
    assert catalog.plugins.versions["zoo_inception"] == "local"
    # The spec it registers builds like any backbone (here over a local stand-in SavedModel).
    local = dataclasses.replace(
        inception,
        handle=str(tiny_savedmodel),
        fallback_handles=(),
        input_size=(TINY_INPUT, TINY_INPUT),
        feature_dim=TINY_FEATURES,
    )
    check_feature_size(local)


def test_plugin_guide_shows_the_example_verbatim():
    example = (DOCS / "examples" / "zoo_inception.py").read_text()
    guide = (DOCS / "writing-plugins.md").read_text()
    code = example[example.index("import zoo") :].strip()
    assert code in guide


def test_engine_example_is_shown_verbatim_and_runs(monkeypatch, tiny_registry, tiny_images):
    import zoo

    example = (DOCS / "examples" / "zoo_cpu_engine.py").read_text()
    guide = (DOCS / "writing-plugins.md").read_text()
    assert example[example.index("import zoo") :].strip() in guide
    monkeypatch.setenv("ZOO_PLUGINS", str(DOCS / "examples" / "zoo_cpu_engine.py"))
    (result,) = zoo.run(["tiny"], data=tiny_images, engine="tensorflow-cpu", epochs=1).results
    assert result.ok, result.reason
    assert result.engine.startswith("tensorflow-cpu ") and result.computed_features == 45


def test_notebook_example_runs_end_to_end_on_the_real_demo_path(zoo_home, capsys):
    """The one end-to-end test: real EfficientNet-Lite0 weights, real demo images (a slice)."""
    plant_demo_slice(zoo_home, train_per_class=6, test_per_class=4)
    text = (DOCS / "python-api.md").read_text()
    cells = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    for cell in cells:
        exec(compile(cell, "docs/python-api.md", "exec"), namespace)
    summary = namespace["summary"]
    lite, scratch = summary.results
    assert lite.ok and scratch.ok, (lite.reason, scratch.reason)
    assert lite.metrics["test_images"] == 40
    # 60 real training images already separate these classes well above chance (0.1).
    assert lite.metrics["accuracy"] >= 0.5
    assert namespace["trainable"] == 1280 * 10 + 10
    assert (namespace["record"].run_folder / "report" / "curves.png").is_file()
    assert np.isclose(
        sum(namespace["record"].metrics["per_class_accuracy"].values()) / 10,
        lite.metrics["accuracy"],
    )
    output = capsys.readouterr().out
    assert "efficientnet_lite0 ok" in output
    (deployed,) = namespace["deployed"].results  # the `deploy=` example: measured, int8
    assert deployed.metrics["deploy"]["tflite-int8"]["test_images"] == 40


def test_converted_backbone_example_builds_from_its_weights_file_and_runs(monkeypatch, tiny_images):
    """docs/examples/zoo_tiny_conv.py: build_savedmodel from a weights file, pulled and run."""
    import tensorflow as tf

    import zoo
    from zoo.extraction.layers import feature_extractor
    from zoo.sources.hub import resolve

    monkeypatch.setenv("ZOO_PLUGINS", str(DOCS / "examples" / "zoo_tiny_conv.py"))
    catalog = load_catalog()
    assert catalog.problems == []
    backbone = catalog.get("tiny_conv")
    assert backbone.plugin == "zoo_tiny_conv"
    folder = resolve(backbone)  # built once by the plugin, atomically
    assert (folder / "saved_model.pb").is_file()
    pixels = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    features = feature_extractor(backbone)(pixels).numpy()
    with np.load(DOCS / "examples" / "tiny_conv.npz") as weights:  # the same sums by hand
        convolved = tf.nn.conv2d(pixels / 255.0, weights["kernel"], 1, "SAME") + weights["bias"]
    expected = tf.reduce_mean(tf.nn.relu(convolved), axis=[1, 2]).numpy()
    assert np.abs(features - expected).max() <= 1e-5
    (result,) = zoo.run(["tiny_conv"], data=tiny_images, epochs=2, lr=0.05).results
    assert result.ok and result.metrics["test_images"] == 15, result.reason


def test_plugin_guide_shows_the_converted_example_verbatim():
    example = (DOCS / "examples" / "zoo_tiny_conv.py").read_text()
    guide = (DOCS / "writing-plugins.md").read_text()
    code = example[example.index("from pathlib import Path") :].strip()
    assert code in guide


def test_deploy_target_example_is_shown_verbatim_and_measures(
    monkeypatch, tiny_registry, tiny_images
):
    """docs/examples/zoo_tflite_fp32.py: a deployment target, measured like the built-ins."""
    import zoo
    from zoo.catalog.plugins import load_plugins
    from zoo.runs.deploy import deploy_runs
    from zoo.runs.store import get_run
    from zoo.runs.targets import load_targets

    example = (DOCS / "examples" / "zoo_tflite_fp32.py").read_text()
    guide = (DOCS / "writing-plugins.md").read_text()
    assert example[example.index("import zoo") :].strip() in guide
    monkeypatch.setenv("ZOO_PLUGINS", str(DOCS / "examples" / "zoo_tflite_fp32.py"))
    targets = load_targets(load_plugins())
    assert targets.problems == [] and "tflite-fp32" in targets.names
    (result,) = zoo.run(["tiny"], data=tiny_images, epochs=3, lr=0.05).results
    record = get_run(result.run_id)
    figures = deploy_runs([record], targets.chosen(["tflite-fp32"]))[result.run_id]["tflite-fp32"]
    # Float32 TFLite computes the SavedModel's function: the same answers on every test image.
    assert figures["accuracy"] == result.metrics["accuracy"] and figures["test_images"] == 15
    assert figures["size_bytes"] > 0 and figures["latency"]["1_thread"]["calls"] == 50
