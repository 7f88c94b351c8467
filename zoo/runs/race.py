"""`zoo run --race`: extract less for the losers.

The frozen candidates run in rounds on nested, stratified subsets of the training and test
images (zoo.analysis.race.FRACTIONS: 1/8, 1/4, 1/2). In a round each survivor's features of the
round's images come through the same extractors and feature cache as a frozen run (so a round
computes only the images new to it, and the final runs reuse every vector), a plain head trains
on the round's training images (validation carved from them as usual) and predicts the round's
test images, and each survivor is compared with the round's leader by the exact McNemar test
(one-sided: only a survivor below the leader can be dropped).

The correction is Bonferroni over the R - 1 = 3 elimination rounds and the m - 1 comparisons of
a round of m survivors: a survivor below the leader is raced out when p <= alpha / (3 (m - 1)),
which keeps the chance of ever dropping the true best at or below alpha, whoever leads
(zoo.analysis.race says why). The survivors of the last round are ordinary runs on all the
images (`--tune`, `--augment` and `--seeds` apply there only); the raced-out are stored as runs
with status `raced-out`, their round and its figures in the metrics, and no model.

Backbones that train end to end are not raced: they get full runs. `--screen knn|logme` orders
the candidates by their first round's training features; `--keep-top K` keeps only the K best
by it after round 1 (the others are stored as raced out by the screen).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from zoo.analysis.race import FRACTIONS, Duel, decide_round, round_subset, subset_ranks
from zoo.analysis.screen import SCREENS, screen_score
from zoo.catalog.backbone import Backbone
from zoo.catalog.combination import Combination
from zoo.data.folders import Dataset, ImageSet
from zoo.errors import DataError, StoreError, UsageError, ZooError
from zoo.runs.settings import RunSettings

RACED_OUT = "raced-out"


@dataclass
class RaceSettings:
    """What `--race` was asked: the level of the elimination tests, the screen, --keep-top."""

    alpha: float = 0.05
    screen: str | None = None
    keep_top: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise UsageError("--alpha must be between 0 and 1, e.g. 0.05")
        if self.screen is not None and self.screen not in SCREENS:
            raise UsageError(f"--screen must be one of {', '.join(SCREENS)}, not {self.screen!r}")
        if self.keep_top is not None and self.screen is None:
            raise UsageError("--keep-top keeps the best by a screen: add --screen knn (or logme)")
        if self.keep_top is not None and self.keep_top < 1:
            raise UsageError("--keep-top must be at least 1")


def race_settings(
    race: bool, alpha: float, screen: str | None, keep_top: int | None
) -> RaceSettings | None:
    """--race's settings, None without it (where --keep-top is a usage error)."""
    if not race:
        if keep_top is not None:
            raise UsageError("--keep-top drops backbones after the race's first round: add --race")
        return None
    return RaceSettings(alpha, screen, keep_top)


def is_raced(backbone: Backbone | Combination, settings: RunSettings) -> bool:
    """Frozen backbones (and a+b) race; those trained end to end cannot be fed subsets cheaply."""
    return not backbone.trains_end_to_end and settings.mode_for(backbone) == "feature-extraction"


def check_race(backbones: list[Backbone | Combination], settings: RunSettings) -> None:
    """The usage error of a race with nothing to race, before any work starts."""
    frozen = [backbone for backbone in backbones if is_raced(backbone, settings)]
    if len(frozen) < 2:
        raise UsageError(
            f"--race needs at least 2 frozen backbones to race (got {len(frozen)}); "
            "name more backbones, or drop --race"
        )


@dataclass
class RoundFacts:
    """One elimination round, as `--json` shows it."""

    number: int
    fraction: float
    images: dict[str, int]  # train, test
    survivors: list[str]  # those that started the round
    computed: dict[str, int]  # vectors each computed in this round
    leader: str | None = None
    leader_accuracy: float | None = None
    threshold: float | None = None
    duels: list[dict] = field(default_factory=list)
    out: list[str] = field(default_factory=list)  # raced out by the test
    screen: dict[str, float] | None = None  # round 1 with --screen: each survivor's score
    screened_out: list[str] = field(default_factory=list)  # --keep-top
    failed: list[str] = field(default_factory=list)

    def facts(self) -> dict:
        return {
            "round": self.number,
            "fraction": self.fraction,
            "images": self.images,
            "survivors": self.survivors,
            "leader": self.leader,
            "leader_accuracy": self.leader_accuracy,
            "threshold": self.threshold,
            "comparisons": self.duels,
            "out": self.out,
            "screen": self.screen,
            "screened_out": self.screened_out,
            "failed": self.failed,
            "computed_features": self.computed,
        }


@dataclass
class Race:
    alpha: float
    screen: str | None = None
    keep_top: int | None = None
    rounds: list[RoundFacts] = field(default_factory=list)
    not_raced: list[str] = field(default_factory=list)  # trained end to end: full runs
    finalists: list[str] = field(default_factory=list)

    def facts(self, final_computed: int) -> dict:
        raced = sum(sum(r.computed.values()) for r in self.rounds)
        return {
            "alpha": self.alpha,
            "screen": self.screen,
            "keep_top": self.keep_top,
            "fractions": list(FRACTIONS),
            "rounds": [r.facts() for r in self.rounds],
            "not_raced": self.not_raced,
            "finalists": self.finalists,
            "computed_features": {
                "rounds": raced,
                "final_runs": final_computed,
                "total": raced + final_computed,
            },
        }


@dataclass
class _Entrant:
    """A raced backbone's running costs, summed over its rounds."""

    backbone: Backbone | Combination
    seconds: float = 0.0
    extract_seconds: float = 0.0
    computed: int = 0
    engine: str | None = None


def run_race(
    backbones: list[Backbone | Combination],
    layout: Any,
    settings: RunSettings,
    options: RaceSettings,
    reporter: Any = None,
    engines: Any = None,
) -> Any:
    """`zoo run --race`: the runner's preparation, the race, the finals; a RunSummary whose
    `race` holds the race's facts."""
    from zoo.runs import runner

    context = runner.prepare(backbones, layout, settings, reporter, engines)
    with runner._cluster(settings):
        results, facts = race(backbones, context, options)
    final = sum(r.computed_features or 0 for r in results if r.status != RACED_OUT)
    return runner.RunSummary(results, context.data, context.skipped, race=facts.facts(final))


def race(
    backbones: list[Backbone | Combination], context: Any, options: RaceSettings
) -> tuple[list, Race]:
    """Race the frozen backbones, then run the survivors (and those not raced) in full through
    the runner; returns every result (the finals first, then the raced-out and failed in the
    order they left) and the race's facts. `context` is the runner's."""
    from zoo.runs import runner

    settings = context.settings
    raced = [backbone for backbone in backbones if is_raced(backbone, settings)]
    direct = [backbone for backbone in backbones if not is_raced(backbone, settings)]
    check_race(backbones, settings)
    facts = Race(options.alpha, options.screen, options.keep_top)
    if direct:
        facts.not_raced = [backbone.name for backbone in direct]
        context.reporter.warning(
            f"not raced (trained end to end): {', '.join(facts.not_raced)}; they get full runs"
        )
    rounds = _Rounds(context)
    entrants = [_Entrant(backbone) for backbone in raced]
    left: list = []
    for number, fraction in enumerate(FRACTIONS[:-1], 1):
        if len(entrants) < 2:
            break
        entrants, gone, record = rounds.run(number, fraction, entrants, options)
        facts.rounds.append(record)
        left += gone
    facts.finalists = [entrant.backbone.name for entrant in entrants]
    finals = [runner._run_and_store(e.backbone, context) for e in entrants]
    finals += [runner._run_and_store(backbone, context) for backbone in direct]
    return finals + left, facts


class _Rounds:
    """The rounds of one race over one dataset: the subsets, and each round's work."""

    def __init__(self, context: Any):
        self.context = context
        dataset, digests, seed = context.dataset, context.digests, context.settings.seed
        self.train_ranks = subset_ranks(
            dataset.train.labels, [digests[p] for p in dataset.train.paths], seed
        )
        self.test_ranks = subset_ranks(
            dataset.test.labels, [digests[p] for p in dataset.test.paths], seed
        )
        # the plain head of a run: --tune, --seeds and --augment are for the final runs
        self.settings = replace(context.settings, tune=False, seeds=1, augment=0)

    def run(self, number: int, fraction: float, entrants: list[_Entrant], options: RaceSettings):
        """(survivors, results of those who left, the round's facts)."""
        subset = self._subset(fraction)
        record = RoundFacts(
            number,
            fraction,
            {"train": len(subset.train), "test": len(subset.test)},
            [e.backbone.name for e in entrants],
            {},
        )
        gathered, left = self._gather(entrants, subset, record)
        entrants = [e for e in entrants if e.backbone.name in gathered]
        if number == 1 and options.screen is not None:
            entrants, screened = self._screen(entrants, gathered, options, record)
            left += [self._screened_out(e, record, options) for e in screened]
        if len(entrants) < 2:
            return entrants, left, record
        decision = decide_round(
            self._correct(entrants, gathered, subset), options.alpha, len(FRACTIONS) - 1
        )
        record.leader, record.threshold = decision.leader, decision.threshold
        record.leader_accuracy = decision.leader_accuracy
        record.duels = [duel.facts() for duel in decision.duels.values()]
        record.out = decision.out
        for entrant in entrants:
            duel = decision.duels.get(entrant.backbone.name)
            if duel is not None and duel.out:
                left.append(self._tested_out(entrant, duel, decision, record))
        return [e for e in entrants if e.backbone.name not in decision.out], left, record

    def _gather(self, entrants: list[_Entrant], subset: Dataset, record: RoundFacts):
        """({name: (splits, test paths read)} of those whose features came, [failed results])."""
        gathered, failed = {}, []
        for entrant in entrants:
            started = time.perf_counter()
            name = entrant.backbone.name
            self.context.reporter.backbone_started(
                f"{name}, race round {record.number}", "feature-extraction"
            )
            try:
                gathered[name] = self._features(entrant, subset, record)
            except (DataError, KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:  # one backbone failing must not stop the race
                entrant.seconds += time.perf_counter() - started
                failed.append(self._failed(entrant, error, record.number))
                record.failed.append(name)
                continue
            entrant.seconds += time.perf_counter() - started
        return gathered, failed

    def _subset(self, fraction: float) -> Dataset:
        dataset = self.context.dataset
        train = round_subset(dataset.train.labels, self.train_ranks, fraction)
        test = round_subset(dataset.test.labels, self.test_ranks, fraction)
        given = dataset.given_validation
        return Dataset(
            _images(dataset.train, train),
            _images(dataset.test, test),
            None if given is None else given[train],
            dataset.split,
        )

    def _features(self, entrant: _Entrant, subset: Dataset, record: RoundFacts):
        from zoo.runs.pipelines import Job, frozen_splits

        context = self.context
        job = Job(subset, context.digests, self.settings, context.reporter, context.engines)
        splits, skipped, cost = frozen_splits(entrant.backbone, job)
        entrant.computed += cost.computed
        entrant.extract_seconds += cost.seconds
        entrant.engine = cost.engine
        record.computed[entrant.backbone.name] = cost.computed
        missing = {path for path, _ in skipped}
        tested = [path for path in subset.test.paths if path not in missing]
        return splits, tested

    def _screen(self, entrants, gathered, options: RaceSettings, record: RoundFacts):
        """The entrants ordered by the screen on their round-1 training features (fit and
        validation both); with --keep-top, (the best K, the rest)."""
        scores = {}
        for entrant in entrants:
            splits, _ = gathered[entrant.backbone.name]
            features = np.concatenate([splits.train[0], splits.validation[0]])
            labels = np.concatenate([splits.train[1], splits.validation[1]])
            scores[entrant.backbone.name] = float(screen_score(options.screen, features, labels))
        record.screen = scores
        ordered = sorted(entrants, key=lambda e: -scores[e.backbone.name])
        keep = options.keep_top or len(ordered)
        record.screened_out = [e.backbone.name for e in ordered[keep:]]
        return ordered[:keep], ordered[keep:]

    def _correct(self, entrants, gathered, subset: Dataset) -> dict[str, np.ndarray]:
        """Each entrant's right-or-wrong on the round's test images that every one of them read."""
        from zoo.runs.pipelines import plain_head_probabilities

        classes = len(subset.classes)
        answers = {}
        for entrant in entrants:
            splits, tested = gathered[entrant.backbone.name]
            started = time.perf_counter()
            probabilities = plain_head_probabilities(splits, classes, self.settings)
            right = probabilities.argmax(axis=1) == splits.test[1]
            answers[entrant.backbone.name] = dict(zip(tested, right.tolist(), strict=True))
            entrant.seconds += time.perf_counter() - started
        common = [path for path in subset.test.paths if all(path in a for a in answers.values())]
        return {name: np.array([a[p] for p in common], dtype=bool) for name, a in answers.items()}

    def _screened_out(self, entrant: _Entrant, record: RoundFacts, options: RaceSettings):
        metrics = {
            **_round_metrics(record),
            "race_reason": "screen",
            "race_screen": record.screen[entrant.backbone.name],
        }
        return self._raced_out(entrant, _screen_reason(entrant, record, options), metrics)

    def _tested_out(self, entrant: _Entrant, duel: Duel, decision, record: RoundFacts):
        leader, accuracy = decision.leader, decision.leader_accuracy
        metrics = _duel_metrics(duel, leader, accuracy, record)
        return self._raced_out(entrant, _test_reason(duel, leader, accuracy, record), metrics)

    def _raced_out(self, entrant: _Entrant, reason: str, metrics: dict):
        from zoo.runs.runner import RunResult

        result = RunResult(
            entrant.backbone.name,
            RACED_OUT,
            "feature-extraction",
            reason=reason,
            metrics=metrics,
            seconds=entrant.seconds,
            extract_seconds=entrant.extract_seconds,
            images_per_second=(
                entrant.computed / entrant.extract_seconds if entrant.computed else None
            ),
            computed_features=entrant.computed,
            engine=entrant.engine,
            params_m=entrant.backbone.params_m,
        )
        return self._store(result, entrant.backbone)

    def _failed(self, entrant: _Entrant, error: Exception, number: int):
        import traceback

        from zoo.runs.runner import RunResult

        reason = str(error) if isinstance(error, ZooError) else f"{type(error).__name__}: {error}"
        result = RunResult(
            entrant.backbone.name,
            "failed",
            "feature-extraction",
            reason=(reason.splitlines()[0] if reason else "failed") + f" (race round {number})",
            seconds=entrant.seconds,
            params_m=entrant.backbone.params_m,
        )
        result.traceback = traceback.format_exc()
        return self._store(result, entrant.backbone)

    def _store(self, result, backbone: Backbone | Combination):
        """The row of a run that left the race, written as the runner writes every run."""
        from zoo.runs import runner
        from zoo.runs.store import save_run

        record = runner._record(result, backbone, self.context)
        try:
            result.run_id = save_run(record)
        except StoreError as error:  # kept for the next command to store, as any run
            result.pending = str(runner._keep_pending(record, error, backbone))
            self.context.reporter.warning(
                f"{backbone.name}: the run was not stored: {error}; it is kept in "
                f"{result.pending} and the next zoo command stores it"
            )
        if result.run_id is not None:
            runner.announce(result.run_id, self.context.reporter.warning)
        return result


def _images(images: ImageSet, chosen: np.ndarray) -> ImageSet:
    return ImageSet([images.paths[i] for i in chosen], images.labels[chosen], images.classes)


def _round_metrics(record: RoundFacts) -> dict:
    return {
        "race_round": record.number,
        "race_fraction": record.fraction,
        "race_images": dict(record.images),
    }


def _duel_metrics(duel: Duel, leader: str, leader_accuracy: float, record: RoundFacts) -> dict:
    return {
        **_round_metrics(record),
        "race_reason": "mcnemar",
        "race_accuracy": duel.accuracy,
        "race_accuracy_ci": list(duel.interval),
        "race_test_images": duel.images,
        "race_leader": leader,
        "race_leader_accuracy": leader_accuracy,
        "race_p_value": duel.p_value,
        "race_threshold": record.threshold,
    }


def _test_reason(duel: Duel, leader: str, leader_accuracy: float, record: RoundFacts) -> str:
    return (
        f"round {record.number}: {duel.accuracy:.3f} vs {leader} {leader_accuracy:.3f} on "
        f"{duel.images} test images, one-sided p={duel.p_value:.2g} <= {record.threshold:.2g}"
    )


def _screen_reason(entrant: _Entrant, record: RoundFacts, options: RaceSettings) -> str:
    ranked = sorted(record.screen, key=lambda name: -record.screen[name])
    place = ranked.index(entrant.backbone.name) + 1
    return (
        f"round 1: screen ({options.screen} {record.screen[entrant.backbone.name]:.3f}) ranks "
        f"it {place} of {len(ranked)}, outside --keep-top {options.keep_top}"
    )
