"""The benchmark test bed's plugin: taps and input sizes of the converted EfficientNet-Lite."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "benchmarks" / "testbed" / "plugin.py"


def load_testbed_plugin():
    spec = importlib.util.spec_from_file_location("testbed_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_handles_name_the_variant_and_the_tap():
    plugin = load_testbed_plugin()
    assert plugin.parse_handle("zoo:testbed_lite0") == ("efficientnet_lite0", None)
    assert plugin.parse_handle("zoo:testbed_lite2_upto10") == ("efficientnet_lite2", 10)
    assert plugin.tap_width("efficientnet_lite0", 4) == 40
    assert plugin.tap_width("efficientnet_lite0", None) == 1280
    with pytest.raises(Exception, match="expected zoo:testbed_liteN"):
        plugin.parse_handle("zoo:testbed_lite7")


def test_one_conversion_serves_every_input_size(tmp_path):
    """A tap's SavedModel takes images of any size and gives the tap's width; the registry's
    feature_dim for every test-bed entry is what the plugin builds."""
    import tensorflow as tf
    import tomllib

    plugin = load_testbed_plugin()
    plugin.export_tapped(tmp_path / "upto4", "zoo:testbed_lite0_upto4")
    model = tf.saved_model.load(str(tmp_path / "upto4"))
    for size in (32, 96):
        features = model(tf.zeros([2, size, size, 3]), False).numpy()
        assert features.shape == (2, 40) and np.isfinite(features).all()
    registry = tomllib.loads((PLUGIN.parent / "registry.toml").read_text())["backbones"]
    assert len(registry) >= 10
    for name, entry in registry.items():
        assert plugin.tap_width(*plugin.parse_handle(entry["handle"])) == entry["feature_dim"], name
