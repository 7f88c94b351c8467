"""`zoo run --screen` / `--screen-only`: rank backbones from their features before training.

The features are those of a stratified, seeded subset of the training images (a `fraction` of
each class), computed through the same engines and feature cache as a frozen run, so a later
run of the same backbones reuses them. The scores are zoo.analysis.screen's. Where full runs of
the same backbones on the same data are stored, the screen is set against their test accuracies
(Kendall's tau), so the user sees how far to trust it on their own images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from zoo.analysis.screen import SCREENS, kendall_tau, ranking, screen_score
from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.data.folders import Dataset, ImageSet, fingerprint, stratified_split
from zoo.data.layouts import Layout
from zoo.errors import UsageError
from zoo.extraction.engines import Engines
from zoo.reporting import Reporter
from zoo.runs.pipelines import frozen_features
from zoo.runs.runner import prepared
from zoo.runs.store import list_runs

DEFAULT_FRACTION = 1 / 8  # the first round of a race: 1/8, 1/4, 1/2, all
# Stored runs looked at per backbone to find its newest full run on the same data.
STORED_RUNS_LOOKED_AT = 200


@dataclass
class Screening:
    method: str
    fraction: float
    images: int  # training images in the screened subset
    scores: dict[str, float] = field(default_factory=dict)  # backbone -> score (higher: better)
    seconds: dict[str, float] = field(default_factory=dict)  # backbone -> features + score
    computed: dict[str, int] = field(default_factory=dict)  # backbone -> vectors computed now
    not_screened: dict[str, str] = field(default_factory=dict)  # backbone -> why not
    trained: dict[str, float] = field(default_factory=dict)  # backbone -> stored test accuracy
    trained_runs: dict[str, int] = field(default_factory=dict)  # backbone -> that run's id

    @property
    def ranking(self) -> list[str]:
        return ranking(self.scores)

    @property
    def tau(self) -> float | None:
        """Kendall's tau between the scores and the stored accuracies; None under 3 pairs, or
        when the scores or the accuracies are all equal (no order to compare)."""
        both = [name for name in self.scores if name in self.trained]
        if len(both) < 3:
            return None
        tau = kendall_tau([self.scores[n] for n in both], [self.trained[n] for n in both])
        return None if math.isnan(tau) else tau

    def facts(self) -> dict:
        return {
            "method": self.method,
            "fraction": self.fraction,
            "images": self.images,
            "ranking": [
                {
                    "backbone": name,
                    "score": self.scores[name],
                    "seconds": self.seconds[name],
                    "computed_features": self.computed[name],
                    "trained_accuracy": self.trained.get(name),
                    "trained_run": self.trained_runs.get(name),
                }
                for name in self.ranking
            ],
            "not_screened": self.not_screened,
            "kendall_tau": self.tau,
        }


def check_screen(method: str | None, fraction: float) -> None:
    """Usage errors of --screen and --screen-fraction, before any work starts."""
    if method is not None and method not in SCREENS:
        raise UsageError(f"--screen must be one of {', '.join(SCREENS)}, not {method!r}")
    if not 0 < fraction <= 1:
        raise UsageError("--screen-fraction must be in (0, 1], e.g. 0.125")


def screen(
    backbones: list[Backbone | Combination],
    layout: Layout,
    method: str,
    fraction: float,
    settings,
    reporter: Reporter,
    engines: Engines,
) -> Screening:
    """Score each frozen backbone on the subset's features; backbones trained end to end and
    combinations (a+b) have no features of their own to score and are listed as not screened.

    `layout` is any layout `zoo run` reads; its splits are the run's (test carved the same way),
    and only training images are screened (not a given validation split)."""
    check_screen(method, fraction)
    dataset, digests = prepared(layout, reporter, settings.test_fraction, settings.drop_leaks)
    train = _training_only(dataset)
    names = [path.name for path in train.paths]
    subset = stratified_split(train.labels, names, fraction, settings.seed)[1]
    if fraction == 1:
        subset = range(len(train.paths))
    paths = [train.paths[i] for i in subset]
    labels = train.labels[list(subset)]
    result = Screening(method, fraction, len(paths))
    for backbone in backbones:
        if isinstance(backbone, Combination) or backbone.trains_end_to_end:
            result.not_screened[backbone.name] = "no frozen features of its own"
            continue
        started = time.perf_counter()
        features, good, computed = frozen_features(
            backbone,
            paths,
            [digests[p] for p in paths],
            settings,
            reporter,
            engines,
            f"screening ({backbone.name})",
        )
        result.scores[backbone.name] = screen_score(method, features, labels[good])
        result.seconds[backbone.name] = time.perf_counter() - started
        result.computed[backbone.name] = computed
    _add_trained(result, fingerprint(dataset, digests))
    return result


def _training_only(dataset: Dataset) -> ImageSet:
    given = dataset.given_validation
    if given is None:
        return dataset.train
    keep = np.flatnonzero(~given)
    train = dataset.train
    return ImageSet([train.paths[i] for i in keep], train.labels[keep], train.classes)


def _add_trained(result: Screening, data_fingerprint: str) -> None:
    """Each screened backbone's newest ok frozen run on exactly this data, if any."""
    for name in result.scores:
        for record in list_runs(STORED_RUNS_LOOKED_AT, backbone=name, status="ok"):
            if (
                record.data_fingerprint == data_fingerprint
                and record.mode == "feature-extraction"
                and record.accuracy is not None
            ):
                result.trained[name] = float(record.accuracy)
                result.trained_runs[name] = int(record.id)
                break
