"""Plots of a stored run: loss and accuracy curves (train vs validation) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.analysis.record import RunRecord


def pyplot():
    """matplotlib.pyplot drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    # Labels are class and backbone names, never formulas: `cost $5 or $6` is text, not mathtext
    # (which fails to parse it).
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def tight_layout(figure) -> None:
    """Fit the labels in; where long names cannot fit, draw as is without matplotlib's warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        figure.tight_layout()


def write_report(record: RunRecord, folder: Path | None = None) -> list[Path]:
    """Write the run's pictures (into its own report/ folder by default); returns the paths.

    curves.png and confusion_matrix.png always; with many classes the matrix has no per-cell
    counts, and top_confusions.png shows the commonest mistakes instead.
    """
    if not record.is_ok:
        from zoo.errors import UsageError

        states = {"damaged": "is damaged in the store", "raced-out": "was raced out"}
        state = states.get(record.status, "failed")
        raise UsageError(f"run {record.id} {state} ({record.reason}); it has nothing to plot")
    from zoo.runs.artifacts import refuse_ensemble

    refuse_ensemble(record, "report")
    if folder is None:
        from zoo.runs.artifacts import report_folder

        folder = report_folder(record)
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        _curves(record, folder / "curves.png"),
        _confusion(record, folder / "confusion_matrix.png"),
    ]
    if len(record.classes) > CELL_COUNTS_UP_TO:
        written.append(_top_confusions(record, folder / "top_confusions.png"))
    return written


def _curves(record: RunRecord, path: Path) -> Path:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    history = record.history
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            values = history.get(key, [])
            if values:
                epochs = np.arange(1, len(values) + 1)
                axis.plot(epochs, values, marker="o", label=f"{label} {metric}")
        axis.set_title(metric.capitalize())
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.lines:
            axis.legend()
    figure.suptitle(f"run {record.id}: {record.backbone} ({record.mode})")
    tight_layout(figure)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# Classes up to which the matrix shows each cell's count, and each class's name on its axes:
# beyond, 200 classes took 64 s and 4.7 GB (40000 text labels), 1000 did not finish.
CELL_COUNTS_UP_TO = 30
CLASS_NAMES_UP_TO = 60
TOP_CONFUSIONS = 20
LARGEST_FIGURE_INCHES = 14.0


def _confusion(record: RunRecord, path: Path) -> Path:
    plt = pyplot()
    matrix = np.array(record.metrics["confusion_matrix"])
    classes = record.classes
    side = min(1.0 + 0.7 * len(classes), LARGEST_FIGURE_INCHES)
    figure, axis = plt.subplots(figsize=(side, min(0.6 + 0.6 * len(classes), side)))
    image = axis.imshow(matrix, cmap="Blues", interpolation="nearest")
    if len(classes) <= CLASS_NAMES_UP_TO:
        axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted" if len(classes) <= CLASS_NAMES_UP_TO else "predicted (class index)")
    axis.set_ylabel("true" if len(classes) <= CLASS_NAMES_UP_TO else "true (class index)")
    if len(classes) <= CELL_COUNTS_UP_TO:
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image)
    axis.set_title(f"run {record.id}: test accuracy {record.metrics['accuracy']:.3f}")
    tight_layout(figure)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _top_confusions(record: RunRecord, path: Path) -> Path:
    """The commonest mistakes as bars: 'true -> predicted', most frequent on top."""
    plt = pyplot()
    matrix = np.array(record.metrics["confusion_matrix"])
    classes = record.classes
    mistakes = matrix.copy()
    np.fill_diagonal(mistakes, 0)
    order = np.argsort(mistakes, axis=None)[::-1][:TOP_CONFUSIONS]
    pairs = [np.unravel_index(i, mistakes.shape) for i in order if mistakes.flat[i] > 0]
    figure, axis = plt.subplots(figsize=(9, 1.0 + 0.35 * max(len(pairs), 1)))
    labels = [f"{classes[true]} -> {classes[predicted]}" for true, predicted in pairs]
    axis.barh(range(len(pairs)), [mistakes[pair] for pair in pairs], color="tab:red")
    axis.set_yticks(range(len(pairs)), labels)
    axis.invert_yaxis()
    axis.set_xlabel("test images")
    axis.set_title(f"run {record.id}: the {len(pairs)} commonest confusions (true -> predicted)")
    tight_layout(figure)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
