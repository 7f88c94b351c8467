"""`zoo inspect --report FILE.html`: what `zoo inspect` found, as one self-contained HTML page.

Class counts, sizes and modes, unreadable files, and a contact sheet of the duplicates: each
pair's two thumbnails side by side (inlined as `data:` URIs, no script, no link out), with the
two paths and how alike they are (the same content, or the cosine of their cached features).
"""

from __future__ import annotations

import datetime
import html
import os
from pathlib import Path
from typing import Any

from zoo.home import atomic_write_bytes
from zoo.runs.verdict_report import thumbnail_uri

SHEET_PAIRS = 100  # pairs drawn per section of the contact sheet; --json lists every one
SHEET_THUMBNAIL = 128  # pixels, the longer side: enough to tell two photos apart


def write_inspect_report(facts: dict[str, Any], path: Path) -> Path:
    """Write the page for `inspect_data`'s facts to `path` (atomically)."""
    atomic_write_bytes(path, inspect_page(facts).encode())
    return path


def inspect_page(facts: dict[str, Any]) -> str:
    title = f"zoo inspect: {facts['data']}"
    made = datetime.datetime.now().isoformat(timespec="seconds")
    sections = [
        _counts(facts),
        _files(facts),
        _unreadable(facts["unreadable"]),
        _exact_across(facts["duplicates"]["across"], facts["data"]),
        _near(facts["near_duplicates"], facts["data"]),
        _within(facts["duplicates"]["within"], facts["data"]),
    ]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Written by zoo on {made}: {html.escape(facts["layout"])}, {facts["images"]} files,
the splits as `zoo run` makes them.</p>
{"".join(sections)}
</body>
</html>
"""


def _counts(facts: dict[str, Any]) -> str:
    counts = facts["counts"]
    splits = list(counts)
    header = "".join(f"<th>{html.escape(split)}</th>" for split in splits)
    rows = [
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{counts[split][name]}</td>" for split in splits)
        + "</tr>"
        for name in facts["classes"]
    ]
    ratios = "".join(
        f"<td>{ratio:.1f}</td>" if ratio is not None else "<td>-</td>"
        for ratio in (facts["imbalance_ratio"][split] for split in splits)
    )
    rows.append(f'<tr class="note"><td>largest / smallest</td>{ratios}</tr>')
    carved = facts["split"].get("test_fraction")
    note = (
        f'<p class="note">Test carved by content digest: {carved:.0%} of each class.</p>'
        if carved is not None
        else ""
    )
    return (
        f'<h2>Class counts</h2>\n<table id="counts"><tr><th>class</th>{header}</tr>\n'
        + "\n".join(rows)
        + f"\n</table>\n{note}\n"
    )


def _files(facts: dict[str, Any]) -> str:
    def tally(name: str, counts: dict[str, int], more: int = 0) -> str:
        cells = ", ".join(f"{html.escape(key)} ({count})" for key, count in counts.items())
        return f"<li>{name}: {cells or '-'}{f' and {more} more' if more > 0 else ''}</li>"

    sizes = tally("sizes", facts["sizes"], facts["distinct_sizes"] - len(facts["sizes"]))
    return (
        f'<h2>Files</h2>\n<ul id="files">{sizes}{tally("modes", facts["modes"])}'
        f"{tally('formats', facts['formats'])}</ul>\n"
    )


def _unreadable(rows: list[dict[str, str]]) -> str:
    if not rows:
        return '<h2>Unreadable files</h2>\n<p class="note">None.</p>\n'
    items = "".join(
        f"<tr><td>{html.escape(row['path'])}</td><td>{html.escape(row['reason'])}</td></tr>"
        for row in rows
    )
    return (
        f"<h2>Unreadable files ({len(rows)})</h2>\n"
        f'<table id="unreadable"><tr><th>file</th><th>reason</th></tr>{items}</table>\n'
    )


def _exact_across(rows: list[dict[str, Any]], root: str) -> str:
    pairs = [
        _pair(("test", row["test"]), ("train", row["train"][0]), _same(row["train"]), root)
        for row in rows[:SHEET_PAIRS]
    ]
    return _sheet(
        "exact", f"Test images also in train, the same content ({len(rows)})", pairs, rows
    )


def _near(near: dict[str, Any], root: str) -> str:
    title = (
        f"Near-duplicates across splits ({html.escape(near['backbone'])} features, "
        f"cosine &gt;= {near['threshold']})"
    )
    if near["status"] != "ok":
        return f'<h2>{title}</h2>\n<p class="note">{html.escape(near["status"])}.</p>\n'
    rows = near["pairs"]
    pairs = [
        _pair(("test", row["test"]), ("train", row["train"]), f"cosine {row['cosine']:.3f}", root)
        for row in rows[:SHEET_PAIRS]
    ]
    compared = near["compared"]
    note = (
        f'<p class="note">Compared the cached vectors of {compared["test"]} test and '
        f"{compared['train']} training images; exact copies are listed above only.</p>\n"
    )
    return _sheet("near", f"{title} ({len(rows)})", pairs, rows, note)


def _within(groups: list[dict[str, Any]], root: str) -> str:
    pairs = []
    for group in groups[:SHEET_PAIRS]:
        first, *copies = group["paths"]
        split = group["split"]
        pairs.append(_pair((split, first), (split, copies[0]), _same(copies), root))
    return _sheet("within", f"Identical files within a split ({len(groups)})", pairs, groups)


def _same(copies: list[str]) -> str:
    """'same content', and how many more copies than the one shown."""
    more = len(copies) - 1
    return "same content" + (f", and {more} more cop{'ies' if more > 1 else 'y'}" if more else "")


def _sheet(name: str, title: str, pairs: list[str], rows: list, note: str = "") -> str:
    if not rows:
        return f'<h2>{title}</h2>\n{note}<p class="note">None.</p>\n'
    shown = (
        f'<p class="note">The first {SHEET_PAIRS} of {len(rows)}; `zoo inspect --json` lists '
        "every one.</p>\n"
        if len(rows) > SHEET_PAIRS
        else ""
    )
    return f'<h2>{title}</h2>\n{note}{shown}<div class="sheet" id="{name}">{"".join(pairs)}</div>\n'


def _pair(first: tuple[str, str], second: tuple[str, str], likeness: str, root: str) -> str:
    """Two (split, path) images side by side, and how alike they are."""
    return (
        f'<div class="pair">{_image(*first, root)}{_image(*second, root)}'
        f'<p class="likeness">{html.escape(likeness)}</p></div>'
    )


def _image(split: str, path: str, root: str) -> str:
    """A thumbnail captioned with its split and its path inside the data folder (the whole
    path on hover)."""
    uri = thumbnail_uri(path, SHEET_THUMBNAIL)
    picture = f'<img alt="{html.escape(split)} image" src="{uri}">' if uri else "(unreadable)"
    shown = os.path.relpath(path, root) if Path(path).is_relative_to(root) else path
    return (
        f'<figure title="{html.escape(path)}">{picture}<figcaption><b>{html.escape(split)}</b> '
        f"{html.escape(shown)}</figcaption></figure>"
    )


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.note { color: #666; font-size: 0.9em; }
.sheet { display: flex; flex-wrap: wrap; gap: 1em; }
.pair { border: 1px solid #ddd; padding: 0.5em; display: flex; flex-wrap: wrap; gap: 0.5em;
        width: 300px; }
.pair figure { margin: 0; width: 140px; font-size: 0.7em; color: #444; overflow-wrap: anywhere; }
.pair img { width: 128px; image-rendering: pixelated; display: block; margin-bottom: 0.2em; }
.likeness { margin: 0; width: 100%; font-weight: bold; font-size: 0.85em; }
"""
