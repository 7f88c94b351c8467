"""The `zoo` command line: a thin typer layer that calls the engine and prints with Rich."""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import signal
import sys
import warnings
from pathlib import Path

import typer
from rich.markup import escape

from zoo import quiet
from zoo.catalog.plugins import Catalog, load_catalog
from zoo.cli import tables
from zoo.cli.options import with_settings
from zoo.cli.text import SafeConsole, printable
from zoo.errors import UsageError, ZooError
from zoo.runs.settings import DATA, RunSettings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

app = typer.Typer(
    help="Find which pretrained backbone transfers best to your images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output gets a wide table rather than Rich's 80-column default.
out = SafeConsole(width=None if sys.stdout.isatty() else 160)
# Messages on stderr are one line each, however narrow the terminal or log: the terminal may
# wrap them for display, but a log keeps them whole and greppable.
err = SafeConsole(stderr=True, soft_wrap=True)


# The verdict's options, declared once for `zoo run` and `zoo compare` (docs/verdict.md).
VERDICT, RACE, DEPLOYMENT = "Verdict", "Race and screen", "Deployment"  # `--help` panels
VERDICT_ALPHA = typer.Option(
    0.05,
    "--alpha",
    help="The verdict's significance level (Holm-corrected).",
    rich_help_panel=VERDICT,
)
VERDICT_METRIC = typer.Option(
    "accuracy",
    "--metric",
    help="What the verdict compares: accuracy (exact McNemar) or balanced-accuracy "
    "(paired bootstrap; for imbalanced test sets).",
    rich_help_panel=VERDICT,
)

INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT)
LARGEST_LIMIT = 1_000_000  # `zoo runs --last`
# `zoo run` and `zoo compare`: deploy each run and choose within a budget (zoo.runs.deploy).
DEPLOY_OPTION = typer.Option(
    None,
    "--deploy",
    help="Export each run to TARGET (repeat, or a,b) and measure its accuracy, size and "
    "latency here: tflite-float16, tflite-int8, openvino-fp32, openvino-int8.",
    rich_help_panel=DEPLOYMENT,
)
BUDGET_MS_OPTION = typer.Option(
    None,
    "--budget-ms",
    help="Keep deployed models whose median latency (1 thread) is within X ms.",
    rich_help_panel=DEPLOYMENT,
)
BUDGET_MB_OPTION = typer.Option(
    None,
    "--budget-mb",
    help="Keep deployed models whose file is within Y MB.",
    rich_help_panel=DEPLOYMENT,
)
PREFER_OPTION = typer.Option(
    "speed",
    "--prefer",
    help="Break ties by speed, size, accuracy or latency (measured, with --deploy).",
    rich_help_panel=VERDICT,
)


class Settings:
    """Options given before the command (`zoo --registry F list`)."""

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
    from zoo.catalog import registry as registries

    registries.command_registry = registry  # every catalogue this command loads reads it
    Settings.debug = debug


def load_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter hidden (shown under --debug)."""
    if not Settings.debug:
        quiet.import_tensorflow()


def catalog() -> Catalog:
    """The backbones, with any plugin or registry problems printed as warnings."""
    loaded = load_catalog()  # `zoo --registry F` is read there (registry.command_registry)
    for problem in loaded.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    return loaded


def print_json(value) -> None:
    out.print_json(json.dumps(_finite(value), allow_nan=False))


def _finite(value):
    """`value` with NaN and infinities as None: JSON has no NaN, and readers choke on it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def emit(value, as_json: bool, table) -> None:
    """Print `value` as JSON for scripts, or as the Rich table `table(value)` for people."""
    if as_json:
        print_json(value)
    else:
        out.print(table(value))


# The filters `list`, `run` and `pull` share (their meaning: zoo/catalog/filters.py).
FAMILY = typer.Option(None, "--family", help="Only this family (mobilenet matches mobilenet_v2).")
MAX_PARAMS = typer.Option(None, "--max-params", help="At most this many million parameters.")
MIN_TOP1 = typer.Option(None, "--min-top1", help="At least this ImageNet top-1, percent.")
INPUT_SIZE = typer.Option(None, "--input-size", help="Only this input size: 224 or 384x384.")
PRETRAINED_ON = typer.Option(
    None, "--pretrained-on", help="Only pretrained on this: imagenet-1k, imagenet-21k..."
)
READY = typer.Option(False, "--ready", help="Only backbones ready offline.")
SEARCH = typer.Option(None, "--search", help="Words to find in names, handles and descriptions.")


def _filters(family, max_params, min_top1, input_size, pretrained_on, ready, search):
    from zoo.catalog.filters import Filters

    return Filters(family, max_params, min_top1, input_size, pretrained_on, ready, search)


@app.command("list")
def list_backbones(
    family: str | None = FAMILY,
    max_params: float | None = MAX_PARAMS,
    min_top1: float | None = MIN_TOP1,
    input_size: str | None = INPUT_SIZE,
    pretrained_on: str | None = PRETRAINED_ON,
    ready: bool = READY,
    search: str | None = SEARCH,
    sort: str = typer.Option("name", "--sort", help="name, top1 (best first) or params."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (every field)."),
) -> None:
    """List the backbones: family, input, features, params, ImageNet top-1, pretraining, ready."""
    from zoo.api import find_backbones

    chosen = _filters(family, max_params, min_top1, input_size, pretrained_on, ready, search)
    loaded = catalog()
    rows = find_backbones(loaded, chosen, sort)
    emit(rows, as_json, lambda r: tables.backbones_table(r, of=len(loaded.backbones)))


def _select(loaded: Catalog, names, all_backbones: bool, filters, verb: str) -> tuple[list, bool]:
    """(names, all) for Catalog.select: the filters pick names; offline `--all` keeps the ready."""
    from zoo.api import find_backbones, ready_when_offline

    if filters.active:
        if names:
            raise UsageError(f"give backbone names or filters, not both (see `zoo {verb} --help`)")
        names = [row["name"] for row in find_backbones(loaded, filters)]
        if not names:
            raise UsageError("no backbone matches those filters; try them with `zoo list`")
        err.print(f"selected {_count(names)}: {escape(', '.join(names))}", highlight=False)
        return names, False
    if all_backbones and not names and verb == "run":
        kept, waiting = ready_when_offline(list(loaded.backbones.values()))
        if waiting:
            err.print(
                f"[yellow]offline:[/] the model hub is unreachable; --all runs {_count(kept)} "
                f"ready offline and skips {_count(waiting)} not downloaded yet (fetch them "
                "where there is a network: `zoo pull --all`, or a part: `zoo pull --family NAME`)",
                highlight=False,
            )
            if not kept:
                raise UsageError("nothing to run offline: no backbone is ready; `zoo pull` one")
            return [backbone.name for backbone in kept], False
    return names or [], all_backbones


def _count(items: list) -> str:
    return f"{len(items)} backbone" + ("" if len(items) == 1 else "s")


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
    family: str | None = FAMILY,
    max_params: float | None = MAX_PARAMS,
    min_top1: float | None = MIN_TOP1,
    input_size: str | None = INPUT_SIZE,
    pretrained_on: str | None = PRETRAINED_ON,
    search: str | None = SEARCH,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Build the backbones plugins build (zoo:NAME) again."
    ),
) -> None:
    """Download (or build) backbones into the local cache and check that each one loads."""
    from zoo.extraction.pull import pull_backbones

    chosen = _filters(family, max_params, min_top1, input_size, pretrained_on, False, search)
    loaded = catalog()
    names, all_backbones = _select(loaded, names, all_backbones, chosen, "pull")
    backbones = loaded.select(names, all_backbones, verb="pull")
    load_tensorflow()
    with err.status("") as status:
        reports = pull_backbones(
            backbones, lambda name: status.update(f"fetching {name} ..."), rebuild=rebuild
        )
    emit(reports, as_json, tables.pull_table)
    raise typer.Exit(0 if all(r["ready"] for r in reports) else 1)


@app.command()
@with_settings
def run(
    names: list[str] | None = typer.Argument(None, help="Backbones to run (see `zoo list`)."),
    all_backbones: bool = typer.Option(
        False, "--all", help="Run every backbone (offline: every ready one)."
    ),
    family: str | None = FAMILY,
    max_params: float | None = MAX_PARAMS,
    min_top1: float | None = MIN_TOP1,
    input_size: str | None = INPUT_SIZE,
    pretrained_on: str | None = PRETRAINED_ON,
    ready: bool = READY,
    search: str | None = SEARCH,
    data: Path | None = typer.Option(
        None,
        "--data",
        help=escape("Folder of train/ [val/] [test/], or of class folders (default: the demo)."),
        rich_help_panel=DATA,
    ),
    train: Path | None = typer.Option(
        None, "--train", help="Training image folder (with --test).", rich_help_panel=DATA
    ),
    test: Path | None = typer.Option(
        None, "--test", help="Test image folder (with --train).", rich_help_panel=DATA
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="CSV of path,label[,split] rows, paths relative to it.",
        rich_help_panel=DATA,
    ),
    *,
    settings: RunSettings,  # each field an option, declared once there (zoo/cli/options.py)
    alpha: float = VERDICT_ALPHA,
    metric: str = VERDICT_METRIC,
    screen_method: str | None = typer.Option(
        None,
        "--screen",
        help="Order the backbones by a screen of their features: knn or logme.",
        rich_help_panel=RACE,
    ),
    screen_only: bool = typer.Option(
        False,
        "--screen-only",
        help="Print the screen's ranking (--screen, default knn); no training.",
        rich_help_panel=RACE,
    ),
    screen_fraction: float = typer.Option(
        0.125,
        "--screen-fraction",
        help="Share of each class's training images the screen uses.",
        rich_help_panel=RACE,
    ),
    race: bool = typer.Option(
        False,
        "--race",
        help="Race the frozen backbones on 1/8, 1/4, 1/2 of the images; only survivors run in full.",
        rich_help_panel=RACE,
    ),
    keep_top: int | None = typer.Option(
        None,
        "--keep-top",
        help="--race --screen: keep only the K best by the screen after round 1.",
        rich_help_panel=RACE,
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
    from zoo.cli.progress import RichReporter, WarningsOnly
    from zoo.extraction.engines import load_engines
    from zoo.runs.runner import preflight

    chosen = _filters(family, max_params, min_top1, input_size, pretrained_on, ready, search)
    check_verdict_options(alpha, prefer, metric)
    race_settings = _race_settings(race, screen_only, alpha, screen_method, keep_top)
    loaded = catalog()  # with the settings above: usage errors answer before TensorFlow loads
    names, all_backbones = _select(loaded, names, all_backbones, chosen, "run")
    targets = _deploy_targets(loaded, deploy, budget_ms, budget_mb, prefer)
    _refuse_combined_deploy(loaded.select(names, all_backbones, combine=True), targets)
    engines = load_engines(loaded.plugins)
    preflight(settings, engines)  # the settings against this machine (run_backbones again)
    settings.check_selection(loaded.select(names, all_backbones, combine=True), all_backbones)
    if race_settings is not None:
        from zoo.runs.race import check_race

        check_race(loaded.select(names, all_backbones, combine=True), settings)
    if data is not None or train is not None or test is not None or manifest is not None:
        from zoo.data.layouts import find_layout

        find_layout(data, train, test, manifest)  # bad data is a usage error, before TensorFlow
    for problem in engines.problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    reporter = WarningsOnly(err) if as_json else RichReporter(err)
    screening = None
    if race_settings is None and (screen_only or screen_method is not None):
        from zoo.runs.screening import check_screen

        check_screen(screen_method, screen_fraction)
        load_tensorflow()
        screening = _screen(
            loaded.select(names or [], all_backbones, combine=True),
            (data, train, test, manifest),
            screen_method or "knn",
            screen_fraction,
            settings,
            reporter,
            engines,
        )
        if screen_only:
            emit(screening.facts(), as_json, tables.screen_table)
            if not as_json:
                err.print(escape(tables.screen_trust_line(screening.facts())), highlight=False)
            raise typer.Exit(0)
        if not as_json:
            out.print(tables.screen_table(screening.facts()))
        names = [*screening.ranking, *screening.not_screened]
        all_backbones = False
    load_tensorflow()
    summary = run_backbones(
        names,
        all_backbones=all_backbones,
        data=data,
        train=train,
        test=test,
        manifest=manifest,
        settings=settings,
        catalog=loaded,
        reporter=reporter,
        engines=engines,
        race=race_settings,
    )
    rows = [_result_row(result) for result in summary.results]
    if Settings.debug:  # docs/errors.md: --debug shows where a failed backbone failed
        for result in summary.results:
            if result.traceback:
                sys.stderr.write(f"{result.backbone}: {result.traceback}")
    deployed = _deploy_after_run(summary, rows, targets, reporter)
    comparison = _compare_after_run(summary, reporter, alpha, prefer, metric)
    budget = _budget_fit(deployed, targets, budget_ms, budget_mb, prefer)
    judgement = _judge_after_run(summary, alpha, prefer, metric, budget)
    if as_json:
        print_json(
            {
                "data": summary.data,
                "skipped": [str(p) for p, _ in summary.skipped],
                "runs": rows,
                "report": str(comparison.html) if comparison else None,
                "verdict": _verdict_facts(judgement),
                **({"screen": screening.facts()} if screening else {}),
                **({"race": summary.race} if summary.race else {}),
                **({"budget": budget.facts()} if budget else {}),
            }
        )
    else:
        out.print(
            tables.comparison_table(
                rows, title=f"zoo run on {escape(summary.data)}", deploy=_names(targets)
            )
        )
        _print_budget(budget, budget_ms, budget_mb, prefer)
        for line in tables.race_lines(summary.race) if summary.race else []:
            out.print(escape(line), highlight=False)
        for result in summary.results:
            name = escape(result.backbone)
            if result.status == "raced-out":
                continue  # the table and the race's lines say where and why
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
        if judgement:
            print_judgement(judgement)
    raise typer.Exit(max(summary.exit_code, _deploy_exit_code(deployed, targets)))


def _race_settings(race: bool, screen_only: bool, alpha: float, screen, keep_top):
    """--race's settings (None without it), its usage errors before any work starts."""
    from zoo.runs.race import race_settings

    if race and screen_only:
        raise UsageError(
            "--screen-only trains nothing and --race trains the survivors: use one of them"
        )
    return race_settings(race, alpha, screen, keep_top)


def _names(targets) -> list[str]:
    return [target.name for target in targets]


def _deploy_targets(loaded, deploy, budget_ms, budget_mb, prefer) -> list:
    """The --deploy targets, checked with the budget flags before any work starts."""
    from zoo.runs.targets import choose_targets

    def warn(problem: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)

    def plugins():  # `zoo compare` loads the catalogue only when a target is named
        return (loaded or catalog()).plugins

    return choose_targets(deploy, budget_ms, budget_mb, prefer, plugins, warn)


def _refuse_combined_deploy(selection, targets) -> None:
    if targets:
        from zoo.runs.deploy import refuse_combined_selection

        refuse_combined_selection(selection)


def _deploy_after_run(summary, rows: list[dict], targets, reporter) -> list:
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
    return [get_run(record.id) for record in records]


def _deploy_stored(stored: list, targets) -> list:
    """`zoo compare --deploy`: measure what is not measured yet on this machine, then re-read."""
    from zoo.cli.progress import RichReporter
    from zoo.runs.deploy import check_deployable, deploy_runs, needs_measuring
    from zoo.runs.store import get_run

    for record in stored:
        check_deployable(record)
    if needs_measuring(stored, targets):
        load_tensorflow()
        deploy_runs(stored, targets, RichReporter(err))
    return [get_run(record.id) for record in stored]


def _deploy_exit_code(records: list, targets) -> int:
    """1 when a target failed on some run (the run itself is stored all the same)."""
    failed = any(
        "error" in record.deployed.get(target.name, {}) for record in records for target in targets
    )
    return 1 if failed else 0


def _budget_fit(records, targets, budget_ms, budget_mb, prefer):
    """The deployed (run, target) pairs within the budget; None without --deploy."""
    from zoo.analysis.budget import within_budget

    if not targets:
        return None
    return within_budget(records, _names(targets), budget_ms, budget_mb, prefer)


def _deployed_predictions(budget) -> dict | None:
    """For the verdict: each run that fits the budget, judged on its first fitting target's
    deployed predictions, with that model's latency for --prefer latency."""
    if budget is None:
        return None
    chosen = {}
    for fit in budget.fits:
        if fit.probabilities and fit.run_id not in chosen:
            chosen[fit.run_id] = (fit.target, fit.probabilities, fit.ms)
    return chosen


def _print_budget(budget, budget_ms, budget_mb, prefer) -> None:
    if budget is None or (budget_ms is None and budget_mb is None and prefer != "latency"):
        return
    for line in tables.budget_lines(budget):
        out.print(escape(line), highlight=False)


def _screen(backbones, sources, method, fraction, settings, reporter, engines):
    """The screen of these backbones on the run's data, any layout (the demo unless given)."""
    from zoo.data.demo import demo_data_dir
    from zoo.data.layouts import find_layout
    from zoo.runs.screening import screen

    data, train, test, manifest = sources
    if data is None and train is None and test is None and manifest is None:
        data = demo_data_dir()
    layout = find_layout(data, train, test, manifest)
    return screen(backbones, layout, method, fraction, settings, reporter, engines)


def check_verdict_options(alpha: float, prefer: str, metric: str) -> None:
    from zoo.analysis.verdict import METRICS, PREFERENCES

    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)}")
    if not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1, e.g. 0.05")
    if prefer not in PREFERENCES:
        raise UsageError(f"--prefer must be one of {', '.join(PREFERENCES)}")


def _judge_after_run(summary, alpha: float, prefer: str, metric: str, budget=None):
    """The verdict over the runs of a command that trained two or more backbones."""
    from zoo.runs.comparison import announce, judge
    from zoo.runs.store import get_run

    if len(summary.results) < 2:
        return None
    stored = [
        get_run(result.run_id)
        for result in summary.results
        if (result.ok or result.status == "raced-out") and result.run_id
    ]
    deployed = _deployed_predictions(budget)
    judgement = judge(stored, alpha=alpha, prefer=prefer, metric=metric, deployed=deployed)
    for problem in announce(judgement, stored):  # a tracker that fails is a warning only
        err.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    return judgement


def _verdict_facts(judgement) -> dict | None:
    if judgement is None:
        return None
    if judgement.verdict is None:
        return {"refused": judgement.refused, "left_out": judgement.left_out}
    return {**judgement.verdict.facts(), "left_out": judgement.left_out}


def print_judgement(judgement) -> None:
    """The verdict in words after the table; runs left out of it, one line each on stderr."""
    from zoo.analysis.verdict import sentences

    for line in judgement.left_out:
        err.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
    if judgement.verdict is None:
        out.print(escape(judgement.refused or ""), highlight=False)
        return
    out.print()
    for line in sentences(judgement.verdict, judgement.names):
        out.print(escape(line), highlight=False)


def _compare_after_run(summary, reporter, alpha: float, prefer: str, metric: str):
    """The comparison report of a run of several backbones; a failure to draw it is a warning."""
    from zoo.runs.compare_report import compare_runs

    run_ids = [
        result.run_id
        for result in summary.results
        if (result.ok or result.status == "raced-out") and result.run_id is not None
    ]
    if sum(result.ok for result in summary.results) < 1 or len(run_ids) < 2:
        return None
    try:
        return compare_runs(run_ids, alpha=alpha, prefer=prefer, metric=metric)
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


@app.command("inspect")
def inspect_command(
    data: Path | None = typer.Argument(None, help="Data folder (any layout `zoo run` reads)."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="CSV of path,label[,split] rows instead of a folder."
    ),
    test_fraction: float = typer.Option(
        0.2, "--test-fraction", help="Without test/: share of each class held out for test."
    ),
    backbone: str = typer.Option(
        "efficientnet_lite0", "--backbone", help="Whose cached features find near-duplicates."
    ),
    threshold: float = typer.Option(
        0.98, "--threshold", help="Cosine similarity at which two images are near-duplicates."
    ),
    report_file: Path | None = typer.Option(
        None, "--report", help="Also write an HTML page with a contact sheet of the duplicates."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Class counts per split, image sizes and modes, unreadable files, exact duplicates and
    near-duplicates (from cached features) within and across splits."""
    from zoo.cli.inspect_view import inspect_report
    from zoo.cli.progress import RichReporter
    from zoo.runs.inspection import inspect_data

    if data is None and manifest is None:
        raise UsageError("give a data folder (zoo inspect DIR) or --manifest FILE.csv")
    if not 0 < test_fraction < 1:
        raise UsageError("--test-fraction must be in (0, 1), e.g. 0.2")
    if not 0 < threshold <= 1:
        raise UsageError("--threshold must be in (0, 1], e.g. 0.98")
    if report_file is not None and report_file.is_dir():
        raise UsageError(f"--report {report_file} is a folder; give a file name, e.g. data.html")
    facts = inspect_data(data, manifest, test_fraction, backbone, threshold, RichReporter(err))
    if report_file is not None:
        from zoo.runs.inspect_report import write_inspect_report

        facts["report"] = str(write_inspect_report(facts, report_file.absolute()))
    emit(facts, as_json, inspect_report)
    if report_file is not None and not as_json:
        err.print(f"report: {escape(facts['report'])}", highlight=False)


@app.command()
def runs(
    last: int = typer.Option(20, "--last", "--limit", help="Show the newest N matching runs."),
    backbone: str | None = typer.Option(None, "--backbone", help="Only runs of this backbone."),
    data: str | None = typer.Option(
        None, "--data", help="Only runs on this data folder (name, path or fingerprint start)."
    ),
    status: str | None = typer.Option(
        None, "--status", help="Only runs that are ok, failed, raced-out or damaged."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (for spreadsheets)."),
) -> None:
    """Stored runs, newest first: data folder and fingerprint, test accuracy, status."""
    from zoo.analysis.record import STATUSES
    from zoo.runs.store import list_runs

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
        emit([record.to_json() for record in stored], as_json, lambda _: tables.runs_table(stored))


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
    alpha: float = VERDICT_ALPHA,
    metric: str = VERDICT_METRIC,
    as_json: bool = typer.Option(False, "--json", help="Print JSON: the runs and the verdict."),
    deploy: list[str] | None = DEPLOY_OPTION,
    budget_ms: float | None = BUDGET_MS_OPTION,
    budget_mb: float | None = BUDGET_MB_OPTION,
    prefer: str = PREFER_OPTION,
) -> None:
    """Chosen runs side by side, and the verdict: which are tied for best on the same test
    images (with --deploy: each exported and measured once per target, judged as deployed)."""
    from zoo.runs.comparison import judge
    from zoo.runs.store import get_run

    check_verdict_options(alpha, prefer, metric)
    targets = _deploy_targets(None, deploy, budget_ms, budget_mb, prefer)
    stored = [get_run(run_id) for run_id in run_ids]
    if targets:
        stored = _deploy_stored(stored, targets)
    budget = _budget_fit(stored, targets, budget_ms, budget_mb, prefer)
    judgement = judge(
        stored, alpha=alpha, prefer=prefer, metric=metric, deployed=_deployed_predictions(budget)
    )
    if as_json:
        budgeted = {"budget": budget.facts()} if budget else {}
        runs = [record.to_json() for record in stored]
        print_json({"runs": runs, "verdict": _verdict_facts(judgement), **budgeted})
    else:
        rows = [tables.stored_row(record) for record in stored]
        out.print(tables.comparison_table(rows, title="Runs compared", deploy=_names(targets)))
        _print_budget(budget, budget_ms, budget_mb, prefer)
        for record in stored:
            if record.status not in ("ok", "raced-out"):  # raced-out: the verdict's notes say
                out.print(
                    escape(f"run {record.id} ({record.backbone}) {record.status}: {record.reason}"),
                    highlight=False,
                )
        print_judgement(judgement)


@app.command()
def report(
    run_ids: list[int] = typer.Argument(..., help="Run id, or several with --compare."),
    compare_runs: bool = typer.Option(
        False, "--compare", help="Compare the runs: PNGs and one self-contained HTML file."
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for the files (default: the run's report/, or ZOO_HOME/reports/).",
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
        None, "--logdir", help="Log root (default: ZOO_HOME/tensorboard)."
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
    _check_port_free(port)  # else TensorBoard prints its own 7 lines
    load_tensorflow()
    from tensorboard.program import TensorBoard

    board = TensorBoard()
    # load_fast "false": zoo's logs are small, and "auto" prints a 4-line NOTE on every start.
    board.configure(logdir=str(root), host="127.0.0.1", port=port, load_fast="false")
    try:
        code = board.main()  # serves until Ctrl-C; a port in use is one line from TensorBoard
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(0 if code == 0 else UsageError.exit_code)


def _check_port_free(port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TensorBoard binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(
                f"port {port} on 127.0.0.1 is in use (another TensorBoard?); "
                "pick a free one with --port"
            ) from None


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
    from zoo.cli.progress import RichReporter

    record = get_run(run_id)
    load_tensorflow()
    predictions = predict_images(record, images, top_k, RichReporter(err).warning)
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
    from zoo.cli.progress import RichReporter
    from zoo.runs.ensemble import ensemble
    from zoo.runs.store import get_run

    record = ensemble(run_ids, RichReporter(err))  # a failing tracker's warning on stderr
    if as_json:
        print_json(record.to_json())
        return
    members = [get_run(run_id) for run_id in record.members]
    rows = [tables.stored_row(row) for row in [*members, record]]
    out.print(tables.comparison_table(rows, title=f"Ensemble (run {record.id})"))


@app.command()
def export(
    run_id: int = typer.Argument(..., help="Run id (see `zoo runs`)."),
    fmt: str = typer.Option("savedmodel", "--format", help="savedmodel or tflite."),
    quantize: str = typer.Option("none", "--quantize", help="TFLite: none, float16 or int8."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Folder to create (default: the run's folder/export-FORMAT-QUANTIZE)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="The run's data folder, any layout (default: where it was)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Check at most this many test images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Export a run's model and labels; a TFLite file is checked against the SavedModel."""
    from zoo.cli.progress import RichReporter
    from zoo.data.layouts import find_layout
    from zoo.runs.artifacts import check_saved_model
    from zoo.runs.export import check_options, export_run
    from zoo.runs.store import get_run

    check_options(fmt, quantize)
    record = get_run(run_id)
    check_saved_model(record, "export")  # before TensorFlow: failed, raced out, ensemble, a+b
    folders = find_layout(data).folders if data else None  # any layout `zoo run` reads
    folder = out_dir or record.run_folder / f"export-{fmt}-{quantize}"
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


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A Python warning as one line: no source file, no line of code (docs/errors.md)."""
    return f"warning: {printable(str(message))}\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a ZooError is one line on stderr, never a traceback."""
    warnings.formatwarning = _warning_line
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
    except typer.Abort as abort:
        if isinstance(abort.__cause__, EOFError):  # click's reading of a file cut short
            _fail(f"a file ended early (EOFError: {abort.__cause__}); --debug shows which", 1)
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
    finally:  # main() may be called again in this process (tests, a notebook): start afresh
        from zoo.catalog import registry as registries

        registries.command_registry = None


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
