"""The plugin manager, and the catalogue of backbones the plugins register.

Built-in plugins are plugins like any other; a plugin that fails to import or raises is
reported by name and skipped, so every other backbone still works.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pluggy

from zoo.catalog import hookspecs
from zoo.catalog.backbone import Backbone
from zoo.catalog.registry import Entry, load_registry
from zoo.errors import RegistryError, UsageError

DEFAULT_PLUGINS = (
    "zoo_plugins.resnet",
    "zoo_plugins.efficientnet",
    "zoo_plugins.efficientnet_lite",
    "zoo_plugins.mobilenet",
    "zoo_plugins.scratch",
)
ENTRY_POINT_GROUP = "zoo"
# os.pathsep-separated .py files to load as plugins: handy while writing one.
PLUGIN_PATHS_VARIABLE = "ZOO_PLUGINS"


@dataclass
class PluginSet:
    manager: pluggy.PluginManager
    problems: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def load_plugins(extra_paths: list[Path] | None = None) -> PluginSet:
    """A fresh plugin manager with the built-ins, installed entry points and local files."""
    manager = pluggy.PluginManager("zoo")
    manager.add_hookspecs(hookspecs)
    plugins = PluginSet(manager)
    for module_name in DEFAULT_PLUGINS:
        short_name = module_name.rsplit(".", 1)[-1]
        _register(plugins, short_name, "built-in", lambda m=module_name: importlib.import_module(m))
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        version = entry_point.dist.version if entry_point.dist else "?"
        _register(plugins, entry_point.name, version, entry_point.load)
    for path in [*_paths_from_environment(), *(extra_paths or [])]:
        _register(plugins, path.stem, "local", lambda p=path: _import_file(p))
    return plugins


def _register(plugins: PluginSet, name: str, version: str, load) -> None:
    try:
        plugins.manager.register(load(), name=name)
    except Exception as error:  # a broken plugin must not take the others down
        plugins.problems.append(
            f"plugin {name!r} failed to load and was skipped: {_describe(error)}"
        )
        return
    plugins.versions[name] = version


def _paths_from_environment() -> list[Path]:
    raw = os.environ.get(PLUGIN_PATHS_VARIABLE, "")
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part]


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    module_name = f"zoo_local_plugin_{path.stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded  # the CLI and the catalogue both load plugins: run a file's code once
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass
class Catalog:
    """Every backbone the registry and the plugins provide, plus what went wrong on the way."""

    backbones: dict[str, Backbone]
    problems: list[str]
    plugins: PluginSet

    def get(self, name: str) -> Backbone:
        if name in self.backbones:
            return self.backbones[name]
        raise UsageError(unknown_name_message(name, list(self.backbones)))


def unknown_name_message(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `zoo list`"
    return f"unknown backbone {name!r}; {hint}"


def load_catalog(registry_path: Path | None = None, plugins: PluginSet | None = None) -> Catalog:
    """Read the registry, let each plugin register its backbones, and collect the problems."""
    registry = load_registry(registry_path)
    plugins = plugins or load_plugins()
    backbones: dict[str, Backbone] = {}
    problems = list(plugins.problems)
    for implementation in plugins.manager.hook.register_backbones.get_hookimpls():
        plugin_name = implementation.plugin_name
        register = _registrar(plugin_name, backbones, problems)
        try:
            implementation.function(registry=registry, register=register)
        except Exception as error:
            problems.append(
                f"plugin {plugin_name!r} raised while registering backbones and was skipped: {_describe(error)}"
            )
    problems += _orphaned_entries(registry, backbones, plugins)
    return Catalog(backbones=dict(sorted(backbones.items())), problems=problems, plugins=plugins)


def _registrar(plugin_name: str, backbones: dict[str, Backbone], problems: list[str]):
    owners: dict[str, str] = {}

    def register(backbone: Backbone) -> None:
        if not isinstance(backbone, Backbone):
            raise RegistryError(f"plugin {plugin_name!r} registered {backbone!r}, not a Backbone")
        if backbone.name in backbones:
            problems.append(
                f"plugin {plugin_name!r} registered backbone {backbone.name!r}, which "
                f"plugin {backbones[backbone.name].plugin!r} already provides; the second one was skipped"
            )
            return
        owners[backbone.name] = plugin_name
        backbones[backbone.name] = backbone

    return register


def _orphaned_entries(
    registry: dict[str, Entry], backbones: dict[str, Backbone], plugins: PluginSet
) -> list[str]:
    loaded = set(plugins.versions)
    return [
        f"{entry.source}: backbone {name!r} names plugin {entry.plugin!r}, which is not installed; "
        f"install it or fix the 'plugin' field (plugins: {', '.join(sorted(loaded))})"
        for name, entry in registry.items()
        if name not in backbones and entry.plugin not in loaded
    ]


def entries_for(registry: dict[str, Entry], plugin_name: str) -> list[Entry]:
    """The registry entries that name `plugin_name`: what a family plugin turns into backbones."""
    return [entry for entry in registry.values() if entry.plugin == plugin_name]
