"""The whole plugin contract: the hooks a zoo plugin may implement."""

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def register_backbones(registry, register):
    """Register backbones: call register(Backbone) for each; `registry` maps names to entries."""


@hookspec
def register_commands(cli):
    """Add commands to the typer app `cli`."""
