"""The backbone as a frozen feature extractor: raw pixels in, feature vectors out (tf_keras).

Every model that holds a hub layer is built with tf_keras (Keras 2): hub.KerasLayer is a tf_keras
layer and a Keras 3 model rejects it (tensorflow/hub#903). Never mix in Keras 3 objects here.

Each model takes raw pixels (0..255, resized and cropped to the backbone's input size by the
decoder) and applies the backbone's value preprocessing itself (channel order, mean and std), so
preprocessing travels with every saved model.
"""

from __future__ import annotations

from typing import Any

from zoo.catalog.backbone import Backbone
from zoo.errors import BackboneUnavailable
from zoo.home import pattern_free
from zoo.sources.hub import forget, resolve


def keras_module():
    import tf_keras

    return tf_keras


def feature_layer(backbone: Backbone, trainable: bool = False) -> Any:
    """The backbone as a Keras layer: hub.KerasLayer over its local SavedModel by default."""
    if backbone.make_layer is not None:
        return backbone.make_layer(backbone, trainable)
    folder = resolve(backbone)
    import tensorflow_hub as hub

    try:
        with pattern_free(folder) as readable:  # TensorFlow's variable reader globs the path
            return hub.KerasLayer(
                str(readable), trainable=trainable, name="feature_extraction_layer"
            )
    except Exception as error:  # a SavedModel that does not load is a backbone we cannot use
        for handle in backbone.handles:
            forget(handle)  # a broken download is dropped so the next try fetches it again
        raise BackboneUnavailable(
            f"{backbone.name}: {folder} does not load as a SavedModel ({type(error).__name__}); "
            "try again to download it afresh, or fix the local folder"
        ) from None


def value_preprocessing(backbone: Backbone) -> list[Any]:
    """Layers turning raw RGB pixels 0..255 into the network's input: channel order, then
    (pixel - mean) / std per channel (one multiply-add, as Keras's Rescaling)."""
    keras = keras_module()
    steps = backbone.preprocessing
    layers = []
    if steps.channel_order == "BGR":
        layers.append(keras.layers.Lambda(_reverse_channels, name="rgb_to_bgr"))
    scale = [1.0 / s for s in steps.std]
    offset = [-m / s for m, s in zip(steps.mean, steps.std)]
    layers.append(keras.layers.Rescaling(scale=scale, offset=offset, name="scale_pixels"))
    return layers


def _reverse_channels(images: Any) -> Any:
    return images[..., ::-1]


def image_input(backbone: Backbone) -> Any:
    height, width = backbone.input_size
    return keras_module().layers.InputLayer(input_shape=(height, width, 3), name="pixels")


def feature_extractor(backbone: Backbone, layer: Any = None) -> Any:
    """Raw pixels in, frozen feature vectors out (over `layer` if already loaded)."""
    keras = keras_module()
    return keras.Sequential(
        [
            image_input(backbone),
            *value_preprocessing(backbone),
            layer or feature_layer(backbone, trainable=False),
        ],
        name=f"{backbone.name}_features",
    )


def check_feature_size(backbone: Backbone) -> None:
    """Load the backbone and make sure it yields the feature size the registry declares."""
    import numpy as np

    height, width = backbone.input_size
    features = feature_extractor(backbone)(np.zeros((1, height, width, 3), "float32"))
    if features.shape[-1] != backbone.feature_dim:
        raise BackboneUnavailable(backbone.wrong_width(features.shape[-1]))
