"""TF Hub feature-vector backbones that need no code: every registry entry naming `hub`.

A family (ResNet, EfficientNet, MobileNet...) is data, the entry's `family` field, not a module.
"""

import zoo


@zoo.hookimpl
def register_backbones(registry, register):
    for entry in registry.for_plugin("hub"):
        register(zoo.Backbone.from_entry(entry))
