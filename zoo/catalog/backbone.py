"""The Backbone spec: everything zoo needs to know to build and feed one pretrained model.

Preprocessing travels with the spec, never in the caller's head (timm's `pretrained_cfg`):
how an image is resized and cropped to the input size, then how its raw 0..255 pixels become
the values the network expects. `Backbone.preprocessing` gives it as one `Preprocessing` value,
which the decoder, every exported model and the feature-cache key all use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.catalog.preprocessing import Preprocessing, range_as_mean_std
from zoo.catalog.registry import FIELDS, Entry, entry_problem
from zoo.errors import RegistryError

# Writes a hub-format SavedModel into the folder it is given (zoo makes that write atomic).
BuildSavedModel = Callable[[Path], None]
# Returns a tf_keras layer mapping preprocessed images to features; for backbones that are no SavedModel.
MakeLayer = Callable[["Backbone", bool], Any]


@dataclass(frozen=True)
class Backbone:
    name: str
    handle: str
    input_size: tuple[int, int]
    feature_dim: int
    # Values: either input_range (the short form) or per-channel mean and std; neither is [0, 1].
    input_range: tuple[float, float] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: str = "RGB"
    # Geometry.
    interpolation: str = "bilinear"
    crop_fraction: float = 1.0
    # The plugin that registered it: zoo sets this to the registering plugin's name.
    plugin: str = ""
    family: str = ""
    params_m: float | None = None
    imagenet_top1: float | None = None
    paper: str = ""
    description: str = ""
    pretrained: bool = True
    # From the model's documentation page, where the catalogue read it.
    pretrained_on: str = ""
    fine_tunable: bool | None = None
    doc: str = ""
    fallback_handles: tuple[str, ...] = ()
    # For `zoo:NAME` handles: how the plugin builds the SavedModel locally (e.g. from other weights).
    build_savedmodel: BuildSavedModel | None = field(default=None, compare=False, repr=False)
    # Bump it when what `build_savedmodel` makes changes in a way its own source does not show
    # (a helper it calls, the weights file it reads): zoo rebuilds a SavedModel whose build differs.
    build_version: str = ""
    # For backbones that are not a SavedModel at all (the from-scratch baseline).
    make_layer: MakeLayer | None = field(default=None, compare=False, repr=False)
    # zoo sets this: the registry file whose entry declares feature_dim, "" when the plugin's
    # code does (a fix is asked of whichever it is).
    feature_dim_from: str = field(default="", compare=False, repr=False)
    # zoo sets this: the registering plugin's version (a new version rebuilds what it builds).
    plugin_version: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        """The registry's checks, for a backbone a plugin builds in code."""
        table = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in vars(self).items()
            if key in FIELDS and key != "plugin" and value is not None  # zoo sets the plugin
        }
        problem = entry_problem(self.name, table, required=("handle", "input_size", "feature_dim"))
        if problem:
            raise RegistryError(f"backbone {self.name!r}: {problem}")

    @classmethod
    def from_entry(cls, entry: Entry, **overrides: Any) -> Backbone:
        """Build a spec from a validated registry entry; a plugin adds what TOML cannot hold."""
        facts = {key: tuple(v) if isinstance(v, list) else v for key, v in entry.fields.items()}
        return cls(name=entry.name, **{**facts, **overrides})

    @property
    def preprocessing(self) -> Preprocessing:
        if self.mean is not None:
            mean, std = self.mean, self.std
        else:
            mean, std = range_as_mean_std(*(self.input_range or (0.0, 1.0)))
        return Preprocessing(
            input_size=tuple(self.input_size),
            interpolation=self.interpolation,
            crop_fraction=float(self.crop_fraction),
            channel_order=self.channel_order,
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
        )

    @property
    def handles(self) -> tuple[str, ...]:
        """Every handle to try, in order."""
        return (self.handle, *self.fallback_handles)

    def wrong_width(self, actual: int) -> str:
        """The one line for a model that gives `actual` features, not the declared feature_dim."""
        if self.feature_dim_from:
            where, fix = "the registry", "in its registry entry"
        else:
            where, fix = f"plugin {self.plugin!r}'s code", "in the plugin code"
        return (
            f"{self.name}: {where} declares feature_dim = {self.feature_dim}, but the model "
            f"gives {actual} features; set feature_dim = {actual} {fix}"
        )

    @property
    def trains_end_to_end(self) -> bool:
        """A backbone without pretrained weights has nothing to freeze: it always trains fully."""
        return not self.pretrained

    def facts(self) -> dict[str, Any]:
        """JSON-ready description for `zoo list --json` and `zoo show`."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "family": self.family,
            "handle": self.handle,
            "fallback_handles": list(self.fallback_handles),
            "input_size": list(self.input_size),
            "input_range": None if self.mean is not None else list(self.input_range or (0.0, 1.0)),
            "preprocessing": self.preprocessing.facts(),
            "feature_dim": self.feature_dim,
            "params_m": self.params_m,
            "imagenet_top1": self.imagenet_top1,
            "pretrained": self.pretrained,
            "pretrained_on": self.pretrained_on,
            "fine_tunable": self.fine_tunable,
            "doc": self.doc,
            "paper": self.paper,
            "description": self.description,
        }
