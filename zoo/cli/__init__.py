"""The `zoo` command line: a thin typer layer over the engine (`app`), its tables and its progress."""

from zoo.cli.app import app, console_main, main

__all__ = ["app", "console_main", "main"]
