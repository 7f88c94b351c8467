"""Rich tables for the CLI: backbones, facts, plugins, runs and the comparison of runs.

Values zoo did not write (names, handles, descriptions, reasons, paths) go in as `Text`, which
Rich never reads as markup: '[red]alert' shows as it is. Only zoo's own styling is markup.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.table import Table
from rich.text import Text

from zoo.analysis.record import RunRecord
from zoo.analysis.statistics import accuracy_interval
from zoo.cli.text import printable


def _plain(value: Any) -> Text:
    return Text("-" if value is None else printable(str(value)))


def _fmt(value: Any, spec: str = "") -> Text:
    """A number formatted by `spec`; anything else (a store zoo did not write) as it is."""
    if value is None:
        return Text("-")
    try:
        return Text(printable(format(value, spec)))
    except (TypeError, ValueError):
        return Text(printable(str(value)))


def accuracy_text(metrics: dict[str, Any]) -> Text:
    """`0.836 ±0.015`: test accuracy and half the width of its 95% Wilson interval."""
    shown = _fmt(metrics.get("accuracy"), ".3f")
    interval = accuracy_interval(metrics) if isinstance(metrics.get("accuracy"), float) else None
    if interval:
        shown.append(f" ±{(interval[1] - interval[0]) / 2:.3f}", style="dim")
    return shown


def backbones_table(rows: list[dict[str, Any]], of: int | None = None) -> Table:
    """The columns for choosing among many; the handle and the rest are in `zoo show`/`--json`."""
    shown = f" ({len(rows)} of {of})" if of is not None and of != len(rows) else f" ({len(rows)})"
    table = Table(title=f"Backbones{shown}")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("family", no_wrap=True)
    for column in ("input", "range", "features", "params M", "top-1 %"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("pretrained on", no_wrap=True)
    table.add_column("offline", no_wrap=True)
    for row in rows:
        table.add_row(
            _plain(row["name"]),
            _plain(row.get("family") or None),
            "x".join(map(str, row["input_size"])),
            _value_range(row),
            str(row["feature_dim"]),
            _fmt(row["params_m"], ".1f"),
            _fmt(row["imagenet_top1"], ".1f"),
            _plain(row.get("pretrained_on") or (None if row.get("pretrained", True) else "none")),
            "[green]ready[/]" if row["ready"] else "[yellow]download[/]",
        )
    return table


def _value_range(row: dict[str, Any]) -> str:
    if row["input_range"]:
        low, high = row["input_range"]
        return f"{low:g}..{high:g}"
    return "mean/std"


def _preprocessing_text(steps: dict[str, Any]) -> str:
    mean, std = (", ".join(f"{v:g}" for v in steps[key]) for key in ("mean", "std"))
    return (
        f"{steps['interpolation']} resize, centre crop {steps['crop_fraction']:g}, "
        f"{steps['channel_order']}, (pixel - [{mean}]) / [{std}] in 0..255 units"
    )


def facts_table(facts: dict[str, Any]) -> Table:
    table = Table(title=_plain(facts["name"]), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in facts.items():
        if key == "preprocessing":
            value = _preprocessing_text(value)
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(_plain(key), _fmt(value))
    return table


def plugins_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Plugins")
    for column in ("name", "version", "hooks"):
        table.add_column(column)
    for row in rows:
        table.add_row(_plain(row["name"]), _plain(row["version"]), _plain(", ".join(row["hooks"])))
    return table


MODE_LABELS = {
    "feature-extraction": "frozen",
    "fine-tune": "fine-tune",
    "from-scratch": "scratch",
    "ensemble": "ensemble",
}


def _seconds(value: float | None) -> Text:
    return _fmt(value, ".1f") + "s" if isinstance(value, (int, float)) else _fmt(value)


def comparison_table(
    rows: list[dict[str, Any]], title: str = "Comparison", deploy: list[str] = ()
) -> Table:
    """One row a run: the best test accuracy in bold; failed runs show their reason. With
    `deploy` (target names), each target's deployed accuracy, latency and size as well."""
    table = Table(title=title)
    table.add_column("run", justify="right")
    table.add_column("backbone", no_wrap=True, style="bold")
    table.add_column("mode")
    for column in ("test acc", "bal acc", "F1", "loss", "epochs", "time", "img/s", "params M"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    _add_deploy_columns(table, deploy)
    accuracies = [
        row["metrics"].get("accuracy")
        for row in rows
        if row["status"] == "ok" and isinstance(row["metrics"].get("accuracy"), (int, float))
    ]
    best = max(accuracies) if accuracies else None
    captions = [
        text(row)
        for row in rows
        for text in (
            _tuned_text,
            _stages_text,
            _augmented_text,
            _joined_text,
            _seeds_text,
            _raced_text,
        )
    ]
    table.caption = "\n".join(filter(None, captions)) or None
    for row in rows:
        metrics = row["metrics"]
        accuracy = metrics.get("accuracy")
        shown = accuracy_text(metrics) if row["status"] != "raced-out" else _race_accuracy(metrics)
        if accuracy is not None and accuracy == best:
            shown.stylize("bold green", 0, 5)
        status = _status_cell(row)
        table.add_row(
            _fmt(row.get("run_id")),
            _plain(row["backbone"]),
            _plain(_mode_label(row)),
            shown,
            _fmt(metrics.get("balanced_accuracy"), ".3f"),
            _fmt(metrics.get("macro_f1"), ".3f"),
            _fmt(metrics.get("loss"), ".3f"),
            _fmt(metrics.get("epochs_run")),
            _seconds(metrics.get("seconds")),
            "cached"
            if metrics.get("computed_features") == 0
            else _fmt(metrics.get("images_per_second"), ".0f"),
            _fmt(metrics.get("params_m"), ".1f"),
            status,
            *_deploy_cells(metrics, deploy),
        )
        _more_deploy_rows(table, metrics, deploy)
    return table


def _status_cell(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return "[green]ok[/]"
    if row["status"] == "raced-out":
        return f"[yellow]raced out r{_fmt(row['metrics'].get('race_round'))}[/]"
    return f"[red]{row['status']}[/]"


def _race_accuracy(metrics: dict[str, Any]) -> Text:
    """A raced-out run's accuracy on its last round's test images (dim: not the full test set)."""
    accuracy, interval = metrics.get("race_accuracy"), metrics.get("race_accuracy_ci")
    shown = _fmt(accuracy, ".3f")
    if isinstance(interval, list) and len(interval) == 2:
        shown.append(f" ±{(interval[1] - interval[0]) / 2:.3f}")
    shown.stylize("dim")
    return shown


def _raced_text(row: dict[str, Any]) -> str | None:
    if row["status"] != "raced-out":
        return None
    return f"{printable(row['backbone'])} raced out, {printable(str(row.get('reason')))}"


def race_lines(race: dict[str, Any]) -> list[str]:
    """The race in words, a line per round: who led, the threshold, who went out."""
    lines = []
    for facts in race["rounds"]:
        images = facts["images"]
        head = (
            f"race round {facts['round']} ({facts['fraction']:.3g} of the images: "
            f"{images['train']} train, {images['test']} test; {len(facts['survivors'])} in)"
        )
        parts = []
        if facts["screened_out"]:
            parts.append(f"outside --keep-top by the screen: {', '.join(facts['screened_out'])}")
        if facts["leader"] is not None:
            parts.append(
                f"leader {facts['leader']} {facts['leader_accuracy']:.3f}; raced out at "
                f"p <= {facts['threshold']:.2g}: {', '.join(facts['out']) or 'none'}"
            )
        if facts["failed"]:
            parts.append(f"failed: {', '.join(facts['failed'])}")
        lines.append(f"{head}: {'; '.join(parts) or 'no comparison'}")
    computed = race["computed_features"]
    lines.append(
        f"race: {', '.join(race['finalists'])} ran in full; feature vectors computed: "
        f"{computed['rounds']} in the rounds, {computed['final_runs']} in the full runs"
    )
    return lines


def _add_deploy_columns(table: Table, deploy: list[str]) -> None:
    """`--deploy`: the target, its accuracy, ms (median per image, batch 1, 1 thread) and MB."""
    if not deploy:
        return
    table.add_column("target", no_wrap=True)
    for column in ("deployed acc", "ms", "MB"):
        table.add_column(column, justify="right", no_wrap=True)
    note = "deployed: measured on this machine; ms: median per image, batch 1, 1 thread"
    table.caption = "\n".join(filter(None, [table.caption, note]))


def _deploy_cells(metrics: dict[str, Any], deploy: list[str]) -> list[Text]:
    """The first target's cells, on the run's own row."""
    return _target_cells(metrics, deploy[0]) if deploy else []


def _more_deploy_rows(table: Table, metrics: dict[str, Any], deploy: list[str]) -> None:
    """A row of its own for each further target, under the run's row, the run's cells blank."""
    first = len(table.columns) - 4  # the deploy columns come last
    for target in deploy[1:]:
        table.add_row(*[""] * first, *_target_cells(metrics, target))


def _target_cells(metrics: dict[str, Any], target: str) -> list[Text]:
    figures = (metrics.get("deploy") or {}).get(target)
    if not figures or "error" in figures:
        return [_plain(target), Text("failed" if figures else "-"), Text("-"), Text("-")]
    return [
        _plain(target),
        _fmt(figures.get("accuracy"), ".3f"),
        _fmt(figures["latency"]["1_thread"]["median_ms"], ".2f"),
        _fmt(figures["size_bytes"] / 1e6, ".2f"),
    ]


def _mode_label(row: dict[str, Any]) -> str:
    """`frozen`, `frozen, tuned`, `fine-tune, top 10/49`, `frozen, 2 views, openvino fp32`..."""
    label = MODE_LABELS.get(row["mode"], row["mode"]) + (", tuned" if _tuned(row) else "")
    stages = _stages(row)
    if stages:
        label += f", {_unfrozen_part(stages[1]['unfreeze'])}"
    augmentation = _augmentation(row)
    if augmentation:
        unused = (_tuned(row) or {}).get("augmented") is False  # --tune found them no help
        views = augmentation["views"]
        label += f", {views} view{'s' * (views != 1)}" + (" unused" if unused else "")
    return label + _engine_part(row)


def _engine_part(row: dict[str, Any]) -> str:
    return _engine_label((row.get("metrics") or {}).get("engine"))


def _engine_label(engine: Any) -> str:
    """`, openvino fp32`: the engine that extracted the features, without its version."""
    if not isinstance(engine, str) or not engine:
        return ""
    return ", " + " ".join(word for word in engine.split() if not word[:1].isdigit())


def _stages(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    """--unfreeze's two stages: on a fresh result, or in a stored record's settings."""
    stages = row.get("stages") or row.get("settings", {}).get("stages")
    return stages if isinstance(stages, list) and len(stages) == 2 else None


def _unfrozen_part(facts: dict[str, Any]) -> str:
    if facts.get("layers") is None:
        return "all"
    return f"top {facts['layers']}/{facts['of_layers']}"


def _stages_text(row: dict[str, Any]) -> str | None:
    stages = _stages(row)
    if not stages:
        return None
    head, tune = stages
    source = f"run {head['from_run']}'s head" if head.get("from_run") else "head on cached features"
    part = tune["unfreeze"]
    share = part["parameters"] / part["of_parameters"] if part.get("of_parameters") else 0
    return (
        f"run {row.get('run_id')} in two stages: {source}, {head['epochs_run']} epochs "
        f"(val acc {_fmt(head.get('val_accuracy'), '.3f')}), then {_unfrozen_part(part)} layers "
        f"({part['parameters'] / 1e6:.2f} M parameters, {share:.0%} of the backbone's trainable) "
        f"for {tune['epochs_run']} epochs at lr {tune['lr']:g} "
        f"(val acc {_fmt(tune.get('val_accuracy'), '.3f')})"
    )


def _augmentation(row: dict[str, Any]) -> dict[str, Any] | None:
    """--augment: the views a run added, from a fresh result's or a stored record's settings."""
    return (row.get("settings") or {}).get("augmentation")


def _augmented_text(row: dict[str, Any]) -> str | None:
    augmentation = _augmentation(row)
    if not augmentation:
        return None
    low, high = augmentation["crop_scale"]
    ops = ", ".join(
        f"crop {low:g}-{high:g} of the area" if op == "crop" else op for op in augmentation["ops"]
    )
    return (
        f"run {row.get('run_id')} augmented: {augmentation['views']} cached views of each "
        f"training image ({ops}); validation and test are the originals"
    )


def _joined_text(row: dict[str, Any]) -> str | None:
    """`zoo run a+b`: the members whose features the head read side by side."""
    members = (row.get("settings") or {}).get("combination")
    if not members:
        return None
    widths = " + ".join(f"{m['backbone']} {m['feature_dim']}" for m in members)
    total = sum(m["feature_dim"] for m in members)
    return f"run {row.get('run_id')} joins features: {widths} = {total} per image"


def _tuned(row: dict[str, Any]) -> dict[str, Any] | None:
    """What --tune chose: on a fresh result, or in a stored record's settings."""
    return row.get("tuned") or row.get("settings", {}).get("tuned")


def _tuned_text(row: dict[str, Any]) -> str | None:
    chosen = _tuned(row)
    if not chosen:
        return None
    return (
        f"run {row.get('run_id')} tuned on validation: lr {chosen['learning_rate']:g}, "
        f"L2 {chosen['l2']:g}, label smoothing {chosen['label_smoothing']:g}, "
        f"dropout {chosen['dropout']:g}, {chosen['epochs']} epochs{_views_choice(chosen)} "
        f"(val acc {chosen['val_accuracy']:.3f}, best of {len(chosen['trials'])})"
    )


def _seeds_text(row: dict[str, Any]) -> str | None:
    """--seeds: the head's own noise, beside the test set's interval in the table."""
    metrics = row.get("metrics") or {}
    if not isinstance(metrics.get("seeds"), int) or metrics["seeds"] < 2:
        return None
    return (
        f"run {row.get('run_id')}: {metrics['seeds']} heads (seeds), test accuracy "
        f"{metrics['seed_accuracy_mean']:.3f} mean, {metrics['seed_accuracy_std']:.3f} sd across "
        f"heads; their averaged predictions {metrics['seed_averaged_accuracy']:.3f}"
    )


def _views_choice(chosen: dict[str, Any]) -> str:
    if "augmented" not in chosen:
        return ""
    return ", with the augmented views" if chosen["augmented"] else ", without the augmented views"


def _short(reason: str | None, limit: int = 60) -> str:
    """The start of a failure reason; `zoo compare` and `--json` show it whole."""
    text = str(reason)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _data(run: RunRecord) -> str:
    """The data folder's name beside the start of its fingerprint: `food a1b2c3d4`."""
    fingerprint = (run.data_fingerprint or "")[:8]
    return " ".join(part for part in (run.data_name, fingerprint) if part) or "-"


def stored_row(record: RunRecord) -> dict[str, Any]:
    """A stored run as a row of `comparison_table` (the shape of `zoo run --json`'s rows)."""
    return {**record.to_json(), "run_id": record.id}


def runs_table(runs: list[RunRecord]) -> Table:
    table = Table(title="Runs (newest first)")
    for column in ("run", "when", "backbone", "mode", "test acc", "epochs", "data", "status"):
        table.add_column(column)
    for run in runs:
        augmented = ", augmented" if run.settings.get("augmentation") else ""
        table.add_row(
            str(run.id),
            _plain(run.created_at),
            _plain(run.backbone),
            _plain(run.mode + augmented + _engine_label(run.engine)),
            _race_accuracy(run.metrics)
            if run.status == "raced-out"
            else accuracy_text(run.metrics),
            _fmt(run.metrics.get("epochs_run")),
            _plain(_data(run)),
            _plain(run.status if run.is_ok else f"{run.status}: {_short(run.reason)}"),
        )
    return table


# One flat row a run for spreadsheets: (column, where in the record).
CSV_COLUMNS = (
    ("id", ("id",)),
    ("created_at", ("created_at",)),
    ("backbone", ("backbone",)),
    ("mode", ("mode",)),
    ("status", ("status",)),
    ("data", ("data",)),
    ("data_fingerprint", ("data_fingerprint",)),
    ("test_accuracy", ("metrics", "accuracy")),
    ("macro_f1", ("metrics", "macro_f1")),
    ("test_loss", ("metrics", "loss")),
    ("epochs_run", ("metrics", "epochs_run")),
    ("seconds", ("metrics", "seconds")),
    ("images_per_second", ("metrics", "images_per_second")),
    ("params_m", ("metrics", "params_m")),
    ("epochs", ("settings", "epochs")),
    ("batch_size", ("settings", "batch_size")),
    ("lr", ("settings", "lr")),
    ("seed", ("settings", "seed")),
    ("reason", ("reason",)),
)


def _dig(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def runs_csv(runs: list[RunRecord]) -> str:
    """The runs as CSV text with a header row; empty cells where a value is missing."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(name for name, _ in CSV_COLUMNS)
    for run in runs:
        facts = run.to_json()
        writer.writerow(_csv_cell(_dig(facts, keys)) for _, keys in CSV_COLUMNS)
    return buffer.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (`=cmd|'calc'!A0`).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A value as a CSV cell: text never starts a formula (OWASP's leading `'`), nor holds ESC."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    return ("'" if value.startswith(FORMULA_STARTS) else "") + printable(value)


def pull_table(reports: list[dict[str, Any]]) -> Table:
    table = Table(title="zoo pull")
    table.add_column("backbone", no_wrap=True, style="bold")
    table.add_column("status", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("where / why not", overflow="fold")
    for report in reports:
        status = "[green]ready[/]" if report["ready"] else "[red]not reachable[/]"
        detail = report["location"] if report["ready"] else report["reason"]
        table.add_row(_plain(report["name"]), status, _seconds(report["seconds"]), _plain(detail))
    return table


def screen_table(facts: dict[str, Any]) -> Table:
    """`zoo run --screen`: the backbones from the best screen score down, with the test
    accuracy of a stored full run on the same data where there is one."""
    title = (
        f"Screen ({facts['method']}) on {facts['images']} training images "
        f"({facts['fraction']:.3g} of each class)"
    )
    table = Table(title=title)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("backbone", no_wrap=True, style="bold")
    for column in ("score", "computed", "seconds", "trained acc", "run"):
        table.add_column(column, justify="right", no_wrap=True)
    for rank, row in enumerate(facts["ranking"], start=1):
        table.add_row(
            str(rank),
            _plain(row["backbone"]),
            _fmt(row["score"], ".4f"),
            _fmt(row["computed_features"]),
            _seconds(row["seconds"]),
            _fmt(row["trained_accuracy"], ".4f"),
            _fmt(row["trained_run"]),
        )
    return table


def screen_trust_line(facts: dict[str, Any]) -> str:
    """How far the screen agreed with trained accuracies on these data, in words."""
    tau = facts["kendall_tau"]
    paired = sum(row["trained_accuracy"] is not None for row in facts["ranking"])
    if tau is None and paired >= 3:
        return (
            f"the screen's scores or the stored accuracies of the {paired} trained backbones "
            "are all equal: no order to compare them by"
        )
    if tau is None:
        return (
            "no stored full runs of 3 or more of these backbones on these data: the screen's "
            "agreement with trained accuracy is unknown here"
        )
    return (
        f"Kendall tau between the screen and the stored test accuracies of {paired} "
        f"backbones on these data: {tau:+.2f} (1: same order, 0: unrelated)"
    )


def budget_lines(fit: Any) -> list[str]:
    """A BudgetFit (zoo.analysis.budget) for people: the budget, each fit, each run left out."""
    limits = [
        f"{name} <= {value:g} {unit}"
        for name, value, unit in (("latency", fit.budget_ms, "ms"), ("size", fit.budget_mb, "MB"))
        if value is not None
    ]
    order = "fastest first" if fit.prefer == "latency" else "most accurate first"
    head = f"Within budget ({', '.join(limits) or 'no limit'}; {order}):"
    lines = [head if fit.fits else head + " none"]
    lines += [
        f"  run {c.run_id} {c.backbone} on {c.target}: acc {c.accuracy:.3f}, "
        f"{c.ms:.2f} ms, {c.mb:.2f} MB"
        for c in fit.fits
    ]
    lines += [f"Does not fit: run {run} on {target}: {why}" for run, target, why in fit.left_out]
    return lines
