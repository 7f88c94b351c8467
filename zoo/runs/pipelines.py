"""The four ways a backbone is trained (the runner picks one per backbone).

- feature extraction (`feature_extraction`): frozen backbone, features computed once and cached,
  only the head trains; `--augment K` adds cached features of K augmented views of the training
  part's images;
- combined (`combined`): several backbones (`zoo run a+b`) put their cached features side by side
  for one head;
- staged fine-tuning (`staged_fine_tune`, `--unfreeze`): the head trained on cached features, then
  part of the backbone with it;
- end to end (`end_to_end`): fine-tuning a pretrained backbone (low learning rate), or a model
  with no pretrained weights trained from scratch.

End to end, images are decoded once per run into a file in the run's folder and streamed from
it a batch at a time, so memory does not grow with their number.

Each is `pipeline(backbone, job) -> Outcome`; `pipeline_for` reads the table `PIPELINES`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.catalog.preprocessing import Preprocessing
from zoo.data.augment import Augmentation
from zoo.data.decoded import DecodedImages, decode_to_disk
from zoo.data.folders import Dataset, ImageSet, check_readable, stratified_split
from zoo.errors import BackboneUnavailable, UsageError
from zoo.extraction import process as extraction_process
from zoo.extraction.cache import FeatureCache, backbone_key, features_key
from zoo.extraction.engines import Engines, ResolvedBackbone
from zoo.extraction.extract import Compute, Extraction, extract, local_compute
from zoo.extraction.process import ChildEngine
from zoo.home import tensorboard_root
from zoo.reporting import Reporter
from zoo.runs import artifacts
from zoo.runs.settings import RunSettings
from zoo.sources.hub import resolve
from zoo.training.fit import FEATURE_BATCH, FitSettings, batches, fit, tensorboard_dir
from zoo.training.models import head_layer
from zoo.training.strategies import cluster_failures_explained, make_strategy

# Images a frozen backbone extracts at a time, whatever the backbone, engine or device: the
# fastest of 16, 32, 64 and 128 for EfficientNet-Lite0 on a 2-core CPU (docs/benchmarks.md; the
# best moved between 16 and 64 from repeat to repeat, so the choice is flat there). On --ray it is
# also what a worker is sent at a time and retries when it dies (two in flight per worker).
# Larger batches may pay on a GPU; that is not measured, so 32 holds everywhere until it is.
INFERENCE_BATCH = 32
# End to end, images decoded, evaluated and predicted at a time: the default --batch-size, whose
# activations training already holds in memory (docs/benchmarks.md: fine-tuning Lite0 at 32
# peaks near 3.9 GB); a choice of memory, not tuned for speed.
PIXEL_BATCH = 32


@dataclass
class Outcome:
    # writes the full image-to-class SavedModel to a folder; None: there is none (`zoo run a+b`)
    save_model: Callable[[Path], None] | None
    head: tuple[np.ndarray, np.ndarray]  # the trained softmax layer's kernel and bias
    history: dict[str, list[float]]
    test_probabilities: np.ndarray
    test_labels: np.ndarray
    skipped: list[tuple[Path, str]]
    log_dir: Path
    extract_seconds: float | None = None
    images_per_second: float | None = None
    computed_features: int | None = None
    engine: str | None = None  # e.g. "openvino 2026.4.1 fp32"; None: trained end to end
    tuned: dict | None = None  # --tune: the chosen head settings and every trial
    stages: list[dict] | None = None  # --unfreeze: the head stage, then the fine-tune stage
    recorded: dict = field(
        default_factory=dict
    )  # settings the record keeps (augmentation, members)
    # --seeds N: test probabilities of the N - 1 heads trained beside the saved one
    other_seeds: list[np.ndarray] = field(default_factory=list)
    # a frozen run: what its SavedModel is written from on first use (artifacts.SERVING_RECIPE)
    serving: dict | None = None


@dataclass
class Job:
    """One backbone's run as its pipeline sees it: the data, the settings, where to report
    progress and write the checkpoint (and, end to end, the decoded images)."""

    dataset: Dataset
    digests: dict[Path, str]
    settings: RunSettings
    reporter: Reporter
    engines: Engines
    # TF format: hub layers repeat weight names, which HDF5 refuses. None for a race round's
    # features (`frozen_splits`), which trains nothing that is kept.
    checkpoint: Path | None = None
    scratch: Path | None = None  # end to end: the decoded images, deleted after training


Part = tuple[Any, np.ndarray]  # (inputs, labels): features, or decoded images on disk


@dataclass
class Splits:
    """What a head or model fits on, stops on and is tested on."""

    train: Part
    validation: Part
    test: Part
    views: Part | None = None  # --augment: the training part's augmented views' features
    streamed: bool = False  # inputs are decoded images read from disk a batch at a time

    def with_views(self) -> Splits:
        """The splits with the views' rows (if any) added to the training part."""
        if self.views is None:
            return self
        (train, labels), (views, view_labels) = self.train, self.views
        joined = (np.concatenate([train, views]), np.concatenate([labels, view_labels]))
        return replace(self, train=joined, views=None)

    def check_readable(self, skipped: list[tuple[Path, str]], settings: RunSettings) -> None:
        """Refuse unusable data before training starts, not after it has run (--max-bad)."""
        readable = {"train": len(self.train[1]), "test": len(self.test[1])}
        check_readable(skipped, settings.max_bad, readable)


def _fit_settings(settings: RunSettings, mode: str, epochs: int | None = None) -> FitSettings:
    return FitSettings(
        epochs=epochs or settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate_for(mode),
        patience=settings.patience,
        seed=settings.seed,
        class_weight=settings.class_weight,
    )


def _log_dir(settings: RunSettings, backbone: Backbone) -> Path:
    return tensorboard_dir(
        settings.logdir or tensorboard_root(), settings.experiment or backbone.name
    )


def _train(
    model: Any,
    splits: Splits,
    mode: str,
    backbone: Backbone | Combination,
    job: Job,
    eval_batch_size: int,
    epochs: int | None = None,
) -> tuple[dict[str, list[float]], Path]:
    """Fit on the train part, watching validation, with a progress bar; returns (history, logs)."""
    log_dir = _log_dir(job.settings, backbone)
    fit_settings = _fit_settings(job.settings, mode, epochs)
    if splits.streamed:  # images from disk: an epoch of a big folder takes minutes: count steps
        steps = math.ceil(len(splits.train[1]) / fit_settings.batch_size)
        description, total = f"training ({steps} steps an epoch)", steps * fit_settings.epochs
    else:  # features: an epoch takes a fraction of a second
        description, total = "training", fit_settings.epochs
    progress = "on_batch" if splits.streamed else "on_epoch"
    with job.reporter.task(description, total) as advance:
        history = fit(
            model,
            splits.train,
            splits.validation,
            len(job.dataset.classes),
            fit_settings,
            checkpoint=job.checkpoint,
            log_dir=log_dir,
            eval_batch_size=eval_batch_size,
            **{progress: lambda *_: advance(1)},
        )
    return history, log_dir


def _decoded_splits(
    train: tuple[DecodedImages, np.ndarray],
    test: tuple[DecodedImages, np.ndarray],
    dataset: Dataset,
    settings: RunSettings,
) -> Splits:
    """Train, validation and test images from those that decoded, streamed from disk.

    `train` and `test` pair the decoded images with their indices in the dataset. The
    validation split is carved from the decoded training images, never from test.
    """
    (train_images, train_good), (test_images, test_good) = train, test
    labels = dataset.train.labels[train_good]
    fit, validation = _split(train_good, dataset, settings)
    return Splits(
        train=(train_images[fit], labels[fit]),
        validation=(train_images[validation], labels[validation]),
        test=(test_images, dataset.test.labels[test_good]),
        streamed=True,
    )


def _split(
    train_good: np.ndarray, dataset: Dataset, settings: RunSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in `train_good` (the train images that decoded) of (fit, validation): the
    given validation split (a `val/` folder) if there is one, else carved by --val-fraction."""
    if dataset.given_validation is not None:
        given = dataset.given_validation[train_good]
        return np.flatnonzero(~given), np.flatnonzero(given)
    labels = dataset.train.labels[train_good]
    names = [dataset.train.paths[i].name for i in train_good]
    return stratified_split(labels, names, settings.val_fraction, settings.seed)


def _feature_cache(
    key: str, backbone: Backbone, reporter: Reporter, model_width: Callable[[], int]
) -> FeatureCache:
    """The cache under `key`, its unusable shards removed, and said so in one warning.

    Shards of another width than the declared feature_dim are removed only once the model has
    shown that the declaration is right (`model_width()`): a wrong feature_dim is refused with
    the cache untouched, instead of costing every valid vector.
    """
    cache = FeatureCache(key, width=backbone.feature_dim or None)
    if cache.other_width:
        actual = model_width()
        if actual != backbone.feature_dim:
            raise BackboneUnavailable(backbone.wrong_width(actual))
        cache.discard_other_width()
    if cache.discarded:
        reporter.warning(
            f"{backbone.name}: {len(cache.discarded)} feature cache shard(s) could not be used "
            f"and were removed ({cache.discarded[0]}); their vectors are computed again"
        )
    return cache


def _checking_vectors(compute: Compute, backbone: Backbone, engine: str) -> Compute:
    """`compute`, refusing vectors of another width than declared, or not finite: none of
    them is cached, and the backbone's row fails naming the engine that gave them."""

    def checked(paths: list[Path], digests: list[str]):
        for indices, features, failures in compute(paths, digests):
            if indices and backbone.feature_dim and features.shape[-1] != backbone.feature_dim:
                raise BackboneUnavailable(backbone.wrong_width(features.shape[-1]))
            if indices and not np.isfinite(features).all():
                bad = int((~np.isfinite(features)).any(axis=1).sum())
                raise BackboneUnavailable(
                    f"{backbone.name}: {engine} gave non-finite features (NaN or infinity) for "
                    f"{bad} of {len(indices)} images; none was cached; check the "
                    "model's weights, or try another --engine"
                )
            yield indices, features, failures

    return checked


def _predict_features(head: Any, features: np.ndarray) -> np.ndarray:
    """The head's probabilities, by direct calls: `predict` would trace a graph (~0.15 s) first."""
    chunks = [
        head(features[start : start + FEATURE_BATCH], training=False).numpy()
        for start in range(0, len(features), FEATURE_BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, head.output_shape[-1]), np.float32)


class _Extractor:
    """One frozen backbone's features: through its planned engine, cached under its key (plus a
    view's suffix for augmented views). The engine starts only when some vector is missing: in a
    child process of its own (zoo.extraction.process), here (ZOO_EXTRACT_HERE=1), or as workers
    on the Ray cluster (--ray); `close()` stops the child or the workers."""

    def __init__(
        self, backbone: Backbone, settings: RunSettings, reporter: Reporter, engines: Engines
    ):
        self.backbone, self.settings = backbone, settings
        self.reporter, self.engines = reporter, engines
        self.resolved = ResolvedBackbone(backbone, resolve(backbone))
        self.backbone_id = backbone_key(backbone, self.resolved.folder)
        self.engine = engines.planned(
            self.resolved, settings.engine, settings.precision, reporter.warning
        )
        self.started, self.computed, self.seconds = False, 0, 0.0
        self.cluster = None  # the Ray workers, once started
        self.child: ChildEngine | None = None  # the engine's own process, once started
        self.workers = contextlib.ExitStack()

    def features(
        self, paths: list[Path], digests: list[str], task: str, suffix: str = "", transform=None
    ) -> Extraction:
        cache = self._cache(suffix)
        if not self.started and any(digest not in cache for digest in digests):
            self._start()
            cache = self._cache(suffix)  # an engine that fell back keys its own features
        with self.reporter.task(task, len(paths)) as advance:
            compute = _checking_vectors(self._compute(transform), self.backbone, self.engine.label)
            extraction = extract(paths, digests, compute, cache, advance)
        self.computed += extraction.computed
        self.seconds += extraction.seconds
        return extraction

    def close(self) -> None:
        self.workers.close()
        if self.child is not None:  # its memory is gone with it; a later call starts another
            self.child, self.started = None, False

    def _start(self) -> None:
        if self.settings.ray:
            from zoo.extraction.cluster import ClusterCompute

            self.cluster = self.workers.enter_context(
                ClusterCompute(
                    self.resolved,
                    self.engine.name,
                    self.engine.precision,
                    INFERENCE_BATCH,
                    self.reporter.warning,
                )
            )
            self.engine = self.cluster.engine
        elif extraction_process.wanted(self.engines, self.backbone):
            self.child = ChildEngine(
                self.resolved,
                self.engine.name,
                self.engine.precision,
                INFERENCE_BATCH,
                self.reporter.warning,
            )
            self.workers.callback(self.child.close)
            self.engine = self.child.facts
        else:
            self.engine = self.engines.start(self.engine, self.resolved, self.reporter.warning)
        self.started = True

    def _compute(self, transform) -> Compute:
        if self.cluster is not None:  # RunSettings refuses --augment with --ray
            return self.cluster.compute
        if self.child is not None:
            return functools.partial(self.child.compute, transform=transform)
        steps = self.backbone.preprocessing
        return local_compute(steps, self.engine, INFERENCE_BATCH, transform)

    def _cache(self, suffix: str) -> FeatureCache:
        engine = self.engine
        cache = _feature_cache(self._key(suffix), self.backbone, self.reporter, self._model_width)
        if self.engine is not engine:  # started to learn the model's width, and fell back
            cache = _feature_cache(
                self._key(suffix), self.backbone, self.reporter, self._model_width
            )
        return cache

    def _key(self, suffix: str) -> str:
        key = features_key(self.backbone_id, self.engine)
        return f"{key}-{suffix}" if suffix else key

    def _model_width(self) -> int:
        """How many features the model gives, asked of one blank image."""
        height, width = self.backbone.input_size
        blank = np.zeros((1, height, width, 3), np.uint8)
        if self.settings.ray:  # the engine runs on the workers: ask TensorFlow here
            return int(self.resolved.uint8_function()(blank).shape[-1])
        if not self.started:
            self._start()
        if self.child is not None:  # the child asked its engine when it started
            return self.engine.width
        return int(self.engine(blank).shape[-1])


def frozen_features(
    backbone: Backbone,
    paths: list[Path],
    digests: list[str],
    settings,
    reporter: Reporter,
    engines: Engines,
    task: str = "features",
) -> tuple[np.ndarray, np.ndarray, int]:
    """(features, good, computed) of `paths` through `backbone`'s planned engine and feature
    cache, as a frozen run computes them (the same vectors, the same cache): `good` are the
    indices of the paths that decoded, `features` their vectors in that order, `computed` how
    many were not cached. The engine is stopped before returning."""
    extractor = _Extractor(backbone, settings, reporter, engines)
    try:
        extraction = extractor.features(paths, digests, task)
    finally:
        extractor.close()
    return extraction.gather(np.arange(len(extraction.good))), extraction.good, extraction.computed


Rows = Callable[[np.ndarray], np.ndarray]  # positions among the good images -> their features


def _joined(
    extractors: list[_Extractor], paths: list[Path], digests: list[str], task: str, **view
) -> tuple[Rows, np.ndarray, dict[Path, str]]:
    """(rows, good, bad) of `paths`: `rows(positions)` gives the features of the good images
    at those positions, each extractor's vectors side by side, for the images every one of
    them could read. Nothing is gathered until asked for, in the order asked for."""
    several = len(extractors) > 1
    extractions = [
        x.features(paths, digests, f"{task} ({x.backbone.name})" if several else task, **view)
        for x in extractors
    ]
    good = extractions[0].good
    for extraction in extractions[1:]:
        good = np.intersect1d(good, extraction.good)
    own = [np.searchsorted(e.good, good) for e in extractions]  # good's positions in each

    def rows(positions: np.ndarray) -> np.ndarray:
        if len(extractions) == 1:  # one backbone: its vectors as gathered, not a copy
            return extractions[0].gather(own[0][positions])
        return np.hstack([e.gather(mine[positions]) for e, mine in zip(extractions, own)])

    bad = {path: reason for e in extractions for path, reason in e.bad.items()}
    return rows, good, bad


def _frozen_splits(
    extractors: list[_Extractor], job: Job
) -> tuple[Splits, list[tuple[Path, str]], dict]:
    """Train, validation and test features (one pass over train and test per backbone), with
    augmented views of the training part's images beside them; the skipped files; and what
    the record keeps of the augmentation.

    The features are gathered once, in fit, validation, test order, and the parts are slices of
    that one matrix: peak memory is the matrix, not the matrix and copies of its splits."""
    dataset, digests, settings = job.dataset, job.digests, job.settings
    paths = dataset.train.paths + dataset.test.paths
    rows, good, bad = _joined(extractors, paths, [digests[p] for p in paths], "features")
    in_train = good < len(dataset.train)
    train_good, test_good = good[in_train], good[~in_train] - len(dataset.train)
    fit, validation = _split(train_good, dataset, settings)
    train_positions = np.flatnonzero(in_train)
    order = [train_positions[fit], train_positions[validation], np.flatnonzero(~in_train)]
    matrix = rows(np.concatenate(order))
    ends = np.cumsum([len(part) for part in order])
    labels = dataset.train.labels[train_good]
    splits = Splits(
        train=(matrix[: ends[0]], labels[fit]),
        validation=(matrix[ends[0] : ends[1]], labels[validation]),
        test=(matrix[ends[1] :], dataset.test.labels[test_good]),
    )
    skipped = list(bad.items())
    splits.check_readable(skipped, settings)
    augmentation = settings.augmentation()
    if augmentation is None:
        return splits, skipped, {}
    splits.views = _views(extractors, augmentation, dataset, digests, train_good[fit])
    return splits, skipped, {"augmentation": augmentation.facts()}


def _views(
    extractors: list[_Extractor],
    augmentation: Augmentation,
    dataset: Dataset,
    digests: dict[Path, str],
    fit: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The features and labels of each view of the training part's images (indices `fit` of
    the train folder), views one after another.

    Only these images get views: validation images are carved out before (by `_split`), test
    images are never in `fit`, so no view of either reaches the head.
    """
    paths = [dataset.train.paths[i] for i in fit]
    view_digests = [digests[path] for path in paths]
    features, labels = [], []
    for view in range(augmentation.views):
        transform = functools.partial(augmentation.apply, view=view)
        task = f"augmented view {view + 1}/{augmentation.views}"
        suffix = augmentation.key(view)
        rows, good, _ = _joined(
            extractors, paths, view_digests, task, suffix=suffix, transform=transform
        )
        features.append(rows(np.arange(len(good))))
        labels.append(dataset.train.labels[fit[good]])
    return np.concatenate(features), np.concatenate(labels)


def _fit_head(
    splits: Splits, backbone: Backbone | Combination, job: Job
) -> tuple[Any, dict[str, list[float]], Path, dict | None]:
    """A new softmax head on the features, tuned (--tune) or not: (head, history, logs, tuned)."""
    from zoo.training.models import classifier_head

    if job.settings.tune:
        return _tuned_head(splits, backbone, job)
    splits = splits.with_views()
    head = classifier_head(len(job.dataset.classes), splits.train[0].shape[1])
    history, log_dir = _train(
        head, splits, "feature-extraction", backbone, job, eval_batch_size=FEATURE_BATCH
    )
    return head, history, log_dir, None


def _other_seeds(splits: Splits, job: Job) -> list[np.ndarray]:
    """--seeds N: the test probabilities of N - 1 more heads trained on the same features with
    seeds seed+1, seed+2...; they measure how much the head's training varies. The run keeps and
    saves its first head; these heads are not saved and write no logs."""

    settings, num_classes = job.settings, len(job.dataset.classes)
    splits = splits.with_views()
    first = _fit_settings(settings, "feature-extraction")
    return [
        _unsaved_head_probabilities(
            splits,
            num_classes,
            replace(first, seed=settings.seed + offset),
            job.checkpoint.with_name(f"seed-{offset}"),
        )
        for offset in range(1, settings.seeds)
    ]


def _unsaved_head_probabilities(
    splits: Splits, num_classes: int, fit_settings: FitSettings, checkpoint: Path | None
) -> np.ndarray:
    """The test probabilities of a new softmax head fitted on the train split watching
    validation, with no logs; the head itself is not kept (--seeds, a race's rounds)."""
    from zoo.training.models import classifier_head

    head = classifier_head(num_classes, splits.train[0].shape[1])
    fit(
        head,
        splits.train,
        splits.validation,
        num_classes,
        fit_settings,
        checkpoint=checkpoint,
        log_dir=None,
        eval_batch_size=FEATURE_BATCH,
    )
    return _predict_features(head, splits.test[0])


def _frozen_outcome(
    extractors: list[_Extractor], backbone: Backbone | Combination, job: Job
) -> tuple[Outcome, tuple[np.ndarray, np.ndarray]]:
    """Features, head and test probabilities of a frozen run; the caller adds how to save its
    model. Returns (outcome, (kernel, bias))."""
    try:
        splits, skipped, recorded = _frozen_splits(extractors, job)
    finally:  # Ray workers are stopped once the features are in
        for extractor in extractors:
            extractor.close()
    head, history, log_dir, tuned = _fit_head(splits, backbone, job)
    kernel, bias = head_layer(head).get_weights()
    test_probabilities = _predict_features(head, splits.test[0])
    other_seeds = _other_seeds(splits, job) if job.settings.seeds > 1 else []
    computed = sum(x.computed for x in extractors)
    seconds = sum(x.seconds for x in extractors)
    outcome = Outcome(
        None,
        (kernel, bias),
        history,
        test_probabilities,
        splits.test[1],
        skipped,
        log_dir,
        extract_seconds=seconds,
        images_per_second=computed / seconds if computed else None,
        computed_features=computed,
        engine=" + ".join(x.engine.label for x in extractors),
        tuned=tuned,
        recorded=recorded,
        other_seeds=other_seeds,
    )
    return outcome, (kernel, bias)


def feature_extraction(backbone: Backbone, job: Job) -> Outcome:
    extractor = _Extractor(backbone, job.settings, job.reporter, job.engines)
    outcome, _ = _frozen_outcome([extractor], backbone, job)
    # the SavedModel is written on first use (artifacts.saved_model_folder), from these
    outcome.serving = {
        "backbone_id": extractor.backbone_id,
        "num_classes": len(job.dataset.classes),
    }
    return outcome


def combined(combination: Combination, job: Job) -> Outcome:
    """`zoo run a+b`: one head on the members' features side by side, each from its own cache.

    There is no single image-to-class model to save: the run keeps its head and test
    probabilities (for `zoo ensemble`, `zoo report`); `zoo export` and `zoo predict` refuse it.
    """
    extractors = [
        _Extractor(member, job.settings, job.reporter, job.engines)
        for member in combination.members
    ]
    outcome, _ = _frozen_outcome(extractors, combination, job)
    outcome.recorded["combination"] = [
        {
            "backbone": x.backbone.name,
            "engine": x.engine.label,
            "feature_dim": x.backbone.feature_dim,
            "features_key": features_key(x.backbone_id, x.engine),
        }
        for x in extractors
    ]
    return outcome


def _tuned_head(
    splits: Splits, backbone: Backbone | Combination, job: Job
) -> tuple[Any, dict[str, list[float]], Path, dict]:
    """--tune: search head settings on train vs validation (with and without --augment's
    views), then refit on train (+ views if they won) + validation for the chosen number of
    epochs. Returns (head, history, logs, what was chosen)."""
    from zoo.training import tune

    settings, reporter, num_classes = job.settings, job.reporter, len(job.dataset.classes)
    fit_settings = _fit_settings(settings, "feature-extraction")
    views = splits.views
    trial_count = tune.CANDIDATES * (1 if views is None else 2)
    with reporter.task(f"tuning the head ({trial_count} trials)", trial_count) as advance:
        best, trials = tune.search(
            splits.train, splits.validation, num_classes, fit_settings, views
        )
        advance(len(trials))
    used = [splits.train, *([views] if best.augmented else []), splits.validation]
    everything = tuple(np.concatenate([part[i] for part in used]) for i in (0, 1))
    nothing = (everything[0][:0], everything[1][:0])
    log_dir = _log_dir(settings, backbone)
    with reporter.task("refitting the head", best.epochs) as advance:
        head, history = tune.train_head(
            best.settings,
            everything,
            nothing,
            num_classes,
            # exactly the chosen epochs: with no validation, nothing may stop it early
            replace(fit_settings, epochs=best.epochs, patience=best.epochs),
            job.checkpoint,
            log_dir,
            lambda *_: advance(1),
        )
    chosen = {**best.facts(), "trials": [trial.facts() for trial in trials]}
    return head, history, log_dir, chosen


def decode_to_scratch(
    images: ImageSet, preprocessing: Preprocessing, folder: Path, reporter: Reporter, name: str
) -> tuple[tuple[DecodedImages, np.ndarray], list[tuple[Path, str]]]:
    """The images that decode, on disk in `folder`, with their indices; and the skipped ones."""
    with reporter.task(f"decoding ({name})", len(images)) as advance:
        decoded, good, failed = decode_to_disk(
            images.paths, preprocessing, folder / f"{name}.u8", PIXEL_BATCH, advance
        )
    return (decoded, good), [(images.paths[i], reason) for i, reason in failed.items()]


def fine_tune(backbone: Backbone, job: Job) -> Outcome:
    """--mode fine-tune: the whole pretrained backbone and a new head, at a low learning rate."""
    return end_to_end(backbone, "fine-tune", job)


def from_scratch(backbone: Backbone, job: Job) -> Outcome:
    """A model with no pretrained weights (scratch_cnn), trained whole."""
    return end_to_end(backbone, "from-scratch", job)


def end_to_end(
    backbone: Backbone,
    mode: str,
    job: Job,
    *,
    build: Callable[[int], Any] | None = None,
    strategy: Any = None,
    epochs: int | None = None,
) -> Outcome:
    """Train the whole model; images stream from a decoded copy in `job.scratch`, deleted after.

    `build(num_classes)`, called in `strategy`'s scope, makes the model instead (--unfreeze);
    `epochs` overrides --epochs.
    """
    from zoo.training.models import create_model

    dataset, settings, reporter, scratch = job.dataset, job.settings, job.reporter, job.scratch
    try:
        steps = backbone.preprocessing
        train, train_skipped = decode_to_scratch(dataset.train, steps, scratch, reporter, "train")
        test, test_skipped = decode_to_scratch(dataset.test, steps, scratch, reporter, "test")
        splits = _decoded_splits(train, test, dataset, settings)
        skipped = train_skipped + test_skipped
        splits.check_readable(skipped, settings)
        num_classes = len(dataset.classes)
        strategy = strategy or make_strategy(settings.strategy)
        with strategy.scope(), cluster_failures_explained():
            if build is not None:
                model = build(num_classes)
            else:
                model = create_model(backbone, num_classes, trainable=True)  # on every replica
                if mode == "fine-tune":
                    _warn_if_frozen(model, backbone, reporter)
                if settings.head_from is not None:
                    _start_from_head(model, settings.head_from)
            history, log_dir = _train(
                model, splits, mode, backbone, job, eval_batch_size=PIXEL_BATCH, epochs=epochs
            )
        test_images, test_labels = splits.test
        probabilities = _predict_images(model, test_images, test_labels, num_classes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(
        lambda folder: artifacts.export_classifier(model, folder),
        tuple(head_layer(model).get_weights()),
        history,
        probabilities,
        test_labels,
        skipped,
        log_dir,
    )


def staged_fine_tune(backbone: Backbone, job: Job) -> Outcome:
    """--unfreeze: (1) the head on the frozen backbone's cached features (or a stored run's head,
    --head-from), (2) the chosen top of the backbone and the head end to end, at the fine-tune
    learning rate, BatchNorm in inference mode (zoo.training.unfreeze)."""
    from zoo.extraction.layers import feature_layer
    from zoo.training.models import create_model
    from zoo.training.unfreeze import parse_unfreeze, partly_trainable, select

    settings = job.settings
    spec = parse_unfreeze(settings.unfreeze)
    strategy = make_strategy(settings.strategy)
    with strategy.scope():  # first: a backbone that cannot be unfrozen fails before any work
        layer = feature_layer(backbone, trainable=True)
        selection = select(layer, spec, (*backbone.input_size, 3), backbone.name)
    head = _head_stage(backbone, job)
    kernel, bias = head.weights

    def build(num_classes: int) -> Any:
        model = create_model(backbone, num_classes, layer=partly_trainable(layer, selection))
        try:
            head_layer(model).set_weights([kernel, bias])
        except ValueError:
            raise UsageError(
                f"run {settings.head_from}'s head does not fit this backbone and data"
            ) from None
        return model

    epochs = settings.fine_tune_epochs or settings.epochs
    second = end_to_end(backbone, "fine-tune", job, build=build, strategy=strategy, epochs=epochs)
    fine_tune_stage = {
        "stage": "fine-tune",
        "unfreeze": selection.facts,
        "epochs_run": len(second.history.get("loss", [])),
        "lr": settings.learning_rate_for("fine-tune"),
        **_best_validation(second.history),
    }
    history = {
        key: head.history.get(key, []) + second.history.get(key, []) for key in second.history
    }
    first = head.outcome
    return replace(
        second,
        history=history,
        skipped=second.skipped or (first.skipped if first else []),
        extract_seconds=first.extract_seconds if first else None,
        images_per_second=first.images_per_second if first else None,
        computed_features=first.computed_features if first else None,
        engine=first.engine if first else None,
        stages=[head.facts, fine_tune_stage],
    )


@dataclass
class HeadStage:
    """Stage 1 of --unfreeze: the head stage 2 starts from, and what the run records of it."""

    facts: dict[str, Any]  # the run's stages[0]
    weights: tuple[np.ndarray, np.ndarray]  # the head's kernel and bias
    history: dict[str, list[float]]  # its epochs, before stage 2's in the run's curves
    outcome: Outcome | None  # the feature-extraction run it came from (None: --head-from)


def _head_stage(backbone: Backbone, job: Job) -> HeadStage:
    """Stage 1 of --unfreeze: the head trained on cached features, or the one --head-from names."""
    settings = job.settings
    if settings.head_from is not None:
        from zoo.runs.store import get_run

        record = get_run(settings.head_from)
        facts = {
            "stage": "head",
            "from_run": settings.head_from,
            "epochs_run": len(record.history.get("loss", [])),
            "lr": record.settings.get("lr"),
            **_best_validation(record.history),
            "test_accuracy": record.accuracy,
        }
        return HeadStage(facts, artifacts.load_head(record), record.history, None)
    first = feature_extraction(backbone, replace(job, checkpoint=job.checkpoint.with_name("head")))
    right = first.test_probabilities.argmax(axis=1) == first.test_labels
    facts = {
        "stage": "head",
        "epochs_run": len(first.history.get("loss", [])),
        "lr": settings.learning_rate_for("feature-extraction"),
        **_best_validation(first.history),
        "test_accuracy": float(right.mean()) if len(right) else None,
        "engine": first.engine,
    }
    return HeadStage(facts, first.head, first.history, first)


def _best_validation(history: dict[str, list[float]]) -> dict[str, float | None]:
    """The validation figures of the epoch with the lowest validation loss (the weights kept)."""
    losses = history.get("val_loss") or []
    if not losses:
        return {"val_loss": None, "val_accuracy": None}
    best = int(np.argmin(losses))
    accuracies = history.get("val_accuracy") or [None] * len(losses)
    return {"val_loss": losses[best], "val_accuracy": accuracies[best]}


def _warn_if_frozen(model: Any, backbone: Backbone, reporter: Reporter) -> None:
    """A SavedModel that lists no trainable variables cannot be fine-tuned: say so, once."""
    hub_layers = [layer for layer in model.layers if hasattr(layer, "resolved_object")]
    if hub_layers and not any(layer.trainable_weights for layer in hub_layers):
        reporter.warning(
            f"{backbone.name}: its SavedModel lists no trainable variables (not TF Hub's "
            "Reusable SavedModel API), so fine-tuning trains the new head only"
        )


def _predict_images(model: Any, images: Any, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Test probabilities by direct calls: each worker of a cluster computes them alone."""
    test_batches = batches(images, labels, num_classes, PIXEL_BATCH, shuffle_seed=None)
    chunks = [model(pixels, training=False).numpy() for pixels, _ in test_batches]
    return np.concatenate(chunks) if chunks else np.zeros((0, num_classes), np.float32)


def _start_from_head(model: Any, run_id: int) -> None:
    from zoo.runs.store import get_run

    kernel, bias = artifacts.load_head(get_run(run_id))
    try:
        head_layer(model).set_weights([kernel, bias])
    except ValueError:
        raise UsageError(f"run {run_id}'s head does not fit this backbone and data") from None


Pipeline = Callable[[Any, Job], Outcome]
# How each kind of run trains (the keys are `way`'s answers; docs/architecture.md).
PIPELINES: dict[str, Pipeline] = {
    "feature-extraction": feature_extraction,
    "combined": combined,
    "staged-fine-tune": staged_fine_tune,
    "fine-tune": fine_tune,
    "from-scratch": from_scratch,
}


def way(backbone: Backbone | Combination, mode: str, settings: RunSettings) -> str:
    """Which of PIPELINES trains `backbone` in `mode` (RunSettings.mode_for)."""
    if isinstance(backbone, Combination):  # one head on several backbones' features
        return "combined"
    if mode == "fine-tune" and settings.unfreeze is not None:
        return "staged-fine-tune"
    return mode


@dataclass
class Extracted:
    """What gathering a frozen backbone's features cost: vectors computed, seconds, engine."""

    computed: int
    seconds: float
    engine: str


def frozen_splits(
    backbone: Backbone | Combination, job: Job
) -> tuple[Splits, list[tuple[Path, str]], Extracted]:
    """(splits, skipped, cost) of a frozen backbone (or a+b, its members side by side) on the
    job's dataset: train, validation and test features as a frozen run gathers them, through
    the same extractors and cache, without augmented views. The engines are stopped before
    return (`zoo run --race`'s rounds)."""
    members = backbone.members if isinstance(backbone, Combination) else (backbone,)
    extractors = [_Extractor(member, job.settings, job.reporter, job.engines) for member in members]
    try:
        plain = replace(job, settings=replace(job.settings, augment=0))
        splits, skipped, _ = _frozen_splits(extractors, plain)
    finally:
        for extractor in extractors:
            extractor.close()
    cost = Extracted(
        sum(x.computed for x in extractors),
        sum(x.seconds for x in extractors),
        " + ".join(x.engine.label for x in extractors),
    )
    return splits, skipped, cost


def plain_head_probabilities(splits: Splits, num_classes: int, settings: RunSettings) -> np.ndarray:
    """The test probabilities of a plain softmax head (a frozen run's recipe, no --tune, one
    seed) fitted on the train split watching validation; it keeps no checkpoint nor logs."""
    fit_settings = _fit_settings(settings, "feature-extraction")
    return _unsaved_head_probabilities(splits, num_classes, fit_settings, None)
