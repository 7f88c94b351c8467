"""zoo: find which pretrained backbone transfers best to your images.

What a plugin needs is here, and cheap to import (no TensorFlow): `zoo.hookimpl`,
`zoo.Backbone`, `zoo.Preprocessing`, and for an extraction engine `zoo.Engine`,
`zoo.EngineUnavailable`, `zoo.ResolvedBackbone`; for a deployment target
`zoo.DeployTarget` (whose `export` gets a stored run as a `zoo.RunRecord`). The notebook API (`zoo.list_backbones`,
`zoo.create_model`, `zoo.run`) loads lazily, so that `import zoo` and the fast CLI commands
never import TensorFlow.
"""

import importlib

__version__ = "0.1.0"
API = ["create_model", "list_backbones", "run"]
# Loaded on first use, like the API: the `zoo` command's first code (zoo.launch) runs before
# anything else, so that a Ctrl-C during start-up is one line and not a traceback.
PLUGIN_NAMES = {
    "Backbone": "zoo.catalog.backbone",
    "hookimpl": "zoo.catalog.hookspecs",
    "Preprocessing": "zoo.catalog.preprocessing",
    "BackboneUnavailable": "zoo.errors",
    "WeightsError": "zoo.errors",
    "ZooError": "zoo.errors",
    "Engine": "zoo.extraction.engines.base",
    "EngineUnavailable": "zoo.extraction.engines.base",
    "ResolvedBackbone": "zoo.extraction.engines.base",
    "DeployTarget": "zoo.runs.targets",
    "RunRecord": "zoo.analysis.record",
}
__all__ = [
    "Backbone",
    "BackboneUnavailable",
    "DeployTarget",
    "Engine",
    "EngineUnavailable",
    "Preprocessing",
    "ResolvedBackbone",
    "RunRecord",
    "WeightsError",
    "ZooError",
    "hookimpl",
    *API,
]


def __getattr__(name: str):
    if name in PLUGIN_NAMES:
        return getattr(importlib.import_module(PLUGIN_NAMES[name]), name)
    if name in API:
        from zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
