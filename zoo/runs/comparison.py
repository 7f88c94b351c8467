"""The verdict over stored runs: their test predictions read back, checked to be on one test set.

The statistics are zoo.analysis.verdict's; this module knows where runs keep their predictions
(`test_probabilities.npz`) and which runs may be compared at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from zoo.analysis.record import RunRecord
from zoo.analysis.verdict import Candidate, Verdict, decide
from zoo.catalog.plugins import load_plugins
from zoo.errors import UsageError
from zoo.runs.artifacts import read_arrays
from zoo.runs.speeds import measured_speeds, speed_of
from zoo.runs.store import list_runs


@dataclass
class Judgement:
    """A verdict, or why there is none; and the runs it left out, one line each."""

    verdict: Verdict | None = None
    names: dict[int, str] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    refused: str | None = None
    predicted: dict[int, np.ndarray] = field(default_factory=dict)  # each run's test classes
    labels: np.ndarray | None = None  # the true classes of the test images


def judge(
    records: list[RunRecord],
    alpha: float = 0.05,
    prefer: str = "speed",
    metric: str = "accuracy",
    deployed: dict[int, tuple[str, str, float]] | None = None,
) -> Judgement:
    """The verdict over the finished runs among `records`; a finished run without stored test
    predictions is left out with a line saying so. With `deployed` ({run: (target, its test
    probabilities, latency ms)}, the runs within a --deploy budget), only those runs are judged,
    on their deployed models' predictions."""
    judgement = Judgement()
    candidates: list[Candidate] = []
    labels_seen: np.ndarray | None = None
    first: RunRecord | None = None
    speeds = _speeds(records)
    raced_out = 0
    for record in records:
        if record.status == "raced-out":  # no predictions on the full test set: left out
            raced_out += 1
            judgement.left_out.append(raced_out_line(record))
            continue
        if not record.is_ok:  # failed rows say so in every table; they have no predictions
            continue
        if deployed is not None and record.id not in deployed:
            continue  # outside the budget: the budget lines say why
        predicted = _predictions(record, deployed.get(record.id) if deployed else None)
        if isinstance(predicted, str):
            judgement.left_out.append(predicted)
            continue
        probabilities, labels = predicted
        if first is None:
            first, labels_seen = record, labels
        elif not _same_test_set(first, record, labels_seen, labels):
            judgement.refused = (
                f"no verdict: runs {first.id} and {record.id} were not evaluated on the same "
                "test images (different data, split or classes); compare runs of one data set"
            )
            return judgement
        candidate = _candidate(record, probabilities, labels, speeds)
        if deployed:
            target, _, latency = deployed[record.id]
            candidate = replace(candidate, deployed=target, latency_ms=latency)
        candidates.append(candidate)
        judgement.predicted[record.id] = probabilities.argmax(axis=1)
        judgement.labels = labels
    if deployed is not None and len(candidates) < 2:
        judgement.refused = (
            "no verdict: it needs two or more runs whose deployed models fit the budget"
            + f" (got {len(candidates)})"
        )
        return judgement
    if len(candidates) == 1 and raced_out:
        judgement.refused = (
            f"no verdict needed: {candidates[0].name} (run {candidates[0].run_id}) is the one "
            "backbone the race left; the others were raced out"
        )
        return judgement
    if len(candidates) < 2:
        judgement.refused = (
            "no verdict: it needs two or more finished runs on the same test images"
            + (f" (got {len(candidates)})" if candidates else "")
        )
        return judgement
    judgement.verdict = decide(candidates, alpha=alpha, prefer=prefer, metric=metric)
    judgement.names = {candidate.run_id: candidate.name for candidate in candidates}
    return judgement


def raced_out_line(record: RunRecord) -> str:
    """One line for a run raced out by `zoo run --race`: where, and why."""
    round_number = record.metrics.get("race_round")
    return (
        f"run {record.id} ({record.backbone}) was raced out in round {round_number} "
        f"({record.reason}): not in the verdict"
    )


def _predictions(
    record: RunRecord, deployed: tuple[str, str, float] | None = None
) -> tuple[np.ndarray, np.ndarray] | str:
    """The run's test probabilities and labels (its deployed model's, given one), or the one
    line saying why it has none."""
    name = f"run {record.id} ({record.backbone})"
    # seeded runs are compared by their heads' averaged predictions
    path = record.artifacts.get("seed_averaged_probabilities") or record.probabilities_path
    if deployed is not None:
        path = deployed[1]
    if not path or not Path(path).is_file():
        return (
            f"{name} has no stored test predictions (stored before zoo kept them, or its "
            "folder was removed): left out of the verdict; run that backbone again"
        )
    try:
        probabilities, labels = read_arrays(Path(path), ("probabilities", "labels"), record)
    except UsageError as damaged:
        return f"{damaged}: left out of the verdict"
    return probabilities, labels


def _same_test_set(
    first: RunRecord, record: RunRecord, first_labels: np.ndarray, labels: np.ndarray
) -> bool:
    same_data = record.data_fingerprint == first.data_fingerprint
    same_classes = record.classes == first.classes
    return same_data and same_classes and np.array_equal(first_labels, labels)


def _candidate(
    record: RunRecord, probabilities: np.ndarray, labels: np.ndarray, speeds: dict
) -> Candidate:
    metrics = record.metrics
    speed = speed_of(record, speeds)
    return Candidate(
        run_id=record.id,
        name=record.backbone,
        correct=probabilities.argmax(axis=1) == labels,
        images_per_second=speed[0] if speed else None,
        params_m=metrics.get("params_m"),
        seeds=int(metrics.get("seeds") or 1),
        labels=labels,
    )


def _speeds(records: list[RunRecord]) -> dict[str, tuple[float, int]]:
    """Speeds measured by earlier runs of the same backbones, for runs that found all cached."""
    backbones = {record.backbone for record in records}
    try:
        earlier = [run for run in list_runs() if run.backbone in backbones]
    except UsageError:  # a store that cannot be read lends no speeds; the verdict still stands
        earlier = []
    return measured_speeds(earlier)


def announce(judgement: Judgement, records: list[RunRecord]) -> list[str]:
    """Hand a verdict to the plugins' verdict_reached hooks (trackers), with the runs in their
    JSON form (as `run_finished` has them); returns their problems."""
    plugins = load_plugins()
    if judgement.verdict is None or not plugins.implementers("verdict_reached"):
        return []
    facts, problems = judgement.verdict.facts(), []
    arguments = {"verdict": facts, "runs": [record.to_json() for record in records]}
    for _ in plugins.call_each("verdict_reached", lambda name: arguments, problems):
        pass
    return problems
