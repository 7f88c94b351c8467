"""`zoo run`'s settings as typer options, derived from `RunSettings` where each is declared once.

A setting is a field of zoo.runs.settings.RunSettings with its default, help and help panel
(`option(...)` there); `with_settings` gives a command one `--flag-name` per field, in field
order, in place of its `settings` parameter, and calls it with the `RunSettings` they build. The
command's other options (what to run, the output, the verdict) stay ordinary typer options.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from zoo.runs.settings import RunSettings


def flag(setting: str) -> str:
    """The command-line flag of a RunSettings field: fine_tune_epochs -> --fine-tune-epochs."""
    return "--" + setting.replace("_", "-")


def _parameter(setting: dataclasses.Field, annotation: Any) -> inspect.Parameter:
    declared = typer.Option(
        setting.default,
        flag(setting.name),
        help=escape(setting.metadata["help"]),  # help is Rich markup: zoo[ray] stays literal
        rich_help_panel=setting.metadata["panel"],
    )
    return inspect.Parameter(
        setting.name, inspect.Parameter.KEYWORD_ONLY, default=declared, annotation=annotation
    )


def with_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command(..., settings: RunSettings, ...)` as a typer command with every setting's option."""
    types = typing.get_type_hints(RunSettings)
    settings = [_parameter(f, types[f.name]) for f in dataclasses.fields(RunSettings)]
    names = [parameter.name for parameter in settings]
    own = inspect.signature(command, eval_str=True).parameters
    if "settings" not in own or set(names) & set(own):
        raise TypeError(f"{command.__name__} needs a settings parameter and no setting's name")
    position = list(own).index("settings")
    others = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.values()]
    parameters = [*others[:position], *settings, *others[position + 1 :]]

    @functools.wraps(command)
    def with_options(**given: Any) -> Any:
        values = {name: given.pop(name) for name in names}
        return command(settings=RunSettings(**values), **given)  # bad values: usage errors

    with_options.__signature__ = inspect.Signature(parameters)  # what typer reads
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options
