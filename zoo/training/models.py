"""The classifier around a backbone: the new softmax head, and the whole model (tf_keras).

Every model that holds a hub layer is built with tf_keras (Keras 2): hub.KerasLayer is a tf_keras
layer and a Keras 3 model rejects it (tensorflow/hub#903). Never mix in Keras 3 objects here.
"""

from __future__ import annotations

from typing import Any

from zoo.catalog.backbone import Backbone
from zoo.extraction import layers
from zoo.training.recipe import HeadRecipe

# The softmax layer's name in every model zoo builds: what saving, --head-from and the serving
# templates find the trained head by (through `head_layer`).
HEAD_LAYER = "output_layer"


def head_layer(model: Any) -> Any:
    """The softmax head of a model `classifier_head` or `create_model` built."""
    return model.get_layer(HEAD_LAYER)


def classifier_head(
    num_classes: int,
    feature_dim: int | None = None,
    pretrained: bool = True,
    *,
    dropout: float = 0.0,
    l2: float = 0.0,
) -> Any:
    """The new softmax layer trained on top of the features, initialised as HeadRecipe says
    (zeros on pretrained features, Glorot from scratch).

    `dropout` (on the features) and `l2` (on the kernel) only shape training (`--tune`): the
    softmax layer alone is what a saved model keeps.
    """
    keras = layers.keras_module()
    recipe = HeadRecipe(learning_rate=0.0, l2=l2, dropout=dropout)  # fit sets the rate
    dense = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=HeadRecipe.initializer(pretrained),
        kernel_regularizer=recipe.keras_regularizer(),
        name=HEAD_LAYER,
    )
    if feature_dim is None:
        return dense
    regularise = [keras.layers.Dropout(dropout, name="dropout")] if dropout else []
    return keras.Sequential(
        [keras.layers.InputLayer(input_shape=(feature_dim,)), *regularise, dense], name="head"
    )


def create_model(
    backbone: Backbone, num_classes: int, trainable: bool = False, layer: Any = None
) -> Any:
    """The classic recipe's model: frozen (or trainable) backbone + a new softmax head, uncompiled.

    Pass an already loaded backbone `layer` to avoid loading the SavedModel twice.
    """
    keras = layers.keras_module()
    return keras.Sequential(
        [
            layers.image_input(backbone),
            *layers.value_preprocessing(backbone),
            layer or layers.feature_layer(backbone, trainable=trainable),
            classifier_head(num_classes, pretrained=backbone.pretrained),
        ],
        name=backbone.name,
    )
