"""zoo: find which pretrained backbone transfers best to your images.

What a plugin needs is here, and cheap to import (no TensorFlow): `zoo.hookimpl`,
`zoo.Backbone`, `zoo.Preprocessing`. The notebook API (`zoo.list_backbones`,
`zoo.create_model`, `zoo.run`) loads lazily, so that `import zoo` and the fast CLI commands
never import TensorFlow.
"""

from zoo.catalog.backbone import Backbone
from zoo.catalog.hookspecs import hookimpl
from zoo.catalog.preprocessing import Preprocessing
from zoo.errors import BackboneUnavailable, WeightsError, ZooError

__version__ = "0.1.0"
API = ["create_model", "list_backbones", "run"]
__all__ = [
    "Backbone",
    "BackboneUnavailable",
    "Preprocessing",
    "WeightsError",
    "ZooError",
    "hookimpl",
    *API,
]


def __getattr__(name: str):
    if name in API:
        from zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
