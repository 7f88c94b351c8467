"""The embedded offline demo dataset: a 10-class Fashion-MNIST subset unpacked into image folders.

`demo_data_dir()` gives `<zoo_home>/demo/fashion-mnist-10pct-v1/` laid out as
`train/<class>/<index>.png` and `test/<class>/<index>.png` (28x28 8-bit grayscale; `<index>` is
the image's index in the official Fashion-MNIST split). It is built once, atomically, from the npz
shipped in `zoo.demo_data`; see zoo/demo_data/LICENSE-fashion-mnist.txt and
scripts/make_demo_dataset.py.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.home import atomic_dir, zoo_home

DEMO_NAME = "fashion-mnist-10pct-v1"
_NPZ = "fashion_mnist_demo.npz"


def demo_data_dir() -> Path:
    """Return the demo dataset's folder, unpacking it from the package data on first use."""
    final = zoo_home() / "demo" / DEMO_NAME
    if final.is_dir():
        return final
    data = resources.files("zoo.demo_data").joinpath(_NPZ).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays, atomic_dir(final) as scratch:
        class_names = [str(name) for name in arrays["class_names"]]
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            for name in class_names:
                (scratch / split / name).mkdir(parents=True)
            for image, label, index in zip(images, labels, arrays[f"{split}_indices"], strict=True):
                path = scratch / split / class_names[int(label)] / f"{int(index)}.png"
                Image.fromarray(image).save(path)
    return final
