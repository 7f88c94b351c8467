"""The MobileNet family: TF Hub feature-vector backbones, loaded as a plain hub.KerasLayer."""

from zoo.catalog.backbone import Backbone
from zoo.catalog.hookspecs import hookimpl
from zoo.catalog.plugins import entries_for


@hookimpl
def register_backbones(registry, register):
    for entry in entries_for(registry, "mobilenet"):
        register(Backbone.from_entry(entry))
