"""Shared fixtures: an isolated zoo home per test, tiny SavedModel backbones and tiny registries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray reads this when imported: 0 keeps every node a test starts on 127.0.0.1 (otherwise Linux
# nodes advertise the machine's network address).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TINY_FEATURES = 8
TINY_INPUT = 32
# The backbones zoo ships in registry.toml.
SHIPPED_BACKBONES = {
    "resnet50v2",
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "scratch_cnn",
}


def run_main(args, capsys):
    """Run the real entry point (with its error handling) and return (exit code, stdout, stderr)."""
    from zoo.cli import main

    with pytest.raises(SystemExit) as exited:
        main(args)
        sys.exit(0)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.fixture(autouse=True)
def zoo_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty zoo home; nothing touches ~/.cache."""
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    for variable in ("TFHUB_CACHE_DIR", "ZOO_REGISTRY", "ZOO_PLUGINS", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(variable, raising=False)
    # Where MLflow is installed its tracker logs every run: to this test's own file store (fast),
    # never to an mlflow.db in the folder pytest was started from.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    # Engines run in this process (a child per backbone starts a fresh TensorFlow: seconds a
    # run); tests/test_extraction_process.py takes the child path, as `zoo run` does.
    monkeypatch.setenv("ZOO_EXTRACT_HERE", os.environ.get("ZOO_TEST_EXTRACT_HERE", "1"))
    # So are deployment measurements (tests/test_deploy.py takes the child path once).
    monkeypatch.setenv("ZOO_DEPLOY_HERE", "1")
    return home


def besides_near_copies(warnings: list[str]) -> list[str]:
    """The warnings but `zoo run`'s near-copy one. The tiny images are solid colours with a
    little noise, so under the tiny backbone each test image is a near-copy of training images,
    which `zoo run` rightly says once its features are cached; tests of other warnings count
    the rest (the near-copy warning has its own tests in test_data_checks.py)."""
    return [line for line in warnings if "near-cop" not in line]


def serving_model(run) -> Path:
    """A stored run's SavedModel folder (a RunResult or a record), written now if this is its
    first use, as `zoo export` and `zoo predict` write it."""
    from zoo.runs.artifacts import saved_model_folder
    from zoo.runs.store import get_run

    run_id = run.run_id if hasattr(run, "run_id") else run.id  # a RunResult, or a RunRecord
    return saved_model_folder(get_run(run_id), "export")


def export_tiny_savedmodel(folder: Path, feature_dim: int = TINY_FEATURES, seed: int = 0) -> Path:
    """A hub-format SavedModel: images -> a fixed random projection of their 4x4 thumbnails."""
    import tensorflow as tf

    module = tf.train.Checkpoint()
    module.kernel = tf.Variable(tf.random.stateless_normal([48, feature_dim], seed=[seed, 7]))
    module.variables = [module.kernel]
    module.trainable_variables = [module.kernel]
    module.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def call(images):
        thumbnails = tf.reshape(tf.image.resize(images, [4, 4]), [-1, 48])
        return tf.matmul(thumbnails, module.kernel)

    module.__call__ = call
    tf.saved_model.save(module, str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_savedmodel(tmp_path_factory) -> Path:
    return export_tiny_savedmodel(tmp_path_factory.mktemp("tiny") / "savedmodel")


def registry_text(handle: str, name: str = "tiny", plugin: str = "hub", **extra) -> str:
    fields = {
        "plugin": plugin,
        "handle": handle,
        "input_size": [TINY_INPUT, TINY_INPUT],
        "input_range": [0.0, 1.0],
        "feature_dim": TINY_FEATURES,
        **extra,
    }
    body = "\n".join(f"{key} = {_toml(value)}" for key, value in fields.items())
    return f"[backbones.{name}]\n{body}\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@pytest.fixture
def tiny_registry(tmp_path, tiny_savedmodel, monkeypatch) -> Path:
    """A registry with one tiny local backbone, made the active registry."""
    path = tmp_path / "registry.toml"
    path.write_text(registry_text(str(tiny_savedmodel)))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def write_image_folders(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """Class folders of small PNGs whose dominant colour is the class: trivially learnable."""
    import numpy as np
    from PIL import Image

    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for name, colour in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                noise = rng.integers(-25, 25, size=(TINY_INPUT, TINY_INPUT, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{name}_{index}.png")
    return root


@pytest.fixture
def tiny_images(tmp_path) -> Path:
    """data/train/<red|green|blue>/ with 10 images each, data/test/ with 5 each."""
    return write_image_folders(tmp_path / "data", {"train": 10, "test": 5})


@pytest.fixture(scope="session")
def _home_with_lite0(tmp_path_factory) -> Path:
    """A zoo home where one run has built EfficientNet-Lite0 from its packaged weights and
    converted it for the engine `auto` picks: 20-25 s, paid once a session."""
    import zoo

    home = tmp_path_factory.mktemp("home-with-lite0")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", (home / "mlruns").as_uri())
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        patch.setenv("ZOO_EXTRACT_HERE", "1")
        for variable in ("TFHUB_CACHE_DIR", "ZOO_REGISTRY", "ZOO_PLUGINS"):
            patch.delenv(variable, raising=False)
        demo = plant_demo_slice(home, train_per_class=1, test_per_class=1)
        (result,) = zoo.run(["efficientnet_lite0"], data=demo, epochs=1).results
        assert result.ok, result.reason
    return home


@pytest.fixture
def lite0_built(zoo_home, _home_with_lite0) -> Path:
    """This test's home starts as a user's second run finds it: Lite0 built and converted, no
    features cached, no runs stored. (Building it is tested in test_efficientnet_lite.py and by
    the notebook example, which starts cold.)"""
    import shutil

    for part in ("converted", "engines"):  # engines/: absent where OpenVINO is not installed
        if (_home_with_lite0 / part).is_dir():
            shutil.copytree(_home_with_lite0 / part, zoo_home / part)
    return zoo_home


def plant_demo_slice(zoo_home: Path, train_per_class: int, test_per_class: int) -> Path:
    """The real demo images, fewer of them, where zoo looks for the demo."""
    import shutil

    from zoo.data.demo import DEMO_NAME, demo_data_dir

    full = demo_data_dir()
    sliced = zoo_home / "demo" / DEMO_NAME
    staging = zoo_home / "full-demo"
    full.rename(staging)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for class_dir in sorted((staging / split).iterdir()):
            target = sliced / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:count]:
                shutil.copy(image, target / image.name)
    return sliced
