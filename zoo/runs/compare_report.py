"""Pictures that compare runs: accuracy against speed, per-class accuracy, loss curves.

Each picture is a PNG, and all of them sit in one HTML file with the images inlined (base64),
no script and no link out: it opens offline, mailed or copied anywhere.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.analysis.budget import LATENCY_KEY, pareto_front
from zoo.analysis.record import RunRecord
from zoo.errors import UsageError
from zoo.home import atomic_write_bytes, reports_dir
from zoo.runs.comparison import Judgement, judge, raced_out_line
from zoo.runs.report import pyplot, tight_layout
from zoo.runs.speeds import SpeedKey, measured_speeds, speed_of
from zoo.runs.store import get_run, list_runs
from zoo.runs.verdict_report import STYLE as VERDICT_STYLE
from zoo.runs.verdict_report import (
    class_differences_html,
    gallery_html,
    intervals_figure,
    verdict_html,
)


@dataclass
class Comparison:
    html: Path
    pictures: list[Path]
    left_out: list[str] = field(default_factory=list)  # failed and raced-out runs, a line each


def compare_runs(
    run_ids: list[int],
    folder: Path | None = None,
    alpha: float = 0.05,
    prefer: str = "speed",
    metric: str = "accuracy",
) -> Comparison:
    """The comparison of stored runs, into `folder` or $ZOO_HOME/reports/compare-<ids>/."""
    records = [get_run(run_id) for run_id in run_ids]
    backbones = {record.backbone for record in records}
    earlier = [run for run in list_runs() if run.backbone in backbones]
    folder = folder or default_folder(run_ids)
    verdict = {"alpha": alpha, "prefer": prefer, "metric": metric}
    return write_comparison(records, folder, measured_speeds(earlier), **verdict)


def default_folder(run_ids: list[int]) -> Path:
    many = len(run_ids) > 6  # a folder name stays short however many runs are compared
    name = (
        f"{run_ids[0]}-to-{run_ids[-1]}-{len(run_ids)}-runs"
        if many
        else "-".join(map(str, run_ids))
    )
    return reports_dir() / f"compare-{name}"


def write_comparison(
    records: list[RunRecord],
    folder: Path,
    speeds: dict[SpeedKey, tuple[float, int]] | None = None,
    alpha: float = 0.05,
    prefer: str = "speed",
    metric: str = "accuracy",
) -> Comparison:
    """Write the PNGs and compare.html for these stored runs into `folder`.

    `speeds` lends each speed key's measured speed to its runs that measured none (all cached).
    """
    ok = [record for record in records if record.is_ok]
    left_out = [
        raced_out_line(record)
        if record.status == "raced-out"
        else f"run {record.id} ({record.backbone}) failed: {record.reason}"
        for record in records
        if not record.is_ok
    ]
    if not ok:
        raise UsageError("none of these runs succeeded: there is nothing to compare")
    speeds = speeds if speeds is not None else measured_speeds(ok)
    judgement = judge(ok, alpha=alpha, prefer=prefer, metric=metric) if len(ok) > 1 else None
    drawn = {
        "accuracy_vs_speed": _accuracy_vs_speed(ok, speeds),
        "per_class_accuracy": _per_class_accuracy(ok),
        "loss_curves": _loss_curves(ok),
    }
    if _deployed_points(ok):  # `--deploy` measured some of these runs
        drawn["deployed_accuracy_vs_latency"] = _deployed_vs_latency(ok)
    if judgement and judgement.verdict:
        drawn = {"accuracy_intervals": _png(intervals_figure(ok, judgement.verdict)), **drawn}
    pictures = []
    for name, png in drawn.items():
        pictures.append(folder / f"{name}.png")
        atomic_write_bytes(pictures[-1], png)
    page = folder / "compare.html"
    atomic_write_bytes(page, _page(ok, left_out, speeds, drawn, judgement).encode())
    return Comparison(page, pictures, left_out)


def _label(record: RunRecord) -> str:
    return f"#{record.id} {record.backbone}"


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    tight_layout(figure)
    figure.savefig(buffer, format="png", dpi=100)
    pyplot().close(figure)
    return buffer.getvalue()


def _accuracy_vs_speed(records: list[RunRecord], speeds: dict) -> bytes:
    """Test accuracy against images/s; a marker's area grows with the backbone's parameters."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 5))
    unmeasured = []
    for index, record in enumerate(records):
        speed = speed_of(record, speeds)
        if speed is None:
            unmeasured.append(_label(record))
            continue
        params = record.metrics.get("params_m")
        axis.scatter(
            speed[0],
            record.accuracy,
            s=40 + 15 * params if params else 40,
            color=f"C{index % 10}",
            alpha=0.7,
            edgecolors="black",
            label=_label(record) + (f" ({params:g}M params)" if params else ""),
        )
    accuracies = [record.accuracy for record in records]
    axis.set_ylim(max(0.0, min(accuracies) - 0.05), min(1.0, max(accuracies)) + 0.05)
    axis.set_xlabel("feature extraction, images per second (this machine)")
    axis.set_ylabel("test accuracy")
    axis.set_title("Accuracy against speed (marker area: parameters)")
    axis.grid(alpha=0.3)
    if unmeasured:
        axis.text(
            0.01, 0.01, "no speed measured: " + ", ".join(unmeasured),
            transform=axis.transAxes, fontsize=8, color="dimgray",
        )  # fmt: skip
    if len(unmeasured) < len(records):
        axis.legend(fontsize=8, markerscale=0.6, loc="best")
    return _png(figure)


def _deployed_points(records: list[RunRecord]) -> list[tuple[float, float, str]]:
    """(1-thread median ms, deployed accuracy, label) of each measured run and target."""
    points = []
    for record in records:
        for target, figures in sorted(record.deployed.items()):
            if "error" not in figures:
                ms = figures["latency"][LATENCY_KEY]["median_ms"]
                points.append((ms, figures["accuracy"], f"{_label(record)} {target}"))
    return points


def _deployed_vs_latency(records: list[RunRecord]) -> bytes:
    """Deployed accuracy against measured latency (log scale), the Pareto front joined."""
    plt = pyplot()
    from matplotlib.ticker import ScalarFormatter

    points = _deployed_points(records)
    front = pareto_front([(ms, accuracy) for ms, accuracy, _ in points])
    figure, axis = plt.subplots(figsize=(8, 5))
    for index, (ms, accuracy, label) in enumerate(points):
        on_front = index in front
        axis.scatter(
            ms, accuracy, s=70 if on_front else 40, color=f"C{index % 10}",
            edgecolors="black", linewidths=1.5 if on_front else 0.5,
            label=label + (" (Pareto front)" if on_front else ""),
        )  # fmt: skip
    axis.step(  # a staircase: each front point's accuracy holds until a slower one beats it
        [points[i][0] for i in front], [points[i][1] for i in front], where="post",
        color="black", linestyle="--", linewidth=1, alpha=0.6,
    )  # fmt: skip
    axis.set_xscale("log")
    axis.xaxis.set_major_formatter(ScalarFormatter())  # 5, 10, 20 ms: not 5x10^0
    axis.xaxis.set_minor_formatter(ScalarFormatter())
    axis.set_xlabel("deployed latency per image, ms (batch 1, 1 thread, this machine; log)")
    axis.set_ylabel("deployed test accuracy")
    axis.set_title("Deployed accuracy against latency (dashed: the Pareto front)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, loc="best")
    return _png(figure)


def _per_class_accuracy(records: list[RunRecord]) -> bytes:
    """Runs (rows) by classes (columns), each cell the class's test accuracy."""
    plt = pyplot()
    classes = sorted({name for r in records for name in r.metrics["per_class_accuracy"]})
    table = np.array(
        [[r.metrics["per_class_accuracy"].get(name, np.nan) for name in classes] for r in records]
    )
    figure, axis = plt.subplots(
        figsize=(max(6.0, 1.2 + 0.75 * len(classes)), 1.6 + 0.5 * len(records))
    )
    image = axis.imshow(table, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(records)), [_label(r) for r in records])
    for (row, column), value in np.ndenumerate(table):
        if not np.isnan(value):
            colour = "black" if value > 0.6 else "white"
            axis.text(
                column, row, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8
            )
    figure.colorbar(image, label="test accuracy")
    axis.set_title("Per-class test accuracy")
    return _png(figure)


def _loss_curves(records: list[RunRecord]) -> bytes:
    """Every run's training (solid) and validation (dashed) loss on one pair of axes."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(8, 5))
    for index, record in enumerate(records):
        colour = f"C{index % 10}"
        history = record.history
        epochs = np.arange(1, len(history.get("loss", [])) + 1)
        axis.plot(epochs, history.get("loss", []), color=colour, marker="o", label=_label(record))
        if "val_loss" in history:
            axis.plot(epochs, history["val_loss"], color=colour, linestyle="--", marker="x")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_title("Loss: training (solid) and validation (dashed)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(record: RunRecord, speeds: dict) -> str:
    metrics = record.metrics
    speed = speed_of(record, speeds)
    if speed is None:
        speed_text = "-"
    elif speed[1] == record.id:
        speed_text = f"{speed[0]:.0f}"
    else:
        speed_text = f"{speed[0]:.0f} (run {speed[1]})"
    data = record.data_name or "-"
    cells = [
        str(record.id),
        record.backbone,
        record.mode,
        data,
        _cell(metrics.get("accuracy"), ".3f"),
        _cell(metrics.get("macro_f1"), ".3f"),
        _cell(metrics.get("loss"), ".3f"),
        speed_text,
        _cell(metrics.get("params_m"), ".1f"),
        _cell(metrics.get("epochs_run"), "d"),
    ]
    return "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


HEADERS = (
    "run",
    "backbone",
    "mode",
    "data",
    "test acc",
    "F1",
    "loss",
    "img/s",
    "params M",
    "epochs",
)
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f3f3; }
td:nth-child(2), td:nth-child(3), td:nth-child(4) { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0 2em; }
.note { color: #666; font-size: 0.9em; }
"""


def _page(
    records: list[RunRecord],
    left_out: list[str],
    speeds: dict,
    drawn: dict,
    judgement: Judgement | None = None,
) -> str:
    title = "zoo: " + ", ".join(_label(record) for record in records)
    rows = "\n".join(_row(record, speeds) for record in records)
    notes = "".join(f'<p class="note">{html.escape(line)}</p>' for line in left_out)
    images = "\n".join(
        f"<h2>{name.replace('_', ' ').capitalize()}</h2>\n"
        f'<img id="{name}" alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}">'
        for name, png in drawn.items()
    )
    made = datetime.datetime.now().isoformat(timespec="seconds")
    verdict = verdict_html(judgement) if judgement else ""
    if judgement and judgement.verdict:
        verdict += "\n" + class_differences_html(records, judgement.verdict)
        verdict += "\n" + gallery_html(records, judgement)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{STYLE}{VERDICT_STYLE}</style>
</head>
<body>
<h1>Runs compared</h1>
<p class="note">Written by zoo on {made}. Speed: feature extraction on this machine;
a run whose features were all cached shows the speed an earlier run measured with the same
engine and precision.</p>
<table>
<tr>{"".join(f"<th>{header}</th>" for header in HEADERS)}</tr>
{rows}
</table>
{notes}
{verdict}
{images}
</body>
</html>
"""
