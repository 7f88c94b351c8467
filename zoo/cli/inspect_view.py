"""`zoo inspect`'s report for people: Rich tables of what zoo.runs.inspection computed."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

SHOWN_PAIRS = 20  # duplicates listed in the tables; --json lists every one


def inspect_report(facts: dict[str, Any]) -> Group:
    parts = [_counts_table(facts), Text(_files_line(facts))]
    parts += _listed_problems(facts)
    return Group(*parts)


def _counts_table(facts: dict[str, Any]) -> Table:
    counts = facts["counts"]
    splits = list(counts)
    title = f"{escape(facts['data'])}: {facts['layout']}, {facts['images']} files"
    table = Table(title=title)
    table.add_column("class", style="bold")
    for split in splits:
        table.add_column(split, justify="right")
    for name in facts["classes"]:
        table.add_row(Text(name), *(str(counts[split][name]) for split in splits))
    ratios = [facts["imbalance_ratio"][split] for split in splits]
    table.add_row(
        "largest / smallest", *(f"{r:.1f}" if r is not None else "-" for r in ratios), style="dim"
    )
    if "test_fraction" in facts["split"]:
        table.caption = (
            f"test carved by content digest: {facts['split']['test_fraction']:.0%} of each class"
        )
    return table


def _files_line(facts: dict[str, Any]) -> str:
    sizes = ", ".join(f"{size} ({count})" for size, count in facts["sizes"].items())
    more = facts["distinct_sizes"] - len(facts["sizes"])
    modes = ", ".join(f"{mode} ({count})" for mode, count in facts["modes"].items())
    return (
        f"sizes: {sizes}{f' and {more} more' if more > 0 else ''}\n"
        f"modes: {modes or '-'}\n"
        f"unreadable: {len(facts['unreadable'])}; exact duplicates within a split: "
        f"{len(facts['duplicates']['within'])} groups; test images also in train: {facts['leaks']}"
    )


def _listed_problems(facts: dict[str, Any]) -> list[Any]:
    parts: list[Any] = []
    if facts["unreadable"]:
        parts.append(
            _pairs_table(
                "unreadable files",
                ["file", "reason"],
                [(row["path"], row["reason"]) for row in facts["unreadable"]],
            )
        )
    across = facts["duplicates"]["across"]
    if across:
        parts.append(
            _pairs_table(
                f"{len(across)} test images also in train (same content)",
                ["test", "train"],
                [(row["test"], ", ".join(row["train"])) for row in across],
            )
        )
    within = facts["duplicates"]["within"]
    if within:
        parts.append(
            _pairs_table(
                "identical files within a split",
                ["split", "files"],
                [(row["split"], ", ".join(row["paths"])) for row in within],
            )
        )
    near = facts["near_duplicates"]
    if near["status"] != "ok":
        parts.append(Text(f"near-duplicates: {near['status']}"))
    elif near["pairs"]:
        title = (
            f"{len(near['pairs'])} near-duplicates across splits "
            f"({near['backbone']} features, cosine >= {near['threshold']})"
        )
        parts.append(
            _pairs_table(
                title,
                ["test", "train", "cosine"],
                [(p["test"], p["train"], f"{p['cosine']:.3f}") for p in near["pairs"]],
            )
        )
    else:
        compared = near["compared"]
        parts.append(
            Text(
                f"near-duplicates: none at cosine >= {near['threshold']} ({near['backbone']} "
                f"features of {compared['test']} test and {compared['train']} train images)"
            )
        )
    return parts


def _pairs_table(title: str, columns: list[str], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows[:SHOWN_PAIRS]:
        table.add_row(*(Text(cell) for cell in row))
    if len(rows) > SHOWN_PAIRS:
        table.caption = f"and {len(rows) - SHOWN_PAIRS} more (--json lists them all)"
    return table
