"""`zoo ensemble RUN...`: average stored runs' test probabilities into a run of its own.

Each run stores its test probabilities (`test_probabilities.npz`, artifacts.py; 100 KB for 2500 images and 10
classes) beside its head: recomputing them would mean decoding the test set and running every
backbone again, and a stored run's model may be a fine-tuned one that only its folder holds.
Runs can be ensembled when they saw the same data (fingerprint) and classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo import __version__
from zoo.analysis.evaluation import evaluate
from zoo.analysis.record import OK, RunRecord
from zoo.errors import UsageError
from zoo.reporting import Reporter
from zoo.runs.announce import announce
from zoo.runs.artifacts import read_arrays
from zoo.runs.store import get_run, save_run


def _probabilities(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    path = record.probabilities_path
    if not record.is_ok or not path or not Path(path).is_file():
        raise UsageError(
            f"run {record.id} has no stored test probabilities (failed, or stored before "
            "zoo kept them); run that backbone again"
        )
    probabilities, labels = read_arrays(Path(path), ("probabilities", "labels"), record)
    return probabilities, labels


def ensemble(run_ids: list[int], reporter: Reporter | None = None) -> RunRecord:
    """Store the average of the runs' test probabilities as a new run; returns its record.

    The trackers' `run_finished` hooks see it as they see any run (a failing one warns).
    """
    if len(set(run_ids)) < 2:
        raise UsageError("an ensemble needs at least two different runs")
    records = [get_run(run_id) for run_id in dict.fromkeys(run_ids)]
    first = records[0]
    for record in records[1:]:
        if (record.data_fingerprint, record.classes) != (first.data_fingerprint, first.classes):
            raise UsageError(
                f"runs {first.id} and {record.id} were not trained on the same data; "
                "ensemble runs of one dataset"
            )
    members = [_probabilities(record) for record in records]
    labels = members[0][1]
    if any(not np.array_equal(member_labels, labels) for _, member_labels in members):
        raise UsageError("the runs did not evaluate the same test images (unreadable files?)")
    average = np.mean([probabilities for probabilities, _ in members], axis=0)
    metrics = evaluate(average, labels, first.classes)
    ids = [record.id for record in records]
    record = RunRecord(
        backbone="+".join(record.backbone for record in records),
        mode="ensemble",
        status=OK,
        settings={"members": ids, "combine": "mean of test probabilities"},
        data_fingerprint=first.data_fingerprint,
        data=first.data,  # the members' folder: `zoo runs --data NAME` finds it
        metrics={**metrics, "classes": first.classes, "members": ids},
        versions={"zoo": __version__},
    )
    record.id = save_run(record)
    announce(record.id, (reporter or Reporter()).warning)
    return record
