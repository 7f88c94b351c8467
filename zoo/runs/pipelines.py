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
from zoo.extraction.cache import FeatureCache, backbone_key, features_key
from zoo.extraction.engines import Engines, ResolvedBackbone
from zoo.extraction.extract import Compute, Extraction, extract, local_compute
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
    parts: dict,
    num_classes: int,
    mode: str,
    backbone: Backbone,
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
    eval_batch_size: int,
    epochs: int | None = None,
) -> tuple[dict[str, list[float]], Path]:
    """Fit on the train part, watching validation, with a progress bar; returns (history, logs)."""
    log_dir = _log_dir(settings, backbone)
    fit_settings = _fit_settings(settings, mode, epochs)
    streamed = hasattr(parts["train"][0], "read")
    if streamed:  # images from disk: an epoch of a big folder takes minutes, so count steps
        steps = math.ceil(len(parts["train"][1]) / fit_settings.batch_size)
        description, total = f"training ({steps} steps an epoch)", steps * fit_settings.epochs
    else:  # features: an epoch takes a fraction of a second
        description, total = "training", fit_settings.epochs
    progress = "on_batch" if streamed else "on_epoch"
    with reporter.task(description, total) as advance:
        history = fit(
            model,
            parts["train"],
            parts["validation"],
            num_classes,
            fit_settings,
            checkpoint=checkpoint,
            log_dir=log_dir,
            eval_batch_size=eval_batch_size,
            **{progress: lambda *_: advance(1)},
        )
    return history, log_dir


def _check_readable(
    parts: dict[str, tuple], skipped: list[tuple[Path, str]], settings: RunSettings
) -> None:
    """Refuse unusable data before training starts, not after it has run (--max-bad)."""
    readable = {name: len(parts[name][1]) for name in ("train", "test")}
    check_readable(skipped, settings.max_bad, readable)


def _parts(
    train: tuple[Any, np.ndarray], test: tuple[Any, np.ndarray], dataset: Dataset, settings
) -> dict[str, tuple[Any, np.ndarray]]:
    """(inputs, labels) for train, validation and test from the images that decoded.

    `train` and `test` pair the decoded inputs with their images' indices in the dataset. The
    validation split is carved from the decoded training images, never from test.
    """
    (train_inputs, train_good), (test_inputs, test_good) = train, test
    labels = dataset.train.labels[train_good]
    fit, validation = _split(train_good, dataset, settings)
    return {
        "train": (train_inputs[fit], labels[fit]),
        "validation": (train_inputs[validation], labels[validation]),
        "test": (test_inputs, dataset.test.labels[test_good]),
    }


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
    view's suffix for augmented views). The engine starts only when some vector is missing: here,
    or as workers on the Ray cluster (--ray), which `close()` stops."""

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
        else:
            self.engine = self.engines.start(self.engine, self.resolved, self.reporter.warning)
        self.started = True

    def _compute(self, transform) -> Compute:
        if self.cluster is not None:  # RunSettings refuses --augment with --ray
            return self.cluster.compute
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


def _frozen_parts(
    extractors: list[_Extractor], dataset: Dataset, digests: dict[Path, str], settings
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[Path, str]], dict]:
    """Train, validation and test features (one pass over train and test per backbone), with
    augmented views of the training part's images beside them; the skipped files; and what
    the record keeps of the augmentation.

    The features are gathered once, in fit, validation, test order, and the parts are slices of
    that one matrix: peak memory is the matrix, not the matrix and copies of its splits."""
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
    parts = {
        "train": (matrix[: ends[0]], labels[fit]),
        "validation": (matrix[ends[0] : ends[1]], labels[validation]),
        "test": (matrix[ends[1] :], dataset.test.labels[test_good]),
    }
    skipped = list(bad.items())
    _check_readable(parts, skipped, settings)
    augmentation = settings.augmentation()
    if augmentation is None:
        return parts, skipped, {}
    parts["views"] = _views(extractors, augmentation, dataset, digests, train_good[fit])
    return parts, skipped, {"augmentation": augmentation.facts()}


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


def _with_views(parts: dict) -> dict:
    """The parts with the views' rows (if any) added to the training part."""
    if "views" not in parts:
        return parts
    (train, labels), (views, view_labels) = parts["train"], parts["views"]
    return {
        **parts,
        "train": (np.concatenate([train, views]), np.concatenate([labels, view_labels])),
    }


def _fit_head(
    parts: dict,
    num_classes: int,
    name: Any,
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
) -> tuple[Any, dict[str, list[float]], Path, dict | None]:
    """A new softmax head on the features, tuned (--tune) or not: (head, history, logs, tuned)."""
    from zoo.training.models import classifier_head

    if settings.tune:
        return _tuned_head(parts, num_classes, name, settings, reporter, checkpoint)
    parts = _with_views(parts)
    head = classifier_head(num_classes, parts["train"][0].shape[1])
    history, log_dir = _train(
        head,
        parts,
        num_classes,
        "feature-extraction",
        name,
        settings,
        reporter,
        checkpoint,
        eval_batch_size=FEATURE_BATCH,
    )
    return head, history, log_dir, None


def _other_seeds(parts: dict, num_classes: int, settings, checkpoint: Path) -> list[np.ndarray]:
    """--seeds N: the test probabilities of N - 1 more heads trained on the same features with
    seeds seed+1, seed+2...; they measure how much the head's training varies. The run keeps and
    saves its first head; these heads are not saved and write no logs."""
    from zoo.training.models import classifier_head

    parts = _with_views(parts)
    first = _fit_settings(settings, "feature-extraction")
    probabilities = []
    for offset in range(1, settings.seeds):
        head = classifier_head(num_classes, parts["train"][0].shape[1])
        fit(
            head,
            parts["train"],
            parts["validation"],
            num_classes,
            replace(first, seed=settings.seed + offset),
            checkpoint=checkpoint.with_name(f"seed-{offset}"),
            log_dir=None,
            eval_batch_size=FEATURE_BATCH,
        )
        probabilities.append(_predict_features(head, parts["test"][0]))
    return probabilities


def _frozen_outcome(
    extractors: list[_Extractor],
    dataset: Dataset,
    digests: dict[Path, str],
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
    name: Any,
) -> tuple[Outcome, tuple[np.ndarray, np.ndarray]]:
    """Features, head and test probabilities of a frozen run; the caller adds how to save its
    model. Returns (outcome, (kernel, bias))."""
    try:
        parts, skipped, recorded = _frozen_parts(extractors, dataset, digests, settings)
    finally:  # Ray workers are stopped once the features are in
        for extractor in extractors:
            extractor.close()
    num_classes = len(dataset.classes)
    head, history, log_dir, tuned = _fit_head(
        parts, num_classes, name, settings, reporter, checkpoint
    )
    kernel, bias = head_layer(head).get_weights()
    test_probabilities = _predict_features(head, parts["test"][0])
    other_seeds = []
    if settings.seeds > 1:
        other_seeds = _other_seeds(parts, num_classes, settings, checkpoint)
    computed = sum(x.computed for x in extractors)
    seconds = sum(x.seconds for x in extractors)
    outcome = Outcome(
        None,
        (kernel, bias),
        history,
        test_probabilities,
        parts["test"][1],
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


def feature_extraction(
    backbone: Backbone,
    dataset: Dataset,
    digests: dict[Path, str],
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
    engines: Engines,
) -> Outcome:
    from zoo.training.models import create_model

    extractor = _Extractor(backbone, settings, reporter, engines)
    outcome, (kernel, bias) = _frozen_outcome(
        [extractor], dataset, digests, settings, reporter, checkpoint, backbone
    )
    num_classes = len(dataset.classes)

    def build_model():  # only for a new template; loads the backbone if extraction did not
        model = create_model(backbone, num_classes, layer=extractor.resolved.loaded_layer)
        head_layer(model).set_weights([kernel, bias])
        return model

    outcome.save_model = lambda folder: artifacts.save_with_head(
        extractor.backbone_id, num_classes, build_model, (kernel, bias), folder, reporter.warning
    )
    return outcome


def combined(
    combination: Combination,
    dataset: Dataset,
    digests: dict[Path, str],
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
    engines: Engines,
) -> Outcome:
    """`zoo run a+b`: one head on the members' features side by side, each from its own cache.

    There is no single image-to-class model to save: the run keeps its head and test
    probabilities (for `zoo ensemble`, `zoo report`); `zoo export` and `zoo predict` refuse it.
    """
    extractors = [_Extractor(member, settings, reporter, engines) for member in combination.members]
    outcome, _ = _frozen_outcome(
        extractors, dataset, digests, settings, reporter, checkpoint, combination
    )
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
    parts: dict,
    num_classes: int,
    backbone: Backbone,
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
) -> tuple[Any, dict[str, list[float]], Path, dict]:
    """--tune: search head settings on train vs validation (with and without --augment's
    views), then refit on train (+ views if they won) + validation for the chosen number of
    epochs. Returns (head, history, logs, what was chosen)."""
    from zoo.training import tune

    fit_settings = _fit_settings(settings, "feature-extraction")
    views = parts.get("views")
    trial_count = tune.CANDIDATES * (1 if views is None else 2)
    with reporter.task(f"tuning the head ({trial_count} trials)", trial_count) as advance:
        best, trials = tune.search(
            parts["train"], parts["validation"], num_classes, fit_settings, views
        )
        advance(len(trials))
    used = [parts["train"], *([parts["views"]] if best.augmented else []), parts["validation"]]
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
            checkpoint,
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


def end_to_end(
    backbone: Backbone,
    mode: str,
    dataset: Dataset,
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
    scratch: Path,
    *,
    build: Callable[[int], Any] | None = None,
    strategy: Any = None,
    epochs: int | None = None,
) -> Outcome:
    """Train the whole model; images stream from a decoded copy in `scratch`, deleted after.

    `build(num_classes)`, called in `strategy`'s scope, makes the model instead (--unfreeze);
    `epochs` overrides --epochs.
    """
    from zoo.training.models import create_model

    try:
        steps = backbone.preprocessing
        train, train_skipped = decode_to_scratch(dataset.train, steps, scratch, reporter, "train")
        test, test_skipped = decode_to_scratch(dataset.test, steps, scratch, reporter, "test")
        parts, skipped = _parts(train, test, dataset, settings), train_skipped + test_skipped
        _check_readable(parts, skipped, settings)
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
                model,
                parts,
                num_classes,
                mode,
                backbone,
                settings,
                reporter,
                checkpoint,
                eval_batch_size=PIXEL_BATCH,
                epochs=epochs,
            )
        test_images, test_labels = parts["test"]
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


def staged_fine_tune(
    backbone: Backbone,
    dataset: Dataset,
    digests: dict[Path, str],
    settings: RunSettings,
    reporter: Reporter,
    checkpoint: Path,
    scratch: Path,
    engines: Engines,
) -> Outcome:
    """--unfreeze: (1) the head on the frozen backbone's cached features (or a stored run's head,
    --head-from), (2) the chosen top of the backbone and the head end to end, at the fine-tune
    learning rate, BatchNorm in inference mode (zoo.training.unfreeze)."""
    from zoo.extraction.layers import feature_layer
    from zoo.training.models import create_model
    from zoo.training.unfreeze import parse_unfreeze, partly_trainable, select

    spec = parse_unfreeze(settings.unfreeze)
    strategy = make_strategy(settings.strategy)
    with strategy.scope():  # first: a backbone that cannot be unfrozen fails before any work
        layer = feature_layer(backbone, trainable=True)
        selection = select(layer, spec, (*backbone.input_size, 3), backbone.name)
    head_stage, first = _head_stage(
        backbone, dataset, digests, settings, reporter, checkpoint, engines
    )
    kernel, bias = head_stage.pop("weights")

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
    second = end_to_end(
        backbone,
        "fine-tune",
        dataset,
        settings,
        reporter,
        checkpoint,
        scratch,
        build=build,
        strategy=strategy,
        epochs=epochs,
    )
    fine_tune_stage = {
        "stage": "fine-tune",
        "unfreeze": selection.facts,
        "epochs_run": len(second.history.get("loss", [])),
        "lr": settings.learning_rate_for("fine-tune"),
        **_best_validation(second.history),
    }
    history = {
        key: head_stage["history"].get(key, []) + second.history.get(key, [])
        for key in second.history
    }
    del head_stage["history"]
    return replace(
        second,
        history=history,
        skipped=second.skipped or (first.skipped if first else []),
        extract_seconds=first.extract_seconds if first else None,
        images_per_second=first.images_per_second if first else None,
        computed_features=first.computed_features if first else None,
        engine=first.engine if first else None,
        stages=[head_stage, fine_tune_stage],
    )


def _head_stage(
    backbone, dataset, digests, settings: RunSettings, reporter, checkpoint, engines
) -> tuple[dict, Outcome | None]:
    """Stage 1 of --unfreeze: the head trained on cached features, or the one --head-from names.
    Returns its facts (with "weights" and "history" for the caller to take) and its Outcome."""
    if settings.head_from is not None:
        from zoo.runs.store import get_run

        record = get_run(settings.head_from)
        facts = {
            "stage": "head",
            "from_run": settings.head_from,
            "epochs_run": len(record["history"].get("loss", [])),
            "lr": record["settings"].get("lr"),
            **_best_validation(record["history"]),
            "test_accuracy": record["metrics"].get("accuracy"),
        }
        weights = artifacts.load_head(record)
        return {**facts, "weights": weights, "history": record["history"]}, None
    first = feature_extraction(
        backbone,
        dataset,
        digests,
        settings,
        reporter,
        checkpoint.with_name("head"),
        engines,
    )
    right = first.test_probabilities.argmax(axis=1) == first.test_labels
    facts = {
        "stage": "head",
        "epochs_run": len(first.history.get("loss", [])),
        "lr": settings.learning_rate_for("feature-extraction"),
        **_best_validation(first.history),
        "test_accuracy": float(right.mean()) if len(right) else None,
        "engine": first.engine,
    }
    return {**facts, "weights": first.head, "history": first.history}, first


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


@dataclass
class Extracted:
    """What gathering a frozen backbone's features cost: vectors computed, seconds, engine."""

    computed: int
    seconds: float
    engine: str


def frozen_parts(
    backbone: Backbone | Combination,
    dataset: Dataset,
    digests: dict[Path, str],
    settings: RunSettings,
    reporter: Reporter,
    engines: Engines,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[Path, str]], Extracted]:
    """(parts, skipped, cost) of a frozen backbone (or a+b, its members side by side) on this
    dataset: train, validation and test features as a frozen run gathers them, through the
    same extractors and cache, without augmented views. The engines are stopped before return."""
    members = backbone.members if isinstance(backbone, Combination) else (backbone,)
    extractors = [_Extractor(member, settings, reporter, engines) for member in members]
    try:
        parts, skipped, _ = _frozen_parts(
            extractors, dataset, digests, replace(settings, augment=0)
        )
    finally:
        for extractor in extractors:
            extractor.close()
    cost = Extracted(
        sum(x.computed for x in extractors),
        sum(x.seconds for x in extractors),
        " + ".join(x.engine.label for x in extractors),
    )
    return parts, skipped, cost


def plain_head_probabilities(parts: dict, num_classes: int, settings: RunSettings) -> np.ndarray:
    """The test probabilities of a plain softmax head (a frozen run's recipe, no --tune, one
    seed) fitted on `parts`' train part watching validation; it keeps no checkpoint nor logs."""
    from zoo.training.models import classifier_head

    head = classifier_head(num_classes, parts["train"][0].shape[1])
    fit(
        head,
        parts["train"],
        parts["validation"],
        num_classes,
        _fit_settings(settings, "feature-extraction"),
        checkpoint=None,
        log_dir=None,
        eval_batch_size=FEATURE_BATCH,
    )
    return _predict_features(head, parts["test"][0])
