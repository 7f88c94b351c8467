"""The `zoo` command line: a thin typer layer that calls the engine and prints with Rich."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from zoo.catalog.plugins import Catalog, load_catalog
from zoo.cli import tables
from zoo.errors import UsageError, ZooError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

app = typer.Typer(
    help="Find which pretrained backbone transfers best to your images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output gets a wide table rather than Rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
# Messages on stderr are one line each, however narrow the terminal or log: the terminal may
# wrap them for display, but a log keeps them whole and greppable.
err = Console(stderr=True, soft_wrap=True)


INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT)
LARGEST_LIMIT = 1_000_000  # `zoo runs --last`
# `zoo run` and `zoo compare`: deploy each run and choose within a budget (zoo.runs.deploy).
DEPLOY_OPTION = typer.Option(
    None,
    "--deploy",
    help="Export each run to TARGET (repeat, or a,b) and measure its accuracy, size and "
    "latency here: tflite-float16, tflite-int8, openvino-fp32, openvino-int8.",
)
BUDGET_MS_OPTION = typer.Option(
    None, "--budget-ms", help="Keep deployed models whose median latency (1 thread) is within X ms."
)
BUDGET_MB_OPTION = typer.Option(
    None, "--budget-mb", help="Keep deployed models whose file is within Y MB."
)
PREFER_OPTION = typer.Option(
    "speed",
    "--prefer",
    help="Break ties by speed, size, accuracy or latency (measured, with --deploy).",
)


class Settings:
    """Options given before the command (`zoo --registry F list`)."""

    registry: Path | None = None
    debug: bool = False


@app.callback()
def _global_options(
    registry: Path | None = typer.Option(
        None,
        "--registry",
        envvar="ZOO_REGISTRY",
        help="Use this registry file instead of zoo's own.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    Settings.registry = registry
    Settings.debug = debug


def load_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter (printed before logging is set up) hidden."""
    if Settings.debug or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
            import tf_keras  # noqa: F401

            tensorflow.config.list_physical_devices()  # device probing logs here too
            tensorflow.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def catalog() -> Catalog:
    """The backbones, with any plugin or registry problems printed as warnings."""
    loaded = load_catalog(Settings.registry)
    for problem in loaded.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    return loaded


def print_json(value) -> None:
    out.print_json(json.dumps(value))


def emit(value, as_json: bool, table) -> None:
    """Print `value` as JSON for scripts, or as the Rich table `table(value)` for people."""
    if as_json:
        print_json(value)
    else:
        out.print(table(value))


@app.command("list")
def list_backbones(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the backbones: handle, input, features, params, ImageNet top-1, ready offline."""
    from zoo.api import describe

    emit([describe(b) for b in catalog().backbones.values()], as_json, tables.backbones_table)


@app.command()
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Everything known about one backbone, and which engine `zoo run` will extract it with."""
    from zoo.api import describe
    from zoo.extraction.engines import load_engines
    from zoo.extraction.engines.registry import describe_engine

    loaded = catalog()
    facts = describe(loaded.get(name))
    cached_at = Path(facts["cached_at"]) if facts["cached_at"] else None
    facts.update(describe_engine(load_engines(loaded.plugins), loaded.get(name), cached_at))
    emit(facts, as_json, tables.facts_table)


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The installed plugins: name, version, hooks."""
    loaded = catalog().plugins
    rows = [
        {
            "name": name,
            "version": loaded.versions[name],
            "hooks": sorted(caller.name for caller in loaded.manager.get_hookcallers(plugin)),
        }
        for name, plugin in loaded.manager.list_name_plugin()
    ]
    emit(rows, as_json, tables.plugins_table)


@app.command()
def pull(
    names: list[str] | None = typer.Argument(None, help="Backbones to fetch (see `zoo list`)."),
    all_backbones: bool = typer.Option(False, "--all", help="Fetch every backbone."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Download (or build) backbones into the local cache and check that each one loads."""
    from zoo.extraction.pull import pull_backbones

    backbones = catalog().select(names or [], all_backbones, verb="pull")
    load_tensorflow()
    with err.status("") as status:
        reports = pull_backbones(backbones, lambda name: status.update(f"fetching {name} ..."))
    emit(reports, as_json, tables.pull_table)
    raise typer.Exit(0 if all(r["ready"] for r in reports) else 1)


@app.command()
def run(
    names: list[str] | None = typer.Argument(None, help="Backbones to run (see `zoo list`)."),
    all_backbones: bool = typer.Option(
        False, "--all", help="Run every backbone that can be loaded."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Folder holding train/ and test/ (default: the demo)."
    ),
    train: Path | None = typer.Option(None, "--train", help="Training image folder (with --test)."),
    test: Path | None = typer.Option(None, "--test", help="Test image folder (with --train)."),
    epochs: int = typer.Option(5, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(32, "--batch-size", help="Training batch size."),
    lr: float | None = typer.Option(
        None,
        "--lr",
        help="Learning rate [default: 3e-3 for a head, 1e-3 from scratch, 1e-4 to fine-tune].",
    ),
    seed: int = typer.Option(42, "--seed", help="Seed for the validation split and training."),
    mode: str = typer.Option(
        "feature-extraction", "--mode", help="feature-extraction or fine-tune."
    ),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Share of train held out for validation."
    ),
    patience: int = typer.Option(3, "--patience", help="Early-stopping patience, in epochs."),
    max_bad: int = typer.Option(
        50, "--max-bad", help="Most unreadable files to skip before refusing."
    ),
    logdir: Path | None = typer.Option(
        None, "--logdir", help="TensorBoard root [default: ZOO_HOME/tensorboard]."
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="TensorBoard experiment name."
    ),
    head_from: int | None = typer.Option(
        None, "--head-from", help="Fine-tune: start from this run's head."
    ),
    strategy: str = typer.Option(
        "auto",
        "--strategy",
        help="End-to-end training: auto, default, mirrored (local GPUs) or multi-worker (TF_CONFIG).",
    ),
    engine: str = typer.Option(
        "auto",
        "--engine",
        help="Feature extraction: auto (OpenVINO on a CPU, TensorFlow on a GPU), tensorflow, openvino.",
    ),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32, or bf16 on CPUs with native bf16 (OpenVINO)."
    ),
    tune: bool = typer.Option(
        False, "--tune", help="Search the head's settings on validation, then refit (frozen only)."
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Extract features on a Ray cluster: HOST:PORT of its head, or auto (zoo[ray]).",
    ),
    unfreeze: str | None = typer.Option(
        None,
        "--unfreeze",
        help="Fine-tune in two stages: the head frozen, then all, the top N layers or a "
        "fraction (0.25) of the backbone at --lr [1e-4].",
    ),
    fine_tune_epochs: int | None = typer.Option(
        None, "--fine-tune-epochs", help="--unfreeze: epochs of stage 2 [default: --epochs]."
    ),
    augment: int = typer.Option(
        0, "--augment", help="Frozen: add K cached augmented views of each training image."
    ),
    augment_ops: str = typer.Option(
        "flip,crop,color", "--augment-ops", help="What a view draws: flip, crop, color."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    deploy: list[str] | None = DEPLOY_OPTION,
    budget_ms: float | None = BUDGET_MS_OPTION,
    budget_mb: float | None = BUDGET_MB_OPTION,
    prefer: str = PREFER_OPTION,
) -> None:
    """Train and evaluate backbones (A+B: one head on their features joined); ends with a
    comparison table. Exit 1 if any failed."""
    from zoo.api import run_backbones
    from zoo.cli.progress import RichReporter
    from zoo.extraction.engines import load_engines
    from zoo.reporting import Reporter
    from zoo.runs.runner import RunSettings

    settings = RunSettings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        mode=mode,
        val_fraction=val_fraction,
        patience=patience,
        max_bad=max_bad,
        logdir=logdir,
        experiment=experiment,
        head_from=head_from,
        strategy=strategy,
        engine=engine,
        precision=precision,
        tune=tune,
        ray=ray,
        unfreeze=unfreeze,
        fine_tune_epochs=fine_tune_epochs,
        augment=augment,
        augment_ops=augment_ops,
    )
    loaded = catalog()  # with the settings above: usage errors answer before TensorFlow loads
    selection = loaded.select(names or [], all_backbones, combine=True)
    settings.check_selection(selection, all_backbones)
    targets = _deploy_targets(loaded, deploy, budget_ms, budget_mb, prefer)
    _refuse_combined_deploy(selection, targets)
    if data is not None or train is not None or test is not None:
        from zoo.data.folders import find_splits

        find_splits(data, train, test)  # a missing folder is a usage error, before TensorFlow
    engines = load_engines(loaded.plugins)
    for problem in engines.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    reporter = Reporter() if as_json else RichReporter(err)
    load_tensorflow()
    summary = run_backbones(
        names or [],
        all_backbones=all_backbones,
        data=data,
        train=train,
        test=test,
        settings=settings,
        catalog=loaded,
        reporter=reporter,
        engines=engines,
    )
    rows = [_result_row(result) for result in summary.results]
    deployed = _deploy_after_run(summary, rows, targets, reporter)
    comparison = _compare_after_run(summary, reporter)
    if as_json:
        print_json(
            {
                "data": summary.data,
                "skipped": [str(p) for p, _ in summary.skipped],
                "runs": rows,
                "report": str(comparison.html) if comparison else None,
                **_budget_json(deployed, targets, budget_ms, budget_mb, prefer),
            }
        )
    else:
        out.print(
            tables.comparison_table(
                rows, title=f"zoo run on {escape(summary.data)}", deploy=_names(targets)
            )
        )
        _print_budget(deployed, targets, budget_ms, budget_mb, prefer)
        for result in summary.results:
            name = escape(result.backbone)
            if not result.ok:
                err.print(f"[red]{name} failed:[/] {escape(result.reason or '')}", highlight=False)
            elif "error" in result.artifacts:
                problem = escape(result.artifacts["error"])
                err.print(
                    f"[yellow]warning:[/] run {result.run_id} ({name}) is stored with its "
                    f"metrics, but its model was not saved: {problem}",
                    highlight=False,
                )
        if comparison:
            err.print(f"comparison report: {escape(str(comparison.html))}", highlight=False)
    raise typer.Exit(max(summary.exit_code, _deploy_exit_code(deployed, targets)))


def _names(targets) -> list[str]:
    return [target.name for target in targets]


def _deploy_targets(loaded, deploy, budget_ms, budget_mb, prefer) -> list:
    """The --deploy targets, checked with the budget flags before any work starts."""
    from zoo.analysis.budget import check_budget
    from zoo.runs.targets import load_targets, parse_target_names

    names = parse_target_names(deploy)
    check_budget(budget_ms, budget_mb, prefer, names)
    if not names:
        return []
    found = load_targets(loaded.plugins if loaded else catalog().plugins)
    for problem in found.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    return found.chosen(names)


def _refuse_combined_deploy(selection, targets) -> None:
    from zoo.catalog.combination import Combination

    for chosen in selection:
        if targets and isinstance(chosen, Combination):
            raise UsageError(
                f"{chosen.name} trains one head on several backbones' features, so it has no "
                f"single model to deploy; drop --deploy, or run the members one by one"
            )


def _deploy_after_run(summary, rows: list[dict], targets, reporter) -> list[dict]:
    """Each stored run with a saved model, deployed and measured; its row shows the figures."""
    from zoo.runs.deploy import deploy_runs
    from zoo.runs.store import get_run

    if not targets:
        return []
    records = [
        get_run(result.run_id)
        for result in summary.results
        if result.ok and result.run_id is not None and "model" in result.artifacts
    ]
    measured = deploy_runs(records, targets, reporter)
    for row in rows:
        if row["run_id"] in measured:
            row["metrics"]["deploy"] = measured[row["run_id"]]
    return [get_run(record["id"]) for record in records]


def _deploy_stored(stored: list[dict], targets) -> list[dict]:
    """`zoo compare --deploy`: measure what is not measured yet on this machine, then re-read."""
    from zoo.cli.progress import RichReporter
    from zoo.runs.deploy import check_deployable, deploy_runs, needs_measuring
    from zoo.runs.store import get_run

    for record in stored:
        check_deployable(record)
    if needs_measuring(stored, targets):
        load_tensorflow()
        deploy_runs(stored, targets, RichReporter(err))
    return [get_run(record["id"]) for record in stored]


def _deploy_exit_code(records: list[dict], targets) -> int:
    """1 when a target failed on some run (the run itself is stored all the same)."""
    failed = any(
        "error" in (record["metrics"].get("deploy") or {}).get(target.name, {})
        for record in records
        for target in targets
    )
    return 1 if failed else 0


def _budget_json(records, targets, budget_ms, budget_mb, prefer) -> dict:
    from zoo.analysis.budget import within_budget

    if not targets:
        return {}
    fit = within_budget(records, _names(targets), budget_ms, budget_mb, prefer)
    return {"budget": fit.facts()}


def _print_budget(records, targets, budget_ms, budget_mb, prefer) -> None:
    from zoo.analysis.budget import within_budget

    if budget_ms is None and budget_mb is None and prefer != "latency":
        return
    fit = within_budget(records, _names(targets), budget_ms, budget_mb, prefer)
    for line in tables.budget_lines(fit):
        out.print(escape(line), highlight=False)


def _compare_after_run(summary, reporter):
    """The comparison report of a run of several backbones; a failure to draw it is a warning."""
    from zoo.runs.compare_report import compare_runs

    run_ids = [result.run_id for result in summary.results if result.ok]
    if len(run_ids) < 2:
        return None
    try:
        return compare_runs(run_ids)
    except Exception as error:  # the runs are stored; the pictures can be drawn again later
        reporter.warning(
            f"could not write the comparison report ({error}); try `zoo report --compare`"
        )
        return None


def _result_row(result) -> dict:
    return {
        "run_id": result.run_id,
        "backbone": result.backbone,
        "mode": result.mode,
        "status": result.status,
        "reason": result.reason,
        "metrics": result.all_metrics(),
        "artifact_error": result.artifacts.get("error"),
        "pending": result.pending,
        "tuned": result.tuned,
        "stages": result.stages,
        "settings": result.recorded,
    }


@app.command()
def runs(
    last: int = typer.Option(20, "--last", "--limit", help="Show the newest N matching runs."),
    backbone: str | None = typer.Option(None, "--backbone", help="Only runs of this backbone."),
    data: str | None = typer.Option(
        None, "--data", help="Only runs on this data folder (name, path or fingerprint start)."
    ),
    status: str | None = typer.Option(None, "--status", help="Only runs that are ok or failed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (for spreadsheets)."),
) -> None:
    """Stored runs, newest first: data folder and fingerprint, test accuracy, status."""
    from zoo.runs.store import STATUSES, list_runs

    if not 1 <= last <= LARGEST_LIMIT:
        raise UsageError(f"--last must be between 1 and {LARGEST_LIMIT}")
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    stored = list_runs(last, backbone=backbone, data=data, status=status)
    if not stored:
        _check_filter_values(backbone, data)
    if as_csv:
        sys.stdout.write(tables.runs_csv(stored))
    else:
        emit(stored, as_json, tables.runs_table)


def _check_filter_values(backbone: str | None, data: str | None) -> None:
    """A filter value that matches no stored run at all is likely a typo: say what is stored."""
    from zoo.runs.store import list_runs, stored_values

    if backbone is not None and not list_runs(1, backbone=backbone):
        _no_stored_run("--backbone", backbone, stored_values("backbone"))
    if data is not None and not list_runs(1, data=data):
        _no_stored_run("--data", data, sorted({Path(p).name for p in stored_values("data")}))


def _no_stored_run(option: str, value: str, known: list[str]) -> None:
    import difflib

    close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"stored: {', '.join(known) or 'none'}"
    raise UsageError(f"no stored run has {option} {value!r}; {hint}")


@app.command()
def compare(
    run_ids: list[int] = typer.Argument(..., help="Run ids (see `zoo runs`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    deploy: list[str] | None = DEPLOY_OPTION,
    budget_ms: float | None = BUDGET_MS_OPTION,
    budget_mb: float | None = BUDGET_MB_OPTION,
    prefer: str = PREFER_OPTION,
) -> None:
    """Chosen runs side by side (with --deploy: each exported and measured, once per target)."""
    from zoo.runs.store import get_run

    targets = _deploy_targets(None, deploy, budget_ms, budget_mb, prefer)
    stored = [get_run(run_id) for run_id in run_ids]
    if targets:
        stored = _deploy_stored(stored, targets)
    if as_json:
        budget = _budget_json(stored, targets, budget_ms, budget_mb, prefer)
        print_json({"runs": stored, **budget} if budget else stored)
    else:
        rows = [{**record, "run_id": record["id"]} for record in stored]
        out.print(tables.comparison_table(rows, title="Runs compared", deploy=_names(targets)))
        _print_budget(stored, targets, budget_ms, budget_mb, prefer)
        for row in rows:
            if row["status"] != "ok":
                out.print(
                    escape(f"run {row['id']} ({row['backbone']}) {row['status']}: {row['reason']}"),
                    highlight=False,
                )


@app.command()
def report(
    run_ids: list[int] = typer.Argument(..., help="Run id, or several with --compare."),
    compare_runs: bool = typer.Option(
        False, "--compare", help="Compare the runs: PNGs and one self-contained HTML file."
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for the files [default: the run's report/, or ZOO_HOME/reports/].",
    ),
) -> None:
    """A run's loss/accuracy curves and confusion matrix as PNGs; or, with --compare, several runs
    side by side: accuracy against speed, per-class accuracy and the loss curves."""
    from zoo.runs.report import write_report
    from zoo.runs.store import get_run

    if len(run_ids) > 1 and not compare_runs:
        raise UsageError("give one run id, or --compare RUN... to compare several")
    if compare_runs:
        from zoo.runs.compare_report import compare_runs as write_comparison

        comparison = write_comparison(run_ids, out_dir)
        for path in [*comparison.pictures, comparison.html]:
            out.print(str(path), highlight=False)
        for line in comparison.left_out:
            err.print(f"[yellow]left out:[/] {escape(line)}", highlight=False)
        return
    for path in write_report(get_run(run_ids[0]), out_dir):
        out.print(escape(str(path)), highlight=False)


@app.command("tensorboard")
def tensorboard_command(
    logdir: Path | None = typer.Option(
        None, "--logdir", help="Log root [default: ZOO_HOME/tensorboard]."
    ),
    port: int = typer.Option(6006, "--port", help="Port on 127.0.0.1."),
) -> None:
    """Start TensorBoard on zoo's logs (127.0.0.1 only); the HPARAMS tab compares the runs."""
    from zoo.home import tensorboard_root

    root = logdir or tensorboard_root()
    if not root.is_dir():
        raise UsageError(
            f"no TensorBoard logs at {root} yet; `zoo run` writes them (or pass --logdir)"
        )
    if not 0 < port < 65536:
        raise UsageError("--port must be between 1 and 65535")
    load_tensorflow()
    from tensorboard.program import TensorBoard

    board = TensorBoard()
    board.configure(logdir=str(root), host="127.0.0.1", port=port)
    try:
        code = board.main()  # serves until Ctrl-C; a port in use is one line from TensorBoard
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(0 if code == 0 else UsageError.exit_code)


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    run_id: int = typer.Option(..., "--run", help="Run whose saved model to use."),
    top_k: int = typer.Option(3, "--top-k", help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Top-k classes, with probabilities, for each image."""
    from zoo.runs.predict import predict as predict_images
    from zoo.runs.store import get_run

    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    record = get_run(run_id)
    load_tensorflow()
    predictions = predict_images(record, images, top_k)
    if as_json:
        print_json(predictions)
        return
    for prediction in predictions:
        ranked = ", ".join(f"{p['class']} {p['probability']:.1%}" for p in prediction["top"])
        out.print(escape(f"{prediction['image']}: {ranked}"), highlight=False)


@app.command(name="ensemble")
def ensemble_runs(
    run_ids: list[int] = typer.Argument(..., help="Two or more run ids (see `zoo runs`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Average stored runs' test probabilities; stored as a run, compared with its members."""
    from zoo.runs.ensemble import ensemble
    from zoo.runs.store import get_run

    record = ensemble(run_ids)
    if as_json:
        print_json(record)
        return
    members = [get_run(run_id) for run_id in record["settings"]["members"]]
    rows = [{**row, "run_id": row["id"]} for row in [*members, record]]
    out.print(tables.comparison_table(rows, title=f"Ensemble (run {record['id']})"))


@app.command()
def export(
    run_id: int = typer.Argument(..., help="Run id (see `zoo runs`)."),
    fmt: str = typer.Option("savedmodel", "--format", help="savedmodel or tflite."),
    quantize: str = typer.Option("none", "--quantize", help="TFLite: none, float16 or int8."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Folder to create [default: the run's folder/export-FORMAT-QUANTIZE]."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Folder with train/ and test/ [default: the run's own]."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Check at most this many test images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Export a run's model and labels; a TFLite file is checked against the SavedModel."""
    from zoo.cli.progress import RichReporter
    from zoo.data.folders import find_splits
    from zoo.runs.export import check_options, export_run
    from zoo.runs.store import get_run

    check_options(fmt, quantize)
    record = get_run(run_id)
    folders = dict(zip(("train", "test"), find_splits(data, None, None))) if data else None
    folder = out_dir or Path(record["artifacts"]["run_folder"]) / f"export-{fmt}-{quantize}"
    load_tensorflow()
    report = export_run(record, folder, fmt, quantize, folders, limit, RichReporter(err))
    if as_json:
        print_json(report.facts())
        return
    out.print(f"wrote {report.model} ({report.size_bytes / 1e6:.2f} MB) and {report.labels}")
    if report.agreement is not None:
        out.print(
            f"top-1 agreement with the SavedModel: {report.agreement:.4f} "
            f"on {report.checked} test images"
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a ZooError is one line on stderr, never a traceback."""
    try:
        # From here Ctrl-C and SIGTERM raise KeyboardInterrupt, handled below: temp files are
        # removed and the line printed (zoo.launch stops zoo outright before this point).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        _add_plugin_commands()  # inside: a plugin that hangs at import can be interrupted
        returned = app(args=argv, standalone_mode=False)  # typer.Exit(code) comes back as `code`
        if returned == INTERRUPTED:  # typer swallows KeyboardInterrupt and returns 130 in silence
            raise KeyboardInterrupt
        sys.exit(returned if isinstance(returned, int) else 0)
    except ZooError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; runs and caches already stored are intact", INTERRUPTED)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        _fail("aborted", INTERRUPTED)
    except OSError as error:  # a disk full, a folder not writable: the user's to fix, in one line
        _fail(_describe_os_error(error), 1)
    except Exception as error:
        if hasattr(error, "format_message") and hasattr(error, "exit_code"):  # typer/click usage
            message = error.format_message()
            if not message.strip():  # `zoo` alone: typer has printed the help already
                sys.exit(UsageError.exit_code)
            _fail(message, UsageError.exit_code)
        raise


def console_main() -> None:
    """The `zoo` command, a process of its own: main(), then exit without the final teardown.

    - zoo's models are tf_keras only, so here TensorFlow may skip importing Keras 3 as well
      (TF_USE_LEGACY_KERAS, unless you set it): 1.4 s off every command that trains. The Python
      API and main() leave the caller's process alone.
    - The interpreter's teardown of TensorFlow's modules takes ~0.6 s after the work is done and
      does nothing for zoo, whose writes are atomic and committed by then. atexit handlers still
      run and Python's streams are flushed; skipped are module teardown, joins of non-daemon
      threads (zoo leaves none) and C stdio buffers (zoo prints through Python's streams).
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed, or a reader that went away
                stream.flush()
        os._exit(code)


def _add_plugin_commands() -> None:
    """Let each plugin add its commands; one that raises is reported and skipped."""
    from zoo.catalog.plugins import load_plugins

    problems: list[str] = []
    for _ in load_plugins().call_each("register_commands", lambda name: {"cli": app}, problems):
        pass
    for problem in problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _describe_os_error(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return (
        f"{error.strerror or error}{where}; check that the folder exists, is writable and has "
        "space (ZOO_HOME for zoo's own files); --debug shows where it happened"
    )


def _fail(message: str, code: int) -> None:
    if Settings.debug:
        raise
    # Messages quote paths and names, which may hold [brackets]: never let Rich read them as markup.
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)
