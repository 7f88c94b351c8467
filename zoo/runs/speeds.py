"""Extraction speeds of stored runs: a run that found every feature cached measured none, so it
borrows the newest measured speed of the same backbone on this machine (report and verdict)."""

from __future__ import annotations

from typing import Any


def measured_speeds(runs: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Each backbone's newest measured extraction speed: {backbone: (images/s, run id)}.

    A run that found every feature cached measured nothing; the speed is the backbone's on this
    machine, so the report borrows it from the newest run of the same backbone that did measure.
    """
    speeds: dict[str, tuple[float, int]] = {}
    for run in sorted(runs, key=lambda run: run["id"], reverse=True):
        speed = run["metrics"].get("images_per_second")
        if speed and run["backbone"] not in speeds:
            speeds[run["backbone"]] = (float(speed), run["id"])
    return speeds


def speed_of(record: dict[str, Any], speeds: dict) -> tuple[float, int] | None:
    """(images/s, the run that measured it): the run's own, else its backbone's newest."""
    own = record["metrics"].get("images_per_second")
    return (float(own), record["id"]) if own else speeds.get(record["backbone"])
