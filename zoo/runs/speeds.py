"""Extraction speeds of stored runs: a run that found every feature cached measured none, so it
borrows the newest speed measured on this machine for the same backbone, engine and precision
(the comparison report and the verdict both use them)."""

from __future__ import annotations

from zoo.analysis.record import RunRecord

SpeedKey = tuple[str, str | None]  # (backbone, its engines and precisions without versions)


def speed_key(record: RunRecord) -> SpeedKey:
    """What a speed is measured for: the backbone through one engine at one precision.

    An engine label reads `openvino 2026.4.1 bf16` (` + ` between a combination's members; a
    cluster's adds ` on ray (N workers)`): the version is left out, the rest must match.
    """
    label = record.engine
    if not label:
        return record.backbone, None
    parts = []
    for engine in label.split(" + "):
        words = engine.split()
        parts.append(" ".join(words[:1] + words[2:]))
    return record.backbone, " + ".join(parts)


def measured_speeds(runs: list[RunRecord]) -> dict[SpeedKey, tuple[float, int]]:
    """Each speed key's newest measured extraction speed: {key: (images/s, run id)}."""
    speeds: dict[SpeedKey, tuple[float, int]] = {}
    for run in sorted(runs, key=lambda run: run.id, reverse=True):
        speed = run.metrics.get("images_per_second")
        if speed and speed_key(run) not in speeds:
            speeds[speed_key(run)] = (float(speed), run.id)
    return speeds


def speed_of(record: RunRecord, speeds: dict) -> tuple[float, int] | None:
    """(images/s, the run that measured it): the run's own, else the newest of its speed key."""
    own = record.metrics.get("images_per_second")
    return (float(own), record.id) if own else speeds.get(speed_key(record))
