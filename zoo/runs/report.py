"""Plots of a stored run: loss and accuracy curves (train vs validation) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
    """matplotlib.pyplot drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def write_report(record: dict[str, Any], folder: Path) -> list[Path]:
    """Write curves.png and confusion_matrix.png for one run; returns the paths written."""
    if record["status"] != "ok":
        from zoo.errors import UsageError

        raise UsageError(f"run {record['id']} failed ({record['reason']}); it has nothing to plot")
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _curves(record, folder / "curves.png"),
        _confusion(record, folder / "confusion_matrix.png"),
    ]


def _curves(record: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    history = record["history"]
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, history.get(metric, []), marker="o", label=f"training {metric}")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        axis.set_title(metric.capitalize())
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
    figure.suptitle(f"run {record['id']}: {record['backbone']} ({record['mode']})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _confusion(record: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    matrix = np.array(record["metrics"]["confusion_matrix"])
    classes = record["metrics"]["classes"]
    figure, axis = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.6 + 0.6 * len(classes)))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image)
    axis.set_title(f"run {record['id']}: test accuracy {record['metrics']['accuracy']:.3f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
