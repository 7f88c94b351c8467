"""The plugin manager, and the catalogue of backbones the plugins register.

Built-in plugins are plugins like any other. A plugin that fails to import, or whose hook
raises, is reported by name and skipped, so every other backbone still works. Hooks are called
through pluggy, one plugin at a time: pluggy hands each implementation only the arguments it
names, and one plugin's exception stops only that plugin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from zoo.catalog import hookspecs
from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination, combination
from zoo.catalog.registry import Registry, is_catalogued, load_registry, load_registry_file
from zoo.errors import RegistryError, UsageError

DEFAULT_PLUGINS = (
    "zoo_plugins.hub",
    "zoo_plugins.efficientnet_lite",
    "zoo_plugins.scratch",
    "zoo_plugins.tensorflow_engine",
    "zoo_plugins.openvino_engine",
    "zoo_plugins.tflite_targets",
    "zoo_plugins.openvino_targets",
    "zoo_plugins.tensorboard_hparams",
    "zoo_plugins.mlflow_tracker",
)
ENTRY_POINT_GROUP = "zoo"
# os.pathsep-separated .py files to load as plugins: handy while writing one.
PLUGIN_PATHS_VARIABLE = "ZOO_PLUGINS"


@dataclass
class PluginSet:
    manager: pluggy.PluginManager
    problems: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def call_each(
        self, hook: str, arguments: Callable[[str], dict[str, Any]], problems: list[str]
    ) -> Iterator[tuple[str, Any]]:
        """Call `hook` on each plugin alone, with `arguments(plugin name)`: yields (name, result).

        A plugin whose implementation raises is reported in `problems` and skipped.
        """
        everyone = self.manager.get_plugins()
        for name, plugin in self.implementers(hook):
            caller = self.manager.subset_hook_caller(hook, [p for p in everyone if p is not plugin])
            try:
                with _stdout_to_stderr():
                    results = caller(**arguments(name))
            except Exception as error:  # a broken plugin must not take the others down
                problems.append(
                    f"plugin {name!r} raised in {hook} and was skipped: {_describe(error)}"
                )
                continue
            yield name, results[0] if results else None

    def implementers(self, hook: str) -> list[tuple[str, object]]:
        """(name, plugin) of each plugin implementing `hook`, in registration order."""
        return [
            (name, plugin)
            for name, plugin in self.manager.list_name_plugin()
            if any(c.name == hook for c in self.manager.get_hookcallers(plugin) or [])
        ]


_loaded: dict[tuple, PluginSet] = {}


def load_plugins() -> PluginSet:
    """The plugins of this process: built-ins, installed entry points and ZOO_PLUGINS files.

    Loaded once per process (llm's way), so a plugin module runs once; a new ZOO_PLUGINS value or
    a newly installed entry point gives a new set.
    """
    entry_points = tuple(metadata.entry_points(group=ENTRY_POINT_GROUP))
    key = (
        os.environ.get(PLUGIN_PATHS_VARIABLE, ""),
        tuple((e.name, e.value) for e in entry_points),
    )
    if key not in _loaded:
        _loaded[key] = _load(entry_points)
    return _loaded[key]


def _load(entry_points: tuple[metadata.EntryPoint, ...]) -> PluginSet:
    manager = pluggy.PluginManager("zoo")
    manager.add_hookspecs(hookspecs)
    plugins = PluginSet(manager)
    for module_name in DEFAULT_PLUGINS:
        short_name = module_name.rsplit(".", 1)[-1]
        _register(plugins, short_name, "built-in", lambda m=module_name: importlib.import_module(m))
    for entry_point in entry_points:
        version = entry_point.dist.version if entry_point.dist else "?"
        _register(plugins, entry_point.name, version, entry_point.load)
    for path in _paths_from_environment():
        _register(plugins, path.stem, "local", lambda p=path: _import_file(p))
    return plugins


def _register(plugins: PluginSet, name: str, version: str, load) -> None:
    if plugins.manager.has_plugin(name):
        plugins.problems.append(
            f"a second plugin is named {name!r} and was skipped; rename its module or entry point"
        )
        return
    try:
        with _stdout_to_stderr():
            module = load()
        plugins.manager.register(module, name=name)
        _check_hook_names(plugins.manager, module)
        _warn_of_undecorated_hooks(plugins, name, module)
    except (Exception, SystemExit) as error:  # a broken plugin must not take the others down
        if plugins.manager.has_plugin(name):
            plugins.manager.unregister(name=name)
        plugins.problems.append(
            f"plugin {name!r} failed to load and was skipped: {_describe(error)}"
        )
        return
    plugins.versions[name] = version


def _stdout_to_stderr() -> contextlib.AbstractContextManager:
    """Plugin code runs with print() sent to stderr: stdout carries only `--json` and `--csv`."""
    return contextlib.redirect_stdout(sys.stderr)


def _check_hook_names(manager: pluggy.PluginManager, module: ModuleType) -> None:
    """A misspelt hook (`register_backbone`) would silently never be called: refuse it."""
    known = set(_hook_names())
    for attribute in dir(module):
        if manager.parse_hookimpl_opts(module, attribute) is not None and attribute not in known:
            raise RegistryError(
                f"{attribute} is not a zoo hook (hooks: {', '.join(_hook_names())})"
            )


def _warn_of_undecorated_hooks(plugins: PluginSet, name: str, module: ModuleType) -> None:
    """A hook defined without @zoo.hookimpl is never called: the plugin would load hookless."""
    plain = [
        attribute
        for attribute in _hook_names()
        if callable(getattr(module, attribute, None))
        and plugins.manager.parse_hookimpl_opts(module, attribute) is None
    ]
    if plain:
        plugins.problems.append(
            f"plugin {name!r} defines {', '.join(plain)} without @zoo.hookimpl, so zoo never "
            "calls it; put @zoo.hookimpl on the line above each hook"
        )


def _hook_names() -> list[str]:
    return [name for name in vars(hookspecs) if hasattr(getattr(hookspecs, name), "zoo_spec")]


def _paths_from_environment() -> list[Path]:
    raw = os.environ.get(PLUGIN_PATHS_VARIABLE, "")
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part]


def _import_file(path: Path) -> ModuleType:
    """Run a plugin file as a module; one that raises leaves nothing behind in sys.modules."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    module_name = f"zoo_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)  # else a second import would take it for loaded
        raise
    return module


def _describe(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"it called sys.exit({error.code!r})"
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

    def select(
        self, names: list[str], everything: bool, verb: str = "run", combine: bool = False
    ) -> list[Backbone | Combination]:
        """The named backbones, or every one with `everything` (the CLI's `--all`, which never
        adds combinations). With `combine`, a name `a+b` is one Combination (`zoo run`)."""
        if everything and names:
            raise UsageError("give backbone names or --all, not both")
        if not everything and not names:
            raise UsageError(f"name the backbones to {verb} (see `zoo list`) or pass --all")
        return (
            list(self.backbones.values())
            if everything
            else [self._one(n, combine, verb) for n in names]
        )

    def _one(self, name: str, combine: bool, verb: str) -> Backbone | Combination:
        if "+" not in name:
            return self.get(name)
        if not combine:
            raise UsageError(
                f"{name!r}: only `zoo run` combines backbones with '+'; {verb} "
                f"{' '.join(part for part in name.split('+') if part)} one by one"
            )
        return combination(name, self.get)


def unknown_name_message(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `zoo list`"
    return f"unknown backbone {name!r}; {hint}"


def load_catalog(registry_path: Path | None = None, plugins: PluginSet | None = None) -> Catalog:
    """Read the registries, let each plugin register its backbones, and collect the problems."""
    plugins = plugins or load_plugins()
    problems = list(plugins.problems)
    registry = load_registry(registry_path)
    for plugin_name, paths in plugins.call_each("registry_files", lambda name: {}, problems):
        registry = _merge_plugin_registry(registry, plugin_name, paths, problems)
    # A catalogue entry yields to a backbone of the same name that another plugin registers.
    catalogued = {name for name, entry in registry.items() if is_catalogued(entry)}
    backbones: dict[str, Backbone] = {}
    staged: dict[str, dict[str, Backbone]] = {}  # a plugin's backbones count once its hook returns

    def arguments(name: str) -> dict[str, Any]:
        staged[name] = {}
        return {
            "registry": registry,
            "register": _registrar(
                name,
                plugins.versions.get(name, ""),
                staged[name],
                backbones,
                problems,
                registry,
                catalogued,
            ),
        }

    for name, _ in plugins.call_each("register_backbones", arguments, problems):
        backbones.update(staged[name])
    problems += _orphaned_entries(registry, backbones, plugins)
    return Catalog(backbones=dict(sorted(backbones.items())), problems=problems, plugins=plugins)


def _merge_plugin_registry(
    registry: Registry, plugin_name: str, paths: Any, problems: list[str]
) -> Registry:
    """Add the entries of a plugin's own TOML files; a bad file skips that plugin's entries."""
    merged = dict(registry)
    try:
        for path in [paths] if isinstance(paths, (str, Path)) else list(paths or []):
            for name, entry in load_registry_file(Path(path), default_plugin=plugin_name).items():
                if entry.plugin != plugin_name:
                    raise RegistryError(
                        f"{entry.source}: backbone {name!r}: field 'plugin' says "
                        f"{entry.plugin!r}, but this file ships with plugin {plugin_name!r}; "
                        "drop the field or name that plugin"
                    )
                if name in merged:
                    raise RegistryError(
                        f"{entry.source}: backbone {name!r} is already defined in "
                        f"{merged[name].source}; rename one of them"
                    )
                merged[name] = entry
    except (RegistryError, TypeError) as error:
        problems.append(f"plugin {plugin_name!r}: {error}; its registry entries were skipped")
        return registry
    return Registry(merged)


def _registrar(
    plugin_name: str,
    plugin_version: str,
    mine: dict[str, Backbone],
    earlier: dict[str, Backbone],
    problems: list[str],
    registry: Registry,
    catalogued: set[str] = frozenset(),
):
    """The `register` callback: a backbone's `plugin` is the plugin that registered it."""

    def register(backbone: Backbone) -> None:
        if not isinstance(backbone, Backbone):
            raise RegistryError(f"register() takes a zoo.Backbone, not {backbone!r}")
        if backbone.name in catalogued and backbone.name in earlier and plugin_name != "hub":
            del earlier[backbone.name]  # the plugin's own definition wins over the catalogue's
        if backbone.name in earlier or backbone.name in mine:
            owner = earlier[backbone.name].plugin if backbone.name in earlier else plugin_name
            problems.append(
                f"plugin {plugin_name!r} registered backbone {backbone.name!r}, which "
                f"plugin {owner!r} already provides; the second one was skipped"
            )
            return
        entry = registry.get(backbone.name)
        from_entry = entry is not None and entry.fields.get("feature_dim") == backbone.feature_dim
        mine[backbone.name] = dataclasses.replace(
            backbone,
            plugin=plugin_name,
            plugin_version=plugin_version,
            feature_dim_from=str(entry.source) if from_entry else "",
        )

    return register


# Family plugins of zoo 0.1, now data: `plugin = "hub"` with `family = "<the old name>"`.
FORMER_FAMILY_PLUGINS = ("resnet", "efficientnet", "mobilenet")


def _orphaned_entries(
    registry: Registry, backbones: dict[str, Backbone], plugins: PluginSet
) -> list[str]:
    loaded = set(plugins.versions)
    return [
        f"{entry.source}: backbone {name!r} names plugin {entry.plugin!r}, which is not installed; "
        + (
            f'families are data now: write plugin = "hub" and family = "{entry.plugin}"'
            if entry.plugin in FORMER_FAMILY_PLUGINS
            else f"install it or fix the 'plugin' field (plugins: {', '.join(sorted(loaded))})"
        )
        for name, entry in registry.items()
        if name not in backbones and entry.plugin not in loaded
    ]
