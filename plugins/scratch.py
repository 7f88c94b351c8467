"""The from-scratch baseline: a small CNN with no pretrained weights, trained end to end.

It is registered like any backbone so the comparison table shows what pretrained features buy.
"""

import zoo


def make_small_cnn(backbone: zoo.Backbone, trainable: bool):
    """Three strided conv blocks and global pooling: cheap on a CPU even at 224x224."""
    import tf_keras as keras

    height, width = backbone.input_size
    layers = [keras.layers.InputLayer(input_shape=(height, width, 3))]
    for filters in (16, 32, backbone.feature_dim):
        layers += [
            keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
        ]
    layers.append(keras.layers.GlobalAveragePooling2D())
    model = keras.Sequential(layers, name=backbone.name)
    model.trainable = trainable
    return model


@zoo.hookimpl
def register_backbones(registry, register):
    for entry in registry.for_plugin("scratch"):
        register(zoo.Backbone.from_entry(entry, make_layer=make_small_cnn))
