"""The whole plugin contract: the hooks a zoo plugin may implement.

pluggy calls each implementation with only the arguments it names, so
`def register_backbones(register):` is as good as `def register_backbones(registry, register):`.
A plugin imports only `zoo`: `zoo.hookimpl`, `zoo.Backbone`.
"""

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def registry_files():
    """Return the paths of TOML files with [backbones.NAME] tables this plugin ships."""


@hookspec
def register_backbones(register, registry):
    """Call register(Backbone) for each backbone; `registry` holds every validated TOML entry."""


@hookspec
def register_engines(register):
    """Call register(name, factory) for each feature-extraction engine this plugin provides."""


@hookspec
def register_deploy_targets(register):
    """Call register(DeployTarget) for each deployment target (`--deploy NAME`) this plugin provides."""


@hookspec
def run_finished(run):
    """A run was stored; `run` is its record as `zoo compare --json` lists it (a dict: the
    RunRecord's `to_json()`), for trackers."""


@hookspec
def verdict_reached(verdict, runs):
    """`zoo run` of several backbones reached a verdict (as `--json` shows it) over `runs` (the
    runs' records as `zoo compare --json` lists them)."""


@hookspec
def register_commands(cli):
    """Add commands to the typer app `cli`."""
