"""The test bed's backbones: EfficientNet-Lite0/1/2 at any input size, and feature taps from
their intermediate blocks (zoo plugin, loaded with ZOO_PLUGINS=benchmarks/testbed/plugin.py).

Handles name what is built, in converted/ under the handle's name:
- `zoo:testbed_liteN`: Lite N's 1280 pooled features, traced for any image size, so every input
  size of one variant shares one conversion (the registry's `input_size` decides what the
  decoder feeds it; the feature cache and OpenVINO's IR stay keyed by that preprocessing).
- `zoo:testbed_liteN_uptoK`: the average-pooled output of blocks 0..K (no head conv): a weaker,
  narrower representation of the same network (e.g. Lite0 up to block 4: 40 features).

Registered for the registry entries whose plugin is `testbed` (benchmarks/testbed/registry.toml),
never the user's registry.
"""

from __future__ import annotations

import functools
import re

from zoo_plugins import efficientnet_lite as lite

import zoo

HANDLE = re.compile(r"zoo:testbed_(?P<variant>lite[012])(?:_upto(?P<upto>\d+))?$")


def parse_handle(handle: str) -> tuple[str, int | None]:
    """(variant name, last block kept or None for the whole network)."""
    match = HANDLE.match(handle)
    if not match:
        raise zoo.WeightsError(
            f"testbed handle {handle!r}: expected zoo:testbed_liteN or zoo:testbed_liteN_uptoK"
        )
    upto = match["upto"]
    return f"efficientnet_{match['variant']}", None if upto is None else int(upto)


def tap_width(variant: str, upto: int | None) -> int:
    """The number of features a tap gives: the head's 1280, or block `upto`'s output channels."""
    if upto is None:
        return lite.FEATURE_DIM
    return lite._block_specs(lite.VARIANTS[variant])[upto][-1]


def export_tapped(out_dir, handle: str) -> None:
    """Write the hub-format SavedModel for `handle`: float images of any size -> features."""
    import tensorflow as tf

    from zoo.sources.torch_pickle import read_state_dict

    variant, upto = parse_handle(handle)
    weights_path = lite.default_weights_path(variant)
    state = read_state_dict(weights_path, hint=lite.reinstall_hint(lite.VARIANTS[variant]))
    base = lite._classes()[1](lite._Weights(state, weights_path, lite.VARIANTS[variant]), False)

    class Tapped(tf.Module):
        variables = trainable_variables = regularization_losses = None

        def __init__(self):
            super().__init__(name=f"testbed_{variant}")
            self.base = base
            self.variables = list(base.variables)
            self.trainable_variables = list(base.trainable_variables)
            self.regularization_losses = []

        @tf.function(autograph=False)
        def __call__(self, images, training=False):
            if upto is None:
                return base(images, training)
            x = base.stem(images, training)
            kept = list(zip(base.blocks, base.residual, strict=True))[: upto + 1]
            for layers, residual in kept:
                y = x
                for layer in layers:
                    y = layer(y, training)
                x = x + y if residual else y
            return tf.reduce_mean(x, axis=[1, 2])

    module = Tapped()
    images = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    for training in (False, True):
        module.__call__.get_concrete_function(images, training=training)
    tf.saved_model.save(module, str(out_dir))


@zoo.hookimpl
def register_backbones(registry, register):
    for entry in registry.for_plugin("testbed"):
        build = functools.partial(export_tapped, handle=entry.fields["handle"])
        register(zoo.Backbone.from_entry(entry, build_savedmodel=build))
