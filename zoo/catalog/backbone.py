"""The Backbone spec: everything zoo needs to know to build and feed one pretrained model.

Preprocessing facts (input size, value range) travel with the spec, never in the caller's head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.catalog.registry import Entry

# Writes a hub-format SavedModel into the folder it is given (zoo makes that write atomic).
BuildSavedModel = Callable[[Path], None]
# Returns a tf_keras layer mapping scaled images to features; for backbones that are no SavedModel.
MakeLayer = Callable[["Backbone", bool], Any]


@dataclass(frozen=True)
class Backbone:
    name: str
    plugin: str
    handle: str
    input_size: tuple[int, int]
    input_range: tuple[float, float]
    feature_dim: int
    params_m: float | None = None
    imagenet_top1: float | None = None
    paper: str = ""
    description: str = ""
    pretrained: bool = True
    fallback_handles: tuple[str, ...] = ()
    # For `zoo:NAME` handles: how the plugin builds the SavedModel locally (e.g. from other weights).
    build_savedmodel: BuildSavedModel | None = field(default=None, compare=False, repr=False)
    # For backbones that are not a SavedModel at all (the from-scratch baseline).
    make_layer: MakeLayer | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_entry(cls, entry: Entry, **overrides: Any) -> Backbone:
        """Build a spec from a validated registry entry; a plugin adds what TOML cannot hold."""
        facts = dict(entry.fields)
        facts["input_size"] = tuple(facts["input_size"])
        facts["input_range"] = tuple(float(v) for v in facts["input_range"])
        facts["fallback_handles"] = tuple(facts.get("fallback_handles", ()))
        return cls(name=entry.name, **{**facts, **overrides})

    @property
    def handles(self) -> tuple[str, ...]:
        """Every handle to try, in order."""
        return (self.handle, *self.fallback_handles)

    @property
    def trains_end_to_end(self) -> bool:
        """A backbone without pretrained weights has nothing to freeze: it always trains fully."""
        return not self.pretrained

    def facts(self) -> dict[str, Any]:
        """JSON-ready description for `zoo list --json` and `zoo show`."""
        return {
            "name": self.name,
            "plugin": self.plugin,
            "handle": self.handle,
            "fallback_handles": list(self.fallback_handles),
            "input_size": list(self.input_size),
            "input_range": list(self.input_range),
            "feature_dim": self.feature_dim,
            "params_m": self.params_m,
            "imagenet_top1": self.imagenet_top1,
            "pretrained": self.pretrained,
            "paper": self.paper,
            "description": self.description,
        }
