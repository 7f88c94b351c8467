"""`zoo run`'s settings are declared once (RunSettings) and the CLI and the API derive from it."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer.main
from test_bad_input import cli

import zoo
from zoo.cli.app import app
from zoo.cli.options import flag, with_settings
from zoo.errors import UsageError
from zoo.runs.settings import AUGMENT_OPERATIONS, RunSettings


def _run_options() -> dict[str, object]:
    command = typer.main.get_command(app).commands["run"]
    return {name: param for param in command.params for name in param.opts}


def test_every_setting_is_a_run_option_with_its_declared_default():
    options = _run_options()
    for setting in dataclasses.fields(RunSettings):
        option = options[flag(setting.name)]
        assert option.default == setting.default, setting.name
        assert option.help and option.help.endswith("."), setting.name


def test_every_run_flag_is_declared_once():
    command = typer.main.get_command(app).commands["run"]
    flags = [name for param in command.params for name in param.opts]
    assert len(flags) == len(set(flags))


def test_the_api_takes_the_same_settings_and_checks_them_the_same_way():
    accepted = inspect.signature(RunSettings).parameters
    assert {f.name for f in dataclasses.fields(RunSettings)} == set(accepted)
    with pytest.raises(UsageError, match="--epochs must be between 1 and 10000"):
        zoo.run(["tiny"], epochs=0)
    with pytest.raises(TypeError, match="no_such_setting"):
        zoo.run(["tiny"], no_such_setting=1)


def test_a_bad_setting_on_the_command_line_reads_as_before(capsys):
    code, _, err = cli(["run", "--epochs", "0"], capsys)
    assert code == 2 and "--epochs must be between 1 and 10000" in err


def test_options_given_reach_the_settings(monkeypatch):
    seen = {}

    @with_settings
    def command(name: str = "x", *, settings: RunSettings, verbose: bool = False) -> None:
        seen.update(name=name, settings=settings, verbose=verbose)

    parameters = inspect.signature(command).parameters
    assert list(parameters)[:2] == ["name", "test_fraction"] and "settings" not in parameters
    values = {f.name: f.default for f in dataclasses.fields(RunSettings)}
    command(name="y", verbose=True, **{**values, "epochs": 7, "unfreeze": "0.5"})
    assert seen["name"] == "y" and seen["verbose"] is True
    assert seen["settings"] == RunSettings(epochs=7, unfreeze="0.5")


def test_a_command_without_settings_is_refused():
    with pytest.raises(TypeError, match="needs a settings parameter"):
        with_settings(lambda name="x": None)


def test_the_default_augment_operations_are_all_of_them():
    from zoo.data.augment import OPERATIONS

    assert ",".join(OPERATIONS) == AUGMENT_OPERATIONS
