"""The verdict's part of the comparison report: accuracy with interval bars, the verdict in words,
and per-class accuracy against the recommended run (HTML, no script)."""

from __future__ import annotations

import html
from typing import Any

from zoo.analysis.verdict import Verdict, sentences
from zoo.runs.comparison import Judgement
from zoo.runs.report import pyplot


def intervals_figure(records: list[dict[str, Any]], verdict: Verdict):
    """Each run's test accuracy with its 95% interval; tied runs green, worse grey."""
    plt = pyplot()
    shown = [record for record in records if record["id"] in verdict.intervals]
    shown.sort(key=_judged_accuracy)
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.45 * len(shown)))
    for row, record in enumerate(shown):
        low, high = verdict.intervals[record["id"]]
        accuracy = _judged_accuracy(record)
        colour = "tab:green" if record["id"] in verdict.tied else "tab:gray"
        axis.errorbar(
            accuracy,
            row,
            xerr=[[max(0.0, accuracy - low)], [max(0.0, high - accuracy)]],  # float rounding
            fmt="*" if record["id"] == verdict.recommended else "o",
            markersize=12 if record["id"] == verdict.recommended else 7,
            color=colour,
            capsize=4,
        )
    axis.set_yticks(range(len(shown)), [f"#{r['id']} {r['backbone']}" for r in shown])
    axis.set_xlabel("test accuracy, 95% Wilson interval")
    axis.set_title("Accuracy with intervals (green: tied for best, star: recommended)")
    return figure


def _judged_accuracy(record: dict[str, Any]) -> float:
    """The accuracy the verdict judged: of the seed-averaged predictions where --seeds made them."""
    metrics = record["metrics"]
    return metrics.get("seed_averaged_accuracy", metrics["accuracy"])


def verdict_html(judgement: Judgement) -> str:
    """The verdict's sentences, or the one line saying why there is none."""
    if judgement.verdict is None:
        return f'<p class="note">{html.escape(judgement.refused or "")}</p>'
    lines = sentences(judgement.verdict, judgement.names)
    notes = "".join(f'<p class="note">{html.escape(line)}</p>' for line in judgement.left_out)
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f'<h2>Verdict</h2>\n<div id="verdict">{body}</div>\n{notes}'


def class_differences_html(records: list[dict[str, Any]], verdict: Verdict) -> str:
    """Per class, each run's accuracy minus the recommended run's, in points."""
    by_id = {record["id"]: record for record in records}
    anchor = by_id[verdict.recommended]
    others = [record for record in records if record["id"] != verdict.recommended]
    if not others:
        return ""
    reference = anchor["metrics"]["per_class_accuracy"]
    header = "".join(f"<th>{html.escape(_label(record))}</th>" for record in others)
    rows = []
    for name, base in sorted(reference.items()):
        cells = []
        for record in others:
            value = record["metrics"]["per_class_accuracy"].get(name)
            if value is None:
                cells.append("<td>-</td>")
                continue
            points = 100 * (value - base)
            tone = "better" if points > 0.05 else "worse" if points < -0.05 else ""
            cells.append(f'<td class="{tone}">{points:+.1f}</td>')
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{100 * base:.1f}</td>{''.join(cells)}</tr>"
        )
    return (
        f"<h2>Per-class accuracy against the recommended run, {html.escape(_label(anchor))}</h2>\n"
        '<p class="note">Points of test accuracy per class: the recommended run\'s own, then '
        "each other run's difference from it.</p>\n"
        f'<table id="class_differences"><tr><th>class</th><th>{html.escape(_label(anchor))}</th>'
        f"{header}</tr>\n" + "\n".join(rows) + "\n</table>"
    )


def _label(record: dict[str, Any]) -> str:
    return f"#{record['id']} {record['backbone']}"


STYLE = """
td.better { background: #e3f4e1; }
td.worse { background: #fbe3e3; }
#verdict p { font-size: 1.05em; }
"""
