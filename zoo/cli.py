"""The `zoo` command line: a thin typer layer that calls the engine and prints with Rich."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from zoo import tables
from zoo.errors import UsageError, ZooError
from zoo.plugins import Catalog, load_catalog

app = typer.Typer(
    help="Find which pretrained backbone transfers best to your images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


class Settings:
    """Options given before the command (`zoo --registry F list`)."""

    registry: Optional[Path] = None
    debug: bool = False


@app.callback()
def _global_options(
    registry: Optional[Path] = typer.Option(
        None, "--registry", envvar="ZOO_REGISTRY", help="Use this registry file instead of zoo's own."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    Settings.registry = registry
    Settings.debug = debug


def catalog() -> Catalog:
    """The backbones, with any plugin or registry problems printed as warnings."""
    loaded = load_catalog(Settings.registry)
    for problem in loaded.problems:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)
    return loaded


def print_json(value) -> None:
    out.print_json(json.dumps(value))


@app.command("list")
def list_backbones(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the backbones: handle, input, features, params, ImageNet top-1, ready offline."""
    from zoo.hub import is_ready

    backbones = catalog().backbones.values()
    rows = [{**backbone.facts(), "ready": is_ready(backbone)} for backbone in backbones]
    if as_json:
        print_json(rows)
    else:
        out.print(tables.backbones_table(rows))


@app.command()
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything known about one backbone."""
    from zoo.hub import cached_location, is_ready

    backbone = catalog().get(name)
    facts = {**backbone.facts(), "ready": is_ready(backbone)}
    location = next(filter(None, map(cached_location, backbone.handles)), None)
    facts["cached_at"] = str(location) if location else None
    if as_json:
        print_json(facts)
    else:
        out.print(tables.facts_table(facts))


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The installed plugins: name, version, hooks."""
    loaded = catalog().plugins
    rows = [
        {
            "name": name,
            "version": loaded.versions[name],
            "hooks": sorted(caller.name for caller in loaded.manager.get_hookcallers(plugin)),
        }
        for name, plugin in loaded.manager.list_name_plugin()
    ]
    if as_json:
        print_json(rows)
    else:
        out.print(tables.plugins_table(rows))


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app; a ZooError is one line on stderr, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except ZooError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; runs and caches already stored are intact", 130)
    except Exception as error:
        import click

        if isinstance(error, click.exceptions.Exit):
            sys.exit(error.exit_code)
        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(UsageError.exit_code)
        if isinstance(error, click.exceptions.Abort):
            _fail("aborted", 130)
        raise


def _fail(message: str, code: int) -> None:
    if Settings.debug:
        raise
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)
