"""The runner: for each backbone, train a new head (or the whole model), evaluate, store.

Data flows top to bottom: image folders -> features (cached) or pixels -> splits -> fit ->
test metrics -> saved model + run record.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo import __version__
from zoo.analysis.record import RunRecord
from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.catalog.plugins import load_plugins
from zoo.data.checks import class_imbalance, exact_leaks
from zoo.data.decode import is_image_file
from zoo.data.folders import Dataset, ImageSet, describe_skipped, file_digest, fingerprint
from zoo.data.layouts import Layout, build_dataset
from zoo.errors import DataError, StoreError, UsageError, ZooError
from zoo.extraction.engines import Engines, load_engines
from zoo.home import atomic_write_bytes, runs_dir
from zoo.reporting import Reporter
from zoo.runs.announce import announce
from zoo.runs.artifacts import load_head, new_run_folder, save_artifacts
from zoo.runs.inspection import inspect_command, near_copies_warning
from zoo.runs.settings import RunSettings
from zoo.runs.store import (
    get_run,
    is_disk_full,
    keep_pending,
    referenced_run_folders,
    save_run,
)
from zoo.training.strategies import is_chief, make_strategy

# A run in progress marks its folder with this file (host and pid), removed once it is stored:
# a folder without a stored row and without a live marker was left by a killed run.
RUNNING_MARKER = ".running"


def preflight(settings: RunSettings, engines: Engines) -> None:
    """The settings against this machine, before any work starts (usage errors, exit 2): the
    engine and precision are installed, Ray is there for --ray, and --head-from's run is a
    successful run with a saved head."""
    engines.check(settings.engine, settings.precision)
    if settings.ray is not None:
        import importlib.util

        from zoo.extraction.cluster import INSTALL_HINT

        if importlib.util.find_spec("ray") is None:
            raise UsageError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}")
    if settings.head_from is not None:
        _check_head_from(settings.head_from)


def _check_head_from(run_id: int) -> None:
    record = get_run(run_id)  # a UsageError if there is no such run
    where = f"--head-from {run_id}: run {run_id}"
    if not record.is_ok:
        raise UsageError(
            f"{where} {record.status} ({record.reason}); pick a successful "
            "feature-extraction run (`zoo runs`)"
        )
    head = record.artifacts.get("head")
    if not head or not Path(head).is_file():
        raise UsageError(f"{where} has no saved head ({head}); pick another run (`zoo runs`)")
    load_head(record)  # a damaged head.npz is a usage error here, before TensorFlow


@dataclass
class RunResult:
    backbone: str
    status: str  # "ok", "failed", or "raced-out" (zoo.runs.race)
    mode: str
    reason: str | None = None
    run_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int | None = None  # None: no head trained to the end (failed, raced out)
    seconds: float = 0.0
    extract_seconds: float | None = None
    images_per_second: float | None = None
    computed_features: int | None = None
    engine: str | None = None
    params_m: float | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    pending: str | None = None  # the record kept beside a store that refused it
    tuned: dict[str, Any] | None = None  # --tune: the head settings chosen on validation
    stages: list[dict[str, Any]] | None = None  # --unfreeze: the head stage, the fine-tune stage
    recorded: dict[str, Any] = field(default_factory=dict)  # settings facts: augmentation, members
    traceback: str | None = field(default=None, repr=False)  # a failed run's, for --debug

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def all_metrics(self) -> dict[str, Any]:
        """Test metrics plus the run's counts and timings: what the store and `--json` show."""
        return {
            **self.metrics,
            "epochs_run": self.epochs_run,
            "seconds": self.seconds,
            "extract_seconds": self.extract_seconds,
            "images_per_second": self.images_per_second,
            "computed_features": self.computed_features,
            "engine": self.engine,
            "params_m": self.params_m,
        }


@dataclass
class RunSummary:
    results: list[RunResult]
    data: str
    skipped: list[tuple[Path, str]]
    race: dict[str, Any] | None = None  # --race: its rounds (zoo.runs.race.Race.facts)

    @property
    def exit_code(self) -> int:
        """0 when every run is ok (or raced out), saved its model and was stored; 1 otherwise."""
        whole = all(
            (result.ok or result.status == "raced-out")
            and "error" not in result.artifacts
            and result.pending is None
            for result in self.results
        )
        return 0 if whole else 1


def run(
    backbones: list[Backbone | Combination],
    layout: Layout,
    settings: RunSettings,
    reporter: Reporter | None = None,
    engines: Engines | None = None,
) -> RunSummary:
    """Train and evaluate each backbone on the same splits; a failing backbone becomes a failed row."""
    context = prepare(backbones, layout, settings, reporter, engines)
    with _cluster(settings):
        results = [_run_and_store(backbone, context) for backbone in backbones]
    return RunSummary(results, context.data, context.skipped)


def prepare(
    backbones: list[Backbone | Combination],
    layout: Layout,
    settings: RunSettings,
    reporter: Reporter | None = None,
    engines: Engines | None = None,
) -> _Context:
    """What every backbone's run shares, made before the first: the hashed, checked dataset and
    its splits (said once), on a run folder tidied of killed runs' leftovers."""
    if engines is None:
        engines = load_engines(load_plugins())
    if not backbones:
        raise UsageError("nothing to run: no backbone is available (see `zoo list`)")
    reporter = reporter or Reporter()
    if any(settings.mode_for(backbone) != "feature-extraction" for backbone in backbones):
        make_strategy(settings.strategy)  # a cluster's collectives are set up before any TF op
    _remove_orphan_run_folders()
    dataset, digests = prepared(layout, reporter, settings.test_fraction, settings.drop_leaks)
    if len(dataset.classes) < 2:
        raise DataError(
            f"{layout.root} has one class folder ({dataset.classes[0]}); a classifier needs at "
            "least two: add a folder per class"
        )
    _say_how_split(dataset, layout, settings, reporter)
    _warn_near_copies(backbones, dataset, digests, layout, settings, reporter)
    data = str(layout.root)
    context = _Context(
        dataset, digests, fingerprint(dataset, digests), data, settings, reporter, engines
    )
    context.folders = layout.folders
    return context


def _cluster(settings: RunSettings):
    """Connected to the Ray cluster for the whole command (--ray), else nothing to do."""
    if settings.ray is None:
        return contextlib.nullcontext()
    from zoo.extraction.cluster import connected

    return connected(settings.ray)


@dataclass
class _Context:
    dataset: Dataset
    digests: dict[Path, str]
    fingerprint: str
    data: str  # the folder holding train/ (and usually test/): `zoo runs` shows its name
    settings: RunSettings
    reporter: Reporter
    engines: Engines
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    folders: dict[str, str] = field(
        default_factory=dict
    )  # train and test: what `zoo export` checks on


def prepared(
    layout: Layout, reporter: Reporter, test_fraction: float = 0.2, drop_leaks: bool = False
) -> tuple[Dataset, dict[Path, str]]:
    """The splits `zoo run` trains and tests on, and each image's digest: what the screen and
    `zoo export` read again to see the run's own images."""
    digests = _digests(layout.paths, reporter)
    dataset = build_dataset(layout, digests, test_fraction)
    return _checked(dataset, digests, drop_leaks), digests


def _checked(dataset: Dataset, digests: dict[Path, str], drop_leaks: bool) -> Dataset:
    """The dataset with test images that duplicate training ones removed (--drop-leaks)."""
    leaks = exact_leaks(dataset, digests)
    dataset.split["leaks"] = len(leaks)
    if drop_leaks and len(leaks):
        keep = np.setdiff1d(np.arange(len(dataset.test)), leaks)
        test = dataset.test
        dataset.test = ImageSet([test.paths[i] for i in keep], test.labels[keep], test.classes)
        dataset.split["dropped_leaks"] = len(leaks)
        if not len(keep):
            raise DataError("every test image is also in train; give test images of their own")
    return dataset


def _say_how_split(
    dataset: Dataset, layout: Layout, settings: RunSettings, reporter: Reporter
) -> None:
    """One line each: a given validation split, a carved test split, leaks, a small class."""
    split, inspect = dataset.split, inspect_command(layout, settings.test_fraction)
    if split["validation"] == "given":
        reporter.warning(
            f"using the given validation split ({int(dataset.given_validation.sum())} images) "
            f"instead of carving --val-fraction {settings.val_fraction} from train"
        )
    if "test_fraction" in split:
        reporter.warning(
            f"{layout.kind}: no test split given; {len(dataset.test)} images "
            f"({settings.test_fraction:.0%} of each class, chosen by content) are held out for test"
        )
    leaks = split["leaks"]
    if leaks:
        action = (
            "dropped from test (--drop-leaks)"
            if settings.drop_leaks
            else "add --drop-leaks to remove them from test"
        )
        reporter.warning(
            f"{leaks} test image{'s are' if leaks != 1 else ' is'} also in train (same content): "
            f"`{inspect}` lists them; {action}"
        )
    small = class_imbalance(dataset.train)
    if small is not None:
        (least, fewest), (most, largest) = small
        reporter.warning(
            f"class {least!r} has {fewest} training image{'s' if fewest != 1 else ''}, under 10% of {most!r}'s {largest}: "
            "watch balanced accuracy, or add --class-weight balanced"
        )


def _warn_near_copies(
    backbones: list[Backbone | Combination],
    dataset: Dataset,
    digests: dict[Path, str],
    layout: Layout,
    settings: RunSettings,
    reporter: Reporter,
) -> None:
    """One line when cached features (of the first frozen backbone, else the default one) show
    test images that are near-copies of training images; nothing is extracted for it."""
    frozen = [
        backbone.name
        for backbone in backbones
        if isinstance(backbone, Backbone) and settings.mode_for(backbone) == "feature-extraction"
    ]
    command = inspect_command(layout, settings.test_fraction)
    line = near_copies_warning(dataset, digests, frozen[:1], command)
    if line:
        reporter.warning(line)


def _digests(paths: list[Path], reporter: Reporter) -> dict[Path, str]:
    digests = {}
    with reporter.task("hashing images", len(paths)) as advance:
        for path in paths:
            try:
                # A file that is not an image (a video, an archive) is never read whole.
                is_image = is_image_file(path)
                digests[path] = file_digest(path) if is_image else f"not-an-image-{path}"
            except OSError as error:  # unreadable file: hash the error so it still has a key
                digests[path] = f"unreadable-{error.errno}-{path}"
            advance(1)
    return digests


def _new_run_folder(backbone: Backbone | Combination) -> Path:
    """An empty run folder, created with its running marker in one step (a rename)."""
    final = new_run_folder(backbone.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    (scratch / RUNNING_MARKER).write_text(f"{socket.gethostname()} {os.getpid()}")
    os.replace(scratch, final)
    return final


def _remove_orphan_run_folders() -> None:
    """Remove run folders that no stored or pending run points to and no live run is using.

    A run killed outright (SIGKILL, power loss) cannot clean up after itself; this is the next
    run doing it. A run removes its marker only after its row (or pending record) is written, so
    the store is read after the markers: a run that finished meanwhile is seen as stored. Best
    effort: a store that cannot be read now leaves the folders for a later run.
    """
    folder = runs_dir()
    if not folder.is_dir():
        return
    unmarked = [
        candidate
        for candidate in folder.iterdir()
        if candidate.is_dir() and not candidate.name.startswith(".") and not _in_use(candidate)
    ]
    if not unmarked:
        return
    try:
        kept = referenced_run_folders()
    except StoreError:
        return
    for candidate in unmarked:
        if candidate.name not in kept:
            shutil.rmtree(candidate, ignore_errors=True)


def _in_use(run_folder: Path) -> bool:
    """Whether the run that wrote this folder's marker may still be running."""
    try:
        host, pid = (run_folder / RUNNING_MARKER).read_text().split()
        os.kill(int(pid), 0)
    except FileNotFoundError:  # no marker: left by a killed run of a zoo before markers
        return False
    except ProcessLookupError:
        return host != socket.gethostname()  # another machine's process: not ours to judge
    except (OSError, ValueError):  # PermissionError: alive, another user's; unreadable: keep
        return True
    return True


def _run_and_store(backbone: Backbone | Combination, context: _Context) -> RunResult:
    settings = context.settings
    mode = settings.mode_for(backbone)
    run_folder = _new_run_folder(backbone)
    started = time.perf_counter()
    context.reporter.backbone_started(backbone.name, mode)
    try:
        result = _train_and_evaluate(backbone, mode, run_folder, context)
    except (DataError, KeyboardInterrupt, SystemExit):
        shutil.rmtree(run_folder, ignore_errors=True)
        raise
    except Exception as error:  # one backbone failing must not stop the others
        shutil.rmtree(run_folder, ignore_errors=True)
        reason = str(error) if isinstance(error, ZooError) else f"{type(error).__name__}: {error}"
        result = RunResult(
            backbone.name, "failed", mode, reason=reason.splitlines()[0] if reason else "failed"
        )
        result.traceback = traceback.format_exc()  # `zoo --debug run` shows it; never stored
    result.seconds = time.perf_counter() - started
    result.params_m = backbone.params_m
    if not is_chief():  # a cluster's other workers train with the chief, which stores the run
        shutil.rmtree(run_folder, ignore_errors=True)
        return result
    try:
        record = _record(result, backbone, context)
        try:
            result.run_id = save_run(record)
        except StoreError as error:  # the run is done: keep it for the next command to store
            result.pending = str(_keep_pending(record, error, backbone))
            context.reporter.warning(
                f"{backbone.name}: the run finished but was not stored: {error}; it is kept in "
                f"{result.pending} and the next zoo command stores it"
            )
    except BaseException:  # no row points at these artifacts: nothing would ever find them
        shutil.rmtree(run_folder, ignore_errors=True)
        raise
    (run_folder / RUNNING_MARKER).unlink(missing_ok=True)
    if result.run_id is not None:
        announce(result.run_id, context.reporter.warning)
    return result


def _keep_pending(record: RunRecord, error: StoreError, backbone: Backbone | Combination) -> Path:
    try:
        return keep_pending(record)
    except OSError as also:
        if is_disk_full(also):
            why = "the disk is full; free some space"
        else:
            why = f"{also.strerror or also}" + (f": {also.filename}" if also.filename else "")
        raise StoreError(
            f"{backbone.name}: the run finished but was not stored: {error}; nor could it be "
            f"kept beside the store ({why})"
        ) from None


def _record(result: RunResult, backbone: Backbone | Combination, context: _Context) -> RunRecord:
    import tensorflow as tf

    settings = {
        k: str(v) if isinstance(v, Path) else v for k, v in asdict(context.settings).items()
    }
    if result.tuned:
        settings["tuned"] = result.tuned
    if result.stages:
        settings["stages"] = result.stages
    if "augmentation" not in result.recorded:  # end-to-end runs (scratch_cnn in --all) had none
        settings["augment"] = 0
    settings.update(result.recorded)
    settings["split"] = context.dataset.split
    combined = isinstance(backbone, Combination)
    return RunRecord(
        backbone=backbone.name,
        mode=result.mode,
        status=result.status,
        reason=result.reason,
        settings={
            **settings,
            "lr": result.tuned["learning_rate"]
            if result.tuned
            else context.settings.learning_rate_for(result.mode),
            "preprocessing": None if combined else backbone.preprocessing.facts(),
            "data": context.folders,  # the image folders, for `zoo export`'s checks
        },
        data=context.data,
        data_fingerprint=context.fingerprint,
        metrics={**result.all_metrics(), "classes": context.dataset.classes},
        history=result.history,
        artifacts=result.artifacts,
        versions={
            "zoo": __version__,
            "tensorflow": tf.__version__,
            "engine": result.engine,
            "backbone_handle": backbone.handle,
        },
    )


def _train_and_evaluate(
    backbone: Backbone | Combination, mode: str, run_folder: Path, context: _Context
) -> RunResult:
    import tf_keras

    from zoo.runs import pipelines

    tf_keras.utils.set_random_seed(context.settings.seed)  # before any layer draws its weights
    job = pipelines.Job(
        context.dataset,
        context.digests,
        context.settings,
        context.reporter,
        context.engines,
        checkpoint=run_folder / "checkpoint" / "best",
        scratch=run_folder / "decoded",
    )
    pipeline = pipelines.PIPELINES[pipelines.way(backbone, mode, context.settings)]
    outcome = pipeline(backbone, job)
    _warn_skipped(outcome.skipped, context)
    return _finish(backbone, mode, outcome, run_folder, context)


def _warn_skipped(skipped: list[tuple[Path, str]], context: _Context) -> None:
    """Say once which files were skipped (the pipelines refused the data if there were too many)."""
    if skipped and not context.skipped:
        context.skipped = skipped
        context.reporter.warning(describe_skipped(skipped))


def _keep_test_images(outcome, dataset: Dataset, run_folder: Path, artifacts: dict) -> None:
    """The test images in the order of the stored predictions (those that decoded), so the
    comparison report can show the images two runs disagree on."""
    import json

    skipped = {path for path, _ in outcome.skipped}
    paths = [str(path) for path in dataset.test.paths if path not in skipped]
    if len(paths) != len(outcome.test_labels) or "test_probabilities" not in artifacts:
        return  # not the order of the predictions: better no gallery than a wrong one
    target = run_folder / "test_images.json"
    with contextlib.suppress(OSError):  # the gallery is a nicety; the run stands without it
        atomic_write_bytes(target, json.dumps(paths).encode())
        artifacts["test_images"] = str(target)


def _seeded(outcome, run_folder: Path, artifacts: dict[str, str]) -> dict[str, Any]:
    """--seeds: the spread of the heads' accuracies; their averaged probabilities are kept for
    the verdict, which compares seeded runs by them."""
    import numpy as np

    from zoo.analysis.evaluation import seed_spread
    from zoo.runs.artifacts import save_probabilities

    every = [outcome.test_probabilities, *outcome.other_seeds]
    average = np.mean(every, axis=0)
    path = save_probabilities(
        run_folder, average, outcome.test_labels, "seed_averaged_probabilities"
    )
    artifacts["seed_averaged_probabilities"] = str(path)
    return seed_spread(every, outcome.test_labels)


def _finish(
    backbone: Backbone | Combination, mode: str, outcome, run_folder: Path, context: _Context
) -> RunResult:
    """Evaluate on test, then save the artifacts: a run that trained and evaluated is kept
    even when its model cannot be written (the error is stored with it)."""
    from zoo.analysis.evaluation import evaluate

    metrics = evaluate(outcome.test_probabilities, outcome.test_labels, context.dataset.classes)
    artifacts = save_artifacts(outcome, run_folder)
    _keep_test_images(outcome, context.dataset, run_folder, artifacts)
    if outcome.other_seeds:
        metrics.update(_seeded(outcome, run_folder, artifacts))
    return RunResult(
        backbone.name,
        "ok",
        mode,
        metrics=metrics,
        history=outcome.history,
        epochs_run=len(outcome.history.get("loss", [])),
        extract_seconds=outcome.extract_seconds,
        images_per_second=outcome.images_per_second,
        computed_features=outcome.computed_features,
        engine=outcome.engine,
        artifacts=artifacts,
        tuned=outcome.tuned,
        stages=outcome.stages,
        recorded=outcome.recorded,
    )
