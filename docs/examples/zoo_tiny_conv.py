"""An example zoo plugin: a backbone converted from a weights file with `build_savedmodel`.

The weights are a NumPy file beside this one (one 3x3 convolution, 3 -> 8 channels). A real
converter reads another framework's checkpoint the same way (zoo's own EfficientNet-Lite plugin
reads PyTorch state dicts) and writes the same kind of SavedModel.

Try it: ZOO_PLUGINS=docs/examples/zoo_tiny_conv.py zoo pull tiny_conv
"""

from pathlib import Path

import numpy as np

import zoo

WEIGHTS = Path(__file__).with_name("tiny_conv.npz")


def build_savedmodel(folder: Path) -> None:
    """Write the backbone as a TF2 SavedModel into `folder` (zoo makes the write atomic).

    The contract zoo relies on:
    - input: float32 images [batch, height, width, 3] at the Backbone's `input_size`, already
      preprocessed as the Backbone declares (here `input_range` [0, 1]: pixel / 255);
    - output: float32 feature vectors [batch, feature_dim];
    - zoo loads the folder with `hub.KerasLayer`, which calls the object's `__call__(images)`
      (with `training=True|False` when the function accepts it). Listing `variables`,
      `trainable_variables` and `regularization_losses` (TF Hub's Reusable SavedModel API) lets
      fine-tuning train the weights; without them the backbone still works frozen.
    """
    import tensorflow as tf

    with np.load(WEIGHTS) as weights:
        kernel, bias = weights["kernel"], weights["bias"]  # [3, 3, 3, 8] and [8]

    class TinyConv(tf.Module):
        # tf.Module's own `variables` is a read-only property: class attributes shadow it, so
        # the lists set below are saved for hub.KerasLayer to find.
        variables = trainable_variables = regularization_losses = None

        def __init__(self):
            super().__init__(name="tiny_conv")
            self.kernel = tf.Variable(kernel, name="kernel")
            self.bias = tf.Variable(bias, name="bias")
            self.variables = [self.kernel, self.bias]
            self.trainable_variables = [self.kernel, self.bias]
            self.regularization_losses = []

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            features = tf.nn.relu(tf.nn.conv2d(images, self.kernel, 1, "SAME") + self.bias)
            return tf.reduce_mean(features, axis=[1, 2])  # global average pooling

    tf.saved_model.save(TinyConv(), str(folder))


@zoo.hookimpl
def register_backbones(register):
    register(
        zoo.Backbone(
            name="tiny_conv",
            handle="zoo:tiny_conv",  # zoo:NAME: built locally by build_savedmodel, once
            input_size=(32, 32),
            input_range=(0.0, 1.0),
            feature_dim=8,
            description="A 3x3 convolution converted from tiny_conv.npz (an example).",
            build_savedmodel=build_savedmodel,
        )
    )
