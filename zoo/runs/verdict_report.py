"""The verdict's part of the comparison report: accuracy with interval bars, the verdict in words,
and per-class accuracy against the recommended run (HTML, no script)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from zoo.analysis.record import RunRecord
from zoo.analysis.verdict import Verdict, sentences
from zoo.runs.comparison import Judgement
from zoo.runs.report import pyplot


def intervals_figure(records: list[RunRecord], verdict: Verdict):
    """Each run's test accuracy with its 95% interval; tied runs green, worse grey."""
    plt = pyplot()
    shown = [record for record in records if record.id in verdict.intervals]
    shown.sort(key=_judged_accuracy)
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.45 * len(shown)))
    for row, record in enumerate(shown):
        low, high = verdict.intervals[record.id]
        accuracy = _judged_accuracy(record)
        colour = "tab:green" if record.id in verdict.tied else "tab:gray"
        axis.errorbar(
            accuracy,
            row,
            xerr=[[max(0.0, accuracy - low)], [max(0.0, high - accuracy)]],  # float rounding
            fmt="*" if record.id == verdict.recommended else "o",
            markersize=12 if record.id == verdict.recommended else 7,
            color=colour,
            capsize=4,
        )
    axis.set_yticks(range(len(shown)), [f"#{r.id} {r.backbone}" for r in shown])
    axis.set_xlabel("test accuracy, 95% Wilson interval")
    axis.set_title("Accuracy with intervals (green: tied for best, star: recommended)")
    return figure


def _judged_accuracy(record: RunRecord) -> float:
    """The accuracy the verdict judged: of the seed-averaged predictions where --seeds made them."""
    metrics = record.metrics
    return metrics.get("seed_averaged_accuracy", metrics["accuracy"])


def verdict_html(judgement: Judgement) -> str:
    """The verdict's sentences, or the one line saying why there is none."""
    if judgement.verdict is None:
        return f'<p class="note">{html.escape(judgement.refused or "")}</p>'
    lines = sentences(judgement.verdict, judgement.names)
    notes = "".join(f'<p class="note">{html.escape(line)}</p>' for line in judgement.left_out)
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f'<h2>Verdict</h2>\n<div id="verdict">{body}</div>\n{notes}'


def class_differences_html(records: list[RunRecord], verdict: Verdict) -> str:
    """Per class, each run's accuracy minus the recommended run's, in points."""
    by_id = {record.id: record for record in records}
    anchor = by_id[verdict.recommended]
    others = [record for record in records if record.id != verdict.recommended]
    if not others:
        return ""
    reference = anchor.metrics["per_class_accuracy"]
    header = "".join(f"<th>{html.escape(_label(record))}</th>" for record in others)
    rows = []
    for name, base in sorted(reference.items()):
        cells = []
        for record in others:
            value = record.metrics["per_class_accuracy"].get(name)
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


GALLERY_RIVALS = 3  # the runner-ups shown against the best, in order of accuracy
GALLERY_IMAGES = 8  # per side of each pair: images only the best got right, only the rival did
THUMBNAIL = 96  # pixels, the longer side


def gallery_html(records: list[RunRecord], judgement: Judgement) -> str:
    """For the best run against each runner-up, the test images exactly one of them got right,
    as thumbnails with the true and both predicted classes; capped, inlined, no script."""
    verdict, labels = judgement.verdict, judgement.labels
    by_id = {record.id: record for record in records}
    paths = _test_images(by_id[verdict.best])
    if paths is None or labels is None or len(paths) != len(labels):
        return ""
    classes = by_id[verdict.best].classes
    best = judgement.predicted[verdict.best]
    rivals = sorted(
        (run for run in judgement.predicted if run != verdict.best),
        key=lambda run: -(judgement.predicted[run] == labels).mean(),
    )[:GALLERY_RIVALS]
    sections = []
    for rival in rivals:
        other = judgement.predicted[rival]
        sides = [
            (f"only {_label(by_id[verdict.best])} right", (best == labels) & (other != labels)),
            (f"only {_label(by_id[rival])} right", (other == labels) & (best != labels)),
        ]
        rows = []
        for title, chosen in sides:
            cells = [
                _tile(paths[index], classes, labels[index], best[index], other[index])
                for index in np.flatnonzero(chosen)[:GALLERY_IMAGES]
            ]
            shown = f"{min(int(chosen.sum()), GALLERY_IMAGES)} of {int(chosen.sum())}"
            rows.append(
                f"<h3>{html.escape(title)} ({shown})</h3>\n"
                f'<div class="gallery">{"".join(cells)}</div>'
            )
        sections.append(
            f"<h2>Where {html.escape(_label(by_id[verdict.best]))} and "
            f"{html.escape(_label(by_id[rival]))} differ</h2>\n" + "\n".join(rows)
        )
    return '<div id="gallery">' + "\n".join(sections) + "</div>" if sections else ""


def _test_images(record: RunRecord) -> list[str] | None:
    path = record.artifacts.get("test_images")
    try:
        return json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError):  # moved or damaged: the report goes without a gallery
        return None


def thumbnail_uri(path: str | Path, size: int = THUMBNAIL) -> str | None:
    """The image as a small PNG `data:` URI (longer side `size` pixels); None when it cannot be
    read (moved since, or not an image)."""
    from PIL import Image

    from zoo.data.decode import PIXEL_LIMIT

    try:
        with Image.open(path) as image:
            if image.width * image.height > PIXEL_LIMIT:  # as zoo run, never decoded
                return None
            image.draft("RGB", (size, size))  # a big JPEG is decoded at 1/2 to 1/8 scale
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _tile(path: str, classes: list[str], true: int, best: int, other: int) -> str:
    caption = "<br>".join(
        html.escape(line)
        for line in (
            f"true: {classes[true]}",
            f"best says {classes[best]}",
            f"rival says {classes[other]}",
        )
    )
    uri = thumbnail_uri(path)
    if uri is None:  # the image moved since the run: its caption still says why
        return f'<figure class="tile"><figcaption>{caption}</figcaption></figure>'
    return (
        f'<figure class="tile"><img alt="test image" src="{uri}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _label(record: RunRecord) -> str:
    return f"#{record.id} {record.backbone}"


STYLE = """
.gallery { display: flex; flex-wrap: wrap; gap: 0.5em; }
.tile { margin: 0; width: 110px; font-size: 0.75em; color: #444; }
.tile img { margin: 0 0 0.2em; width: 96px; image-rendering: pixelated; }
td.better { background: #e3f4e1; }
td.worse { background: #fbe3e3; }
#verdict p { font-size: 1.05em; }
"""
