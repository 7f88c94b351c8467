"""zoo: find which pretrained backbone transfers best to your images.

The notebook API (`zoo.list_backbones`, `zoo.create_model`, `zoo.run`) loads lazily, so that
`import zoo` and the fast CLI commands never import TensorFlow.
"""

__version__ = "0.1.0"
__all__ = ["create_model", "list_backbones", "run"]


def __getattr__(name: str):
    if name in __all__:
        from zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
