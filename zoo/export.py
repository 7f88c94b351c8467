"""A run's saved model: the full image-to-class model as a plain SavedModel.

`serving_default(pixels) -> probabilities` loads with `tf.saved_model.load` alone: no zoo, no hub
cache. In feature-extraction runs only the head differs from one run to the next, so the full
model is exported once per backbone and class count (a *template*, kept in ZOO_HOME/serving/) and
each run copies it with its own head values written into the variables. A warm run then never
loads the backbone: the export took ~2 s of a ~4 s run, the copy takes ~0.1 s.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.home import atomic_dir, zoo_home

# Bump when export_classifier changes what it writes: templates of the old layout are not reused.
EXPORT_VERSION = 1
HEAD_KERNEL = "head_kernel/.ATTRIBUTES/VARIABLE_VALUE"
HEAD_BIAS = "head_bias/.ATTRIBUTES/VARIABLE_VALUE"


def export_classifier(model: Any, folder: Path) -> None:
    """Save `model` (pixels in, probabilities out) as a plain SavedModel in `folder`.

    The module tracks the model's variables, not the Keras model itself: Keras's own SavedModel
    serialisation traces every layer and took 2-4 s for EfficientNet-Lite0; this takes ~1 s. The
    head's kernel and bias are tracked by name, so a copy can be given another head (with_head).
    """
    import tensorflow as tf

    height, width = model.input_shape[1:3]
    head = model.get_layer("output_layer")
    head_ids = {id(head.kernel), id(head.bias)}
    module = tf.Module()
    module.body_weights = [w for w in model.weights if id(w) not in head_ids]
    module.head_kernel, module.head_bias = head.kernel, head.bias

    @tf.function(
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")]
    )
    def serve(pixels):
        return {"probabilities": model(pixels, training=False)}

    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})


def serving_template(key: str, num_classes: int, build_model: Callable[[], Any]) -> Path:
    """The exported full model for backbone `key` and `num_classes`, built on first use.

    `build_model` returns the frozen backbone + head model; it is only called (and the backbone
    only loaded) when no template exists yet. Any head will do: each run writes its own.
    """
    folder = zoo_home() / "serving" / f"{key}-{num_classes}classes-v{EXPORT_VERSION}"
    if not folder.is_dir():  # atomic_dir: a folder that exists is complete
        with atomic_dir(folder) as scratch:
            export_classifier(build_model(), scratch)
    return folder


def save_with_head(
    key: str,
    num_classes: int,
    build_model: Callable[[], Any],
    head: tuple[np.ndarray, np.ndarray],
    folder: Path,
) -> None:
    """Save the full model with `head` = (kernel, bias) into `folder`, via the template.

    A template is written atomically, so damage means a disk fault or a hand-edited cache: it is
    built afresh rather than failing every later run.
    """
    template = serving_template(key, num_classes, build_model)
    try:
        with_head(template, *head, folder)
    except Exception:  # unreadable template (OSError, IndexError, OpError...); a real fault recurs
        shutil.rmtree(template, ignore_errors=True)
        with_head(serving_template(key, num_classes, build_model), *head, folder)


def with_head(template: Path, kernel: np.ndarray, bias: np.ndarray, folder: Path) -> None:
    """Copy the SavedModel `template` into `folder` with its head variables set to kernel, bias.

    The graph is the same for every head of one shape, so only the variables are rewritten.
    fingerprint.pb is left out: it hashes the template's variables, not these.
    """
    import tensorflow as tf

    shutil.copytree(
        template,
        folder,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("variables", "fingerprint.pb"),
    )
    reader = tf.train.load_checkpoint(str(template / "variables" / "variables"))
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_dtype_map()}
    for name, value in ((HEAD_KERNEL, kernel), (HEAD_BIAS, bias)):
        if tensors[name].shape != value.shape:
            raise ValueError(
                f"head {name} has shape {value.shape}, the model {tensors[name].shape}"
            )
        tensors[name] = value.astype(tensors[name].dtype)
    (folder / "variables").mkdir(exist_ok=True)
    tf.raw_ops.SaveV2(
        prefix=str(folder / "variables" / "variables"),
        tensor_names=list(tensors),
        shape_and_slices=[""] * len(tensors),
        tensors=[tf.constant(value) for value in tensors.values()],
    )
