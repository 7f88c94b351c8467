"""Rich tables for the CLI: backbones, facts, plugins, runs and the comparison of runs."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def backbones_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Backbones")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("plugin")
    table.add_column("handle", overflow="fold", ratio=1)
    for column in ("input", "range", "features", "params M", "top-1 %"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("offline", no_wrap=True)
    for row in rows:
        low, high = row["input_range"]
        table.add_row(
            row["name"],
            row["plugin"],
            row["handle"].removeprefix("https://"),
            "x".join(map(str, row["input_size"])),
            f"{low:g}..{high:g}",
            str(row["feature_dim"]),
            _fmt(row["params_m"], ".1f"),
            _fmt(row["imagenet_top1"], ".1f"),
            "[green]ready[/]" if row["ready"] else "[yellow]download[/]",
        )
    return table


def facts_table(facts: dict[str, Any]) -> Table:
    table = Table(title=facts["name"], show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in facts.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else _fmt(value))
    return table


def plugins_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Plugins")
    for column in ("name", "version", "hooks"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["version"], ", ".join(row["hooks"]))
    return table
