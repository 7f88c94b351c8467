"""The embedded Fashion-MNIST demo dataset: layout, idempotence, and reproducibility of the npz."""

from __future__ import annotations

import importlib.util
import io
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.data.demo import demo_data_dir

CLASS_NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_demo_dataset.py"
DEBIAN_SOURCE = Path("/usr/share/datasets/fashion-mnist")


def _committed() -> dict[str, np.ndarray]:
    data = resources.files("zoo.demo_data").joinpath("fashion_mnist_demo.npz").read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _load_script():
    spec = importlib.util.spec_from_file_location("make_demo_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_data_dir_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    root = demo_data_dir()
    assert root == tmp_path / "demo" / "fashion-mnist-10pct-v1"
    for split, count in (("train", 75), ("test", 250)):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == sorted(CLASS_NAMES)
        for name in CLASS_NAMES:
            pngs = list((root / split / name).glob("*.png"))
            assert len(pngs) == count, (split, name)
        with Image.open(pngs[0]) as image:
            assert image.size == (28, 28)
            assert image.mode == "L"
    assert not list((tmp_path / "demo").glob(".tmp-*"))  # no scratch folder left behind


def test_demo_data_dir_second_call_does_not_rewrite(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    first = demo_data_dir()
    sample = next((first / "train" / "bag").glob("*.png"))
    sample.write_bytes(sample.read_bytes())  # touch; a rewrite would replace this file again
    stamp = sample.stat().st_mtime_ns
    assert demo_data_dir() == first
    assert sample.stat().st_mtime_ns == stamp


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    calls = []

    def explode(array):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("disk full")
        return Image.frombytes("L", (28, 28), array.tobytes())

    monkeypatch.setattr("zoo.data.demo.Image.fromarray", explode)
    with pytest.raises(RuntimeError):
        demo_data_dir()
    assert list((tmp_path / "demo").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    assert len(list((demo_data_dir() / "test").rglob("*.png"))) == 2500


def test_png_matches_npz_pixels(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    arrays = _committed()
    root = demo_data_dir()
    label, index = int(arrays["test_labels"][0]), int(arrays["test_indices"][0])
    with Image.open(root / "test" / CLASS_NAMES[label] / f"{index}.png") as image:
        np.testing.assert_array_equal(np.asarray(image), arrays["test_images"][0])


def test_committed_arrays_are_consistent():
    arrays = _committed()
    assert list(arrays["class_names"]) == CLASS_NAMES
    assert arrays["train_images"].shape == (750, 28, 28)
    assert arrays["test_images"].shape == (2500, 28, 28)
    for split, per_class, split_size in (("train", 75, 60000), ("test", 250, 10000)):
        assert arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_labels"].dtype == np.uint8
        np.testing.assert_array_equal(
            np.bincount(arrays[f"{split}_labels"], minlength=10), [per_class] * 10
        )
        indices = arrays[f"{split}_indices"]
        assert len(np.unique(indices)) == len(indices)  # no duplicates within a split
        assert np.all(np.diff(indices) > 0)  # sorted
        assert indices.min() >= 0 and indices.max() < split_size


def test_script_reproduces_committed_arrays():
    if not (DEBIAN_SOURCE / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Debian dataset-fashion-mnist not installed ({DEBIAN_SOURCE} missing)")
    script = _load_script()
    rebuilt = script.build_subset(DEBIAN_SOURCE, script.SEED)
    committed = _committed()
    assert sorted(rebuilt) == sorted(committed)
    for key, value in committed.items():
        np.testing.assert_array_equal(rebuilt[key], value, err_msg=key)
        assert rebuilt[key].dtype == value.dtype, key
