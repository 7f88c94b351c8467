"""`--deploy TARGET`: export a stored run to a target once, then measure what the shipped file does.

For each run and target: the export is cached in the run's folder (`deploy/<target>/`, written
atomically: a failed or interrupted export leaves nothing a later run reads); then, on this
machine, the deployed model's accuracy on every test image through the target's own runtime
(its test probabilities kept beside the run's, `test_probabilities-<target>.npz`, in the run's
test order, so a paired test can use them), the size on disk of what a user ships, and its
latency per image at batch 1 with 1 thread and with all threads (median and p90 of
TIMED_CALLS calls after WARMUP_CALLS). The figures are stored with the run:
`metrics.deploy[target]`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from zoo.analysis.budget import BudgetFit, within_budget
from zoo.analysis.evaluation import evaluate
from zoo.analysis.record import RunRecord
from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.catalog.plugins import load_plugins
from zoo.child import Duplex, how_it_ended, receive, spawn, stop
from zoo.data.decode import decoded_batches
from zoo.errors import UsageError
from zoo.home import atomic_dir, atomic_write_bytes
from zoo.quiet import import_tensorflow, stderr_hidden
from zoo.reporting import Reporter
from zoo.runs.artifacts import check_saved_model
from zoo.runs.export import geometry_of, run_images, size_on_disk
from zoo.runs.runner import RunSummary
from zoo.runs.store import get_run, update_run
from zoo.runs.targets import DeployTarget, load_targets

IN_PROCESS_VARIABLE = "ZOO_DEPLOY_HERE"  # 1: measure in this process (tests, a debugger)
TIMED_CALLS = 50
WARMUP_CALLS = 5
DECODE_BATCH = 32  # test images decoded ahead of the accuracy pass
EXPORT_FACTS = "export.json"  # in each cached export: which file or folder is the shipped model


def check_deployable(record: RunRecord) -> None:
    """A usage error (one line) for a run that has no single saved model to deploy."""
    if record.mode == "ensemble":
        raise UsageError(
            f"run {record.id} is an ensemble of runs {record.members}: it "
            "has no single model to deploy; deploy its members' runs"
        )
    check_saved_model(record, "deploy")  # failed, raced out, a+b, no model: refused, said why
    if not {"test", "root", "manifest"} & set(record.settings.get("data", {})):
        raise UsageError(f"run {record.id} does not record its test images; run it again")
    geometry_of(record)


def refuse_combined_selection(selection: list[Backbone | Combination]) -> None:
    """`a+b` trains one head on several backbones' features: refused before it trains."""
    for chosen in selection:
        if isinstance(chosen, Combination):
            raise UsageError(
                f"{chosen.name} trains one head on several backbones' features, so it has no "
                f"single model to deploy; drop --deploy, or run the members one by one"
            )


def this_machine() -> str:
    """Latency is a fact of a machine: measurements are reused only on the one that took them."""
    return f"{platform.node()} ({all_threads()} threads, {platform.machine()})"


def all_threads() -> int:
    """The CPU threads this process may use (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def latency_figures(seconds: list[float]) -> dict[str, float]:
    """Median and 90th percentile, in milliseconds, of timed calls (seconds each)."""
    if not seconds:
        raise ValueError("no timed calls")
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "median_ms": float(np.median(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "calls": len(values),
    }


def time_calls(
    call: Callable[[], Any],
    calls: int = TIMED_CALLS,
    warmup: int = WARMUP_CALLS,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds each of `calls` calls took, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    timed = []
    for _ in range(calls):
        start = clock()
        call()
        timed.append(clock() - start)
    return timed


@dataclass(frozen=True)
class TimedCall:
    wall: float  # seconds
    cpu: float  # seconds of CPU the calling thread spent in the call
    preempted: bool  # the process was switched out (another process took a core) during it


def time_in_turns(
    series: dict[str, Callable[[], Any]], calls: int = TIMED_CALLS, warmup: int = WARMUP_CALLS
) -> dict[str, list[TimedCall]]:
    """`calls` timed calls of each series after `warmup` untimed ones, the series taking turns
    (a, b, b, a, a, b, ...): load from another process falls on every series alike instead of
    on whichever ran while it lasted."""
    for call in series.values():
        for _ in range(warmup):
            call()
    timed: dict[str, list[TimedCall]] = {name: [] for name in series}
    names = list(series)
    for turn in range(calls):
        for name in names if turn % 2 == 0 else names[::-1]:
            timed[name].append(timed_call(series[name]))
    return timed


def timed_call(call: Callable[[], Any]) -> TimedCall:
    switches = _involuntary_switches()
    cpu, start = time.thread_time(), time.perf_counter()
    call()
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    return TimedCall(wall, cpu, _involuntary_switches() != switches)


def _involuntary_switches() -> int:
    """How often the scheduler has taken a core from this process (-1 where it cannot say)."""
    try:
        import resource
    except ImportError:  # Windows has no `resource` module
        return -1
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def series_figures(timed: list[TimedCall]) -> dict[str, Any]:
    """Median and p90 of the wall time; beside them, the calling thread's median CPU time (at
    1 thread, the compute a call needs, whatever else the machine runs) and how many calls
    another process interrupted (wall time counts the wait for a core)."""
    figures = latency_figures([call.wall for call in timed])
    figures["cpu_median_ms"] = float(np.median([call.cpu for call in timed]) * 1000.0)
    figures["preempted_calls"] = sum(call.preempted for call in timed)
    figures["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return figures


@contextlib.contextmanager
def converters_quiet() -> Iterator[None]:
    """Hide what converters and runtimes print on their own while they load: TFLite's C++ log
    lines (`fully_quantize: 0, ...`, `INFO: Created TensorFlow Lite XNNPACK delegate`) on the
    process's stderr, NNCF's progress bars on stdout (which `--json` keeps for JSON). Their
    errors still arrive as exceptions."""
    sys.stdout.flush()
    with stderr_hidden(), contextlib.redirect_stdout(io.StringIO()):
        yield


def export_folder(record: RunRecord, target: DeployTarget) -> Path:
    return record.run_folder / "deploy" / target.name


def exported(record: RunRecord, target: DeployTarget) -> tuple[Path, float]:
    """(the shipped file or folder, seconds spent exporting: 0 when cached)."""
    folder = export_folder(record, target)
    facts = folder / EXPORT_FACTS
    if facts.is_file():
        return folder / json.loads(facts.read_text())["model"], 0.0
    start = time.perf_counter()
    with atomic_dir(folder) as scratch, converters_quiet():
        shipped = target.export(record, scratch).relative_to(scratch)
        (scratch / EXPORT_FACTS).write_text(json.dumps({"model": shipped.as_posix()}))
    return folder / shipped, time.perf_counter() - start


def measure(
    record: RunRecord, target: DeployTarget, reporter: Reporter | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Export (once) and measure one run on one target: (the figures, the artifact paths)."""
    reporter = reporter or Reporter()
    start, cost = time.perf_counter(), {}
    with _stage(cost, "export"):
        shipped, export_seconds = exported(record, target)
    threads = all_threads()
    with _stage(cost, "test_pass"):
        with converters_quiet():  # one 1-thread runtime a thread: see _test_pass
            workers = [target.predictor(shipped, 1) for _ in range(threads)]
        probabilities, labels, first = _test_pass(
            record, workers, reporter, target.name, target.test_batch
        )
    metrics = evaluate(probabilities, labels, record.classes)
    kept = _keep_probabilities(record, target, probabilities, labels)
    with _stage(cost, "timed_calls"):
        with converters_quiet():
            predictors = {"1_thread": target.predictor(shipped, 1)}
            predictors["all_threads"] = target.predictor(shipped, threads)
        timed = time_in_turns({name: partial(p, first) for name, p in predictors.items()})
    latency = {name: series_figures(calls) for name, calls in timed.items()}
    figures = {
        "accuracy": metrics["accuracy"],
        "float_accuracy": record.accuracy,
        "test_images": metrics["test_images"],
        "paired": _same_test_images(record, labels),
        "size_bytes": size_on_disk(shipped),
        "latency": latency,
        "threads": threads,
        "export_seconds": export_seconds,
        "seconds": time.perf_counter() - start,
        "cost": cost,
        "machine": this_machine(),
    }
    return figures, {
        f"deploy_{target.name}": str(shipped),
        f"deploy_{target.name}_probabilities": str(kept),
    }


@contextlib.contextmanager
def _stage(cost: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Wall and CPU seconds (this process, every thread) of one stage, with the load average
    after it: on a shared machine the wall clock alone says more about the others' work."""
    wall, cpu = time.perf_counter(), os.times()
    yield
    after = os.times()
    cost[name] = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": after.user + after.system - cpu.user - cpu.system,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _test_pass(
    record: RunRecord, workers: list, reporter: Reporter, name: str, batch: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The deployed model's probabilities on every readable test image, in the run's order.

    Each worker (a 1-thread runtime) runs in a thread of its own on a share of each decoded
    batch, `batch` images a call (a target's `test_batch`: 1, as deployed, unless its runtime
    gives the same predictions at any batch): TFLite and OpenVINO let go of the GIL while they
    compute. Here (2 cores, shared) two 1-thread TFLite interpreters ran Lite0 int8 at 10.2 ms
    an image, one 2-thread interpreter at 17.9 ms; one 1-thread interpreter spent 25.8 s of CPU
    on the demo's 2,500 test images at batch 8, 29.9 s at batch 1 (equal predictions).
    """
    _, test = run_images(record, reporter=reporter)  # a carved test split is made again
    parts, labels, first = [], [], None

    def predict(job: tuple[int, np.ndarray]) -> list[np.ndarray]:
        worker, images = job
        return [
            np.asarray(workers[worker](images[start : start + batch]), np.float32)
            for start in range(0, len(images), batch)
        ]

    with (
        reporter.task(f"{name}: test images", len(test)) as advance,
        ThreadPoolExecutor(len(workers)) as pool,
    ):
        for indices, pixels, _ in decoded_batches(
            test.paths, geometry_of(record), max(DECODE_BATCH, batch * len(workers))
        ):
            if not len(indices):
                continue
            decoded = pixels.astype(np.float32)
            first = decoded[:1] if first is None else first
            shares = enumerate(np.array_split(decoded, len(workers)))
            parts += [rows for share in pool.map(predict, shares) for rows in share]
            labels.append(test.labels[indices])
            advance(len(indices))
    if first is None:
        raise UsageError(f"run {record.id}: no readable test image to measure on")
    return np.concatenate(parts), np.concatenate(labels), first


def _keep_probabilities(
    record: RunRecord, target: DeployTarget, probabilities: np.ndarray, labels: np.ndarray
) -> Path:
    path = record.run_folder / f"test_probabilities-{target.name}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, probabilities=probabilities, labels=labels)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _same_test_images(record: RunRecord, labels: np.ndarray) -> bool:
    """Do the deployed predictions line up with the run's own, image by image (a paired test)?"""
    own = record.probabilities_path
    if not own or not Path(own).is_file():
        return False
    with np.load(own) as stored:
        return bool(np.array_equal(stored["labels"], labels))


def deploy_runs(
    records: list[RunRecord],
    targets: list[DeployTarget],
    reporter: Reporter | None = None,
) -> dict[int, dict[str, dict[str, Any]]]:
    """Each run's measurements on each target: {run id: {target: figures}}, stored with the run.

    A measurement stored by an earlier command on this machine is reused; a target that fails on
    a run (a conversion error) is a warning and an `error` entry, and the others still run.
    """
    reporter = reporter or Reporter()
    for record in records:
        check_deployable(record)
    here = _measured_here(targets)
    measured: dict[int, dict[str, dict[str, Any]]] = {}
    for record in records:
        mine = measured.setdefault(record.id, {})
        for target in targets:
            mine[target.name] = _reusable(record, target) or _measure_and_store(
                record, target, reporter, target.name in here
            )
    return measured


def needs_measuring(records: list[RunRecord], targets: list[DeployTarget]) -> bool:
    """Will deploy_runs export or time anything (and so load a runtime)?"""
    return any(_reusable(record, target) is None for record in records for target in targets)


def _reusable(record: RunRecord, target: DeployTarget) -> dict[str, Any] | None:
    earlier = record.deployed.get(target.name)
    if earlier and "error" not in earlier and earlier.get("machine") == this_machine():
        return earlier
    return None


def _measure_and_store(
    record: RunRecord, target: DeployTarget, reporter: Reporter, here: bool
) -> dict[str, Any]:
    try:
        measured = measure if here else _measure_in_child
        figures, paths = measured(record, target, reporter)
    except UsageError:
        raise
    except Exception as error:  # a conversion or runtime failure: this target only
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        reporter.warning(f"run {record.id} ({record.backbone}): {target.name} failed: {reason}")
        figures, paths = {"error": reason, "machine": this_machine()}, {}

    def change(stored: RunRecord) -> None:
        stored.metrics.setdefault("deploy", {})[target.name] = figures
        stored.artifacts.update(paths)

    update_run(record.id, change)
    return figures


def _measured_here(targets: list[DeployTarget]) -> set[str]:
    """The targets measured in this process rather than each in a child of its own.

    A child (zoo.child) because writing a run's SavedModel, converting it and loading the
    runtime leave hundreds of MB in a process, so a `--deploy` over many runs would grow with
    their number. Here when the user asks (ZOO_DEPLOY_HERE=1) or where the child, which loads the
    plugins afresh, would find another target by that name."""
    if os.environ.get(IN_PROCESS_VARIABLE, "") not in ("", "0"):
        return {target.name for target in targets}
    found = load_targets(load_plugins()).targets
    return {target.name for target in targets if type(found.get(target.name)) is not type(target)}


def _measure_in_child(
    record: RunRecord, target: DeployTarget, reporter: Reporter
) -> tuple[dict[str, Any], dict[str, str]]:
    """`measure` in a child; its figures count the child's start and stop too (stage
    `process`: a fresh Python importing TensorFlow), as the user waits for them."""
    from zoo.catalog import registry

    wall, cpu = time.perf_counter(), os.times()
    process, connection = spawn("zoo.runs.deploy:serve_measurement")
    try:
        connection.send((record, target.name, registry.command_registry))
        figures, paths = _relay(process, connection, reporter, target.name)
    except BaseException:
        stop(process, connection, busy=True)
        raise
    stop(process, connection, busy=False)
    after, seconds = os.times(), time.perf_counter() - wall
    child_cpu = (
        after.children_user + after.children_system - cpu.children_user - cpu.children_system
    )
    figures["cost"]["process"] = {
        "wall_s": seconds - figures["seconds"],
        "cpu_s": max(0.0, child_cpu - sum(stage["cpu_s"] for stage in figures["cost"].values())),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    figures["seconds"] = seconds
    return figures, paths


def _relay(process, connection: Duplex, reporter: Reporter, target_name: str) -> tuple:
    """The child's progress and warnings, shown here, until it sends (figures, paths)."""
    with contextlib.ExitStack() as open_tasks:
        tasks: list[tuple[contextlib.ExitStack, Callable[[int], None]]] = []
        while True:
            kind, *facts = receive(process, connection, partial(_died, process, target_name))
            if kind == "warning":
                reporter.warning(facts[0])
            elif kind == "task":
                task = open_tasks.enter_context(contextlib.ExitStack())
                tasks.append((task, task.enter_context(reporter.task(*facts))))
            elif kind == "advance":
                tasks[-1][1](facts[0])
            elif kind == "task_end":
                tasks.pop()[0].close()
            elif kind == "done":
                return facts[0], facts[1]


def _died(process, target_name: str) -> RuntimeError:
    return RuntimeError(
        f"its measurement process stopped ({how_it_ended(process)}) before it finished; run "
        f"again to measure it (or set {IN_PROCESS_VARIABLE}=1 to measure in the main process)"
    )


def serve_measurement(connection: Duplex) -> None:
    """The child's side (zoo.child.serve calls it): measure one run on one target."""
    from zoo.catalog import registry

    record, target_name, registry.command_registry = connection.recv()
    import_tensorflow()  # every target's converter needs it: its start-up lines hidden
    target = load_targets(load_plugins()).targets[target_name]
    figures, paths = measure(record, target, _ForwardingReporter(connection))
    connection.send(("done", figures, paths))


class _ForwardingReporter(Reporter):
    """The child's progress and warnings, sent to the parent's reporter."""

    def __init__(self, connection: Duplex):
        self.connection = connection

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        self.connection.send(("task", description, total))
        try:
            yield lambda advance: self.connection.send(("advance", advance))
        finally:
            with contextlib.suppress(OSError):
                self.connection.send(("task_end",))

    def warning(self, text: str) -> None:
        self.connection.send(("warning", text))


@dataclass
class DeployedRunSummary(RunSummary):
    """`zoo.run(..., deploy=...)`: the runs, each result's `metrics["deploy"][target]` filled
    in, and which deployed models fit the budget (every measured one without a budget)."""

    budget: BudgetFit | None = None


def deploy_summary(
    summary: RunSummary,
    targets: list[DeployTarget],
    budget_ms: float | None = None,
    budget_mb: float | None = None,
    reporter: Reporter | None = None,
) -> DeployedRunSummary:
    """Deploy and measure every successful run of `summary` that saved its model."""
    deployable = [
        result
        for result in summary.results
        if result.ok and result.run_id is not None and "error" not in result.artifacts
    ]
    measured = deploy_runs([get_run(result.run_id) for result in deployable], targets, reporter)
    for result in deployable:
        result.metrics["deploy"] = measured[result.run_id]
        result.artifacts = get_run(result.run_id).artifacts  # with the deployed files
    stored = [get_run(result.run_id) for result in deployable]
    names = [target.name for target in targets]
    facts = {field.name: getattr(summary, field.name) for field in fields(summary)}
    return DeployedRunSummary(**facts, budget=within_budget(stored, names, budget_ms, budget_mb))
