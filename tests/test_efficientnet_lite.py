"""EfficientNet-Lite from PyTorch weights: the restricted reader, the export, its predictions."""

from __future__ import annotations

import collections
import os
import pickle
import re
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import zoo_plugins.efficientnet_lite as lite
from PIL import Image

from zoo.errors import WeightsError
from zoo.sources.torch_pickle import read_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
DAISY, BEE, BELL_COTE, PALACE = 985, 309, 442, 698


@pytest.fixture(scope="module")
def weights_path() -> Path:
    return lite.default_weights_path()


@pytest.fixture(scope="module")
def feature_model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lite") / "features"
    lite.export_savedmodel(out)
    return out


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lite") / "classifier"
    lite.export_savedmodel(out, include_top=True)
    return out


def _sample_image(name: str, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    pixels = Image.fromarray(load_sample_image(name)).resize(size, Image.BILINEAR)
    return (np.asarray(pixels, np.float32) - 127.0) / 128.0


# ---- the exported SavedModel -------------------------------------------------------------------
def test_openvino_fp32_features_match_tensorflow(feature_model_dir):
    """The OpenVINO engine computes TensorFlow's features: max abs difference under 1e-4
    (features range 0..6; 1.4e-5 measured), on photos and on noise."""
    import tensorflow_hub as hub
    from sklearn.datasets import load_sample_image

    from zoo.catalog.plugins import load_catalog
    from zoo.extraction.engines import ResolvedBackbone
    from zoo.extraction.engines.openvino_engine import OpenVinoEngine
    from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine

    photos = [
        np.asarray(Image.fromarray(load_sample_image(name)).resize((224, 224), Image.BILINEAR))
        for name in ("china.jpg", "flower.jpg")
    ]
    noise = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), np.uint8)
    pixels = np.concatenate([np.stack(photos), noise])
    resolved = ResolvedBackbone(
        load_catalog().get("efficientnet_lite0"),
        feature_model_dir,
        loaded_layer=hub.KerasLayer(str(feature_model_dir), name="feature_extraction_layer"),
    )
    features = {}
    for engine in (TensorFlowEngine(resolved), OpenVinoEngine(resolved, "fp32")):
        engine.load()
        features[engine.name] = engine(pixels)
    assert features["openvino"].shape == (5, lite.FEATURE_DIM)
    assert np.abs(features["openvino"] - features["tensorflow"]).max() < 1e-4
    assert features["tensorflow"].max() > 1  # real activations, not a degenerate output


def test_feature_vector_through_hub_keras_layer(feature_model_dir):
    import tensorflow_hub as hub
    import tf_keras

    model = tf_keras.Sequential(
        [
            tf_keras.Input(shape=(224, 224, 3)),
            hub.KerasLayer(str(feature_model_dir), trainable=False),
        ]
    )
    images = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    features = model(images).numpy()
    assert features.shape == (2, lite.FEATURE_DIM)
    assert np.all(np.isfinite(features)) and np.all(features >= 0)  # pooled ReLU6 outputs


def test_fine_tuning_trains_weights_and_batchnorm_statistics(feature_model_dir):
    import tensorflow_hub as hub
    import tf_keras

    layer = hub.KerasLayer(str(feature_model_dir), trainable=True)
    model = tf_keras.Sequential(
        [tf_keras.Input(shape=(224, 224, 3)), layer, tf_keras.layers.Dense(2)]
    )
    assert len(layer.trainable_weights) == 147 and len(layer.non_trainable_weights) == 98
    moving_mean = next(w for w in layer.non_trainable_weights if "moving_mean" in w.name)
    kernel = layer.trainable_weights[0]
    before_mean, before_kernel = moving_mean.numpy().copy(), kernel.numpy().copy()
    model.compile(
        tf_keras.optimizers.SGD(0.01),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images = np.stack([_sample_image("flower.jpg"), _sample_image("china.jpg")])
    model.fit(images, np.array([0, 1]), epochs=1, verbose=0)
    assert not np.allclose(moving_mean.numpy(), before_mean)
    assert not np.allclose(kernel.numpy(), before_kernel)


def test_imagenet_predictions_are_right(classifier_dir):
    import tensorflow as tf

    model = tf.saved_model.load(str(classifier_dir))
    images = np.stack([_sample_image("flower.jpg"), _sample_image("china.jpg")])
    logits = model(tf.constant(images)).numpy()
    assert logits.shape == (2, 1000)
    flower_top5, china_top5 = (list(np.argsort(-row)[:5]) for row in logits)
    # flower.jpg is a daisy-like flower: 'daisy' is top-1 (~15%, then 'bee').
    assert flower_top5[0] == DAISY
    # china.jpg is a Chinese temple: 'bell cote' ranks first, 'palace' is in the top 5.
    assert china_top5[0] == BELL_COTE and PALACE in china_top5


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_variants_predict_imagenet_classes(name):
    """Lite1/Lite2 scale widths and depths; wrong scaling fails the shape check, wrong
    preprocessing or wiring fails these predictions (traced module only: no export, ~5 s each)."""
    import tensorflow as tf

    size = lite.VARIANTS[name].input_size
    model = lite.build_module(name, include_top=True)
    images = np.stack([_sample_image("flower.jpg", size), _sample_image("china.jpg", size)])
    flower_top5, china_top5 = (
        list(np.argsort(-row)[:5]) for row in model(tf.constant(images)).numpy()
    )
    # The larger models see the flower as daisy (Lite1) or bee and honeycomb (Lite2).
    assert {DAISY, BEE} & set(flower_top5)
    # Both rank 'palace' first for the temple, with 'bell cote' in the top 5.
    assert china_top5[0] == PALACE and BELL_COTE in china_top5


def test_weights_of_another_variant_are_refused(tmp_path):
    with pytest.raises(WeightsError, match=r"is not efficientnet_lite1 \(_blocks\.3\._depthwise"):
        lite.build_module("efficientnet_lite1", weights_path=lite.default_weights_path())


# ---- the restricted reader ---------------------------------------------------------------------


def test_real_weights_read_without_torch(weights_path):
    state = read_state_dict(weights_path)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist; reinstall"):
        read_state_dict(tmp_path / "nope.pth")


@pytest.mark.parametrize("keep", [0, 10, 5000, 9_000_000])  # magic, main pickle, storage bytes
def test_truncated_file(tmp_path, weights_path, keep):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(weights_path.read_bytes()[:keep])
    expected = re.escape(str(cut)) + ".*(truncated or corrupt|wrong magic)"
    with pytest.raises(WeightsError, match=expected) as error:
        read_state_dict(cut)
    assert "\n" not in str(error.value)


def test_not_a_legacy_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"PK\x03\x04 a zip-format checkpoint")
    with pytest.raises(WeightsError, match="wrong magic number"):
        read_state_dict(path)


class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_plain_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_RunsShell(marker), protocol=2))
    expected = r"references (posix|os|nt)\.system, which is not tensor data"
    with pytest.raises(WeightsError, match=expected):
        read_state_dict(path)
    assert not marker.exists()


# A legacy-format writer, to craft files torch would write: fake `torch` modules let pickle emit
# the same GLOBAL opcodes (torch._utils._rebuild_tensor_v2, torch.FloatStorage) without torch.


class _StorageRef:
    def __init__(self, key: str, values: np.ndarray):
        self.key, self.values = key, values


class _TensorDesc:
    def __init__(self, rebuild, storage, offset, size, stride):
        self.args = (rebuild, storage, offset, size, stride)

    def __reduce__(self):
        rebuild, storage, offset, size, stride = self.args
        return (rebuild, (storage, offset, size, stride, False, collections.OrderedDict()))


@pytest.fixture
def write_legacy(monkeypatch):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    float_storage = type("FloatStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = (
        float_storage,
        utils,
        _rebuild_tensor_v2,
    )
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    def write(path: Path, state: dict, storages: list[_StorageRef], extra=None) -> Path:
        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    return ("storage", float_storage, obj.key, "cpu", obj.values.size, None)
                return None

        with path.open("wb") as f:
            for header in (
                LEGACY_MAGIC,
                1001,
                {
                    "protocol_version": 1001,
                    "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4},
                },
            ):
                pickle.dump(header, f, protocol=2)
            main = {name: _TensorDesc(_rebuild_tensor_v2, *desc) for name, desc in state.items()}
            Pickler(f, protocol=2).dump(collections.OrderedDict(main, **(extra or {})))
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                f.write(struct.pack("<q", s.values.size) + s.values.astype("<f4").tobytes())
        return path

    return write


def test_strided_and_offset_tensors_share_a_storage(tmp_path, write_legacy):
    storage = _StorageRef("0", np.arange(12, dtype=np.float32))
    path = write_legacy(
        tmp_path / "views.pth",
        {
            "matrix": (storage, 0, (3, 4), (4, 1)),
            "transposed": (storage, 0, (4, 3), (1, 4)),
            "tail": (storage, 10, (2,), (1,)),
        },
        [storage],
    )
    state = read_state_dict(path)
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(state["matrix"], matrix)
    np.testing.assert_array_equal(state["transposed"], matrix.T)
    np.testing.assert_array_equal(state["tail"], [10, 11])


def test_tensor_reaching_past_its_storage_is_refused(tmp_path, write_legacy):
    storage = _StorageRef("0", np.zeros(4, dtype=np.float32))
    path = write_legacy(tmp_path / "overrun.pth", {"x": (storage, 2, (4,), (1,))}, [storage])
    with pytest.raises(WeightsError, match="corrupt"):
        read_state_dict(path)


def test_legacy_file_calling_os_system_is_refused(tmp_path, write_legacy):
    marker = tmp_path / "payload-ran"
    storage = _StorageRef("0", np.zeros(4, dtype=np.float32))
    path = write_legacy(
        tmp_path / "evil.pth",
        {"x": (storage, 0, (4,), (1,))},
        [storage],
        extra={"hook": _RunsShell(marker)},
    )
    with pytest.raises(WeightsError, match=r"system, which is not tensor data"):
        read_state_dict(path)
    assert not marker.exists()
