"""Which deployed models fit a latency and size budget, and the accuracy-latency Pareto front.

Pure functions over the measurements `--deploy` stores (`metrics.deploy[target]`): no store,
no printing. A candidate is one run on one target; the verdict compares the candidates that fit,
on their deployed test probabilities (`Candidate.probabilities`, in the run's test order).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from zoo.analysis.record import RunRecord
from zoo.errors import UsageError

PREFERENCES = ("speed", "size", "accuracy", "latency")
LATENCY_KEY = "1_thread"  # the budget and the tie-break read the 1-thread median
MEGABYTE = 1e6


@dataclass(frozen=True)
class Candidate:
    run_id: int
    backbone: str
    target: str
    accuracy: float
    ms: float  # median latency per image, batch 1, 1 thread
    mb: float  # size on disk of what a user ships
    probabilities: str | None = None  # the deployed model's test probabilities (.npz), paired

    def facts(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BudgetFit:
    budget_ms: float | None
    budget_mb: float | None
    prefer: str
    fits: list[Candidate] = field(default_factory=list)
    left_out: list[tuple[int, str, str]] = field(default_factory=list)  # (run, target, why)

    def facts(self) -> dict[str, Any]:
        return {
            "budget_ms": self.budget_ms,
            "budget_mb": self.budget_mb,
            "prefer": self.prefer,
            "fits": [candidate.facts() for candidate in self.fits],
            "left_out": [
                {"run": run, "target": target, "reason": why} for run, target, why in self.left_out
            ],
        }


def check_budget(
    budget_ms: float | None, budget_mb: float | None, prefer: str, targets: list[str]
) -> None:
    """Usage errors (one line) for budget flags that cannot mean anything."""
    if prefer not in PREFERENCES:
        raise UsageError(f"--prefer must be one of {', '.join(PREFERENCES)}, not {prefer!r}")
    for flag, value in (("--budget-ms", budget_ms), ("--budget-mb", budget_mb)):
        if value is None:
            continue
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{flag} must be a positive number, not {value:g}")
        if not targets:
            raise UsageError(f"{flag} is a budget for the deployed model: add --deploy TARGET")
    if prefer == "latency" and not targets:
        raise UsageError("--prefer latency ranks by measured latency: add --deploy TARGET")


def candidate(run: RunRecord, target: str) -> Candidate | str:
    """The run on `target` as a candidate, or why it is not one (one line)."""
    if not run.is_ok:
        return f"the run {run.status}: {run.reason}"
    figures = run.deployed.get(target)
    if not figures:
        return f"not measured on {target}"
    if "error" in figures:
        return f"{target} failed: {figures['error']}"
    return Candidate(
        run_id=run.id,
        backbone=run.backbone,
        target=target,
        accuracy=float(figures["accuracy"]),
        ms=float(figures["latency"][LATENCY_KEY]["median_ms"]),
        mb=figures["size_bytes"] / MEGABYTE,
        probabilities=run.artifacts.get(f"deploy_{target}_probabilities"),
    )


def within_budget(
    runs: list[RunRecord],
    targets: list[str],
    budget_ms: float | None = None,
    budget_mb: float | None = None,
    prefer: str = "speed",
) -> BudgetFit:
    """Every (run, target) whose deployed model fits both budgets, and each that does not, why.

    With `prefer="latency"` the fitting candidates come fastest first (the tie-break order);
    otherwise most accurate first.
    """
    fit = BudgetFit(budget_ms, budget_mb, prefer)
    for run in runs:
        for target in targets:
            found = candidate(run, target)
            why = found if isinstance(found, str) else _over_budget(found, budget_ms, budget_mb)
            if why:
                fit.left_out.append((run.id, target, why))
            else:
                fit.fits.append(found)
    if prefer == "latency":
        fit.fits.sort(key=lambda c: (c.ms, -c.accuracy))
    else:
        fit.fits.sort(key=lambda c: (-c.accuracy, c.ms))
    return fit


def _over_budget(found: Candidate, budget_ms: float | None, budget_mb: float | None) -> str:
    reasons = []
    if budget_ms is not None and found.ms > budget_ms:
        reasons.append(f"{found.ms:.2f} ms > {budget_ms:g} ms")
    if budget_mb is not None and found.mb > budget_mb:
        reasons.append(f"{found.mb:.2f} MB > {budget_mb:g} MB")
    return ", ".join(reasons)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats: none is at least as fast
    and at least as accurate while strictly better in one. Fastest first."""
    front = []
    for index, (ms, accuracy) in enumerate(points):
        dominated = any(
            other_ms <= ms
            and other_accuracy >= accuracy
            and (other_ms, other_accuracy) != (ms, accuracy)
            for other_ms, other_accuracy in points
        )
        if not dominated:
            front.append(index)
    return sorted(front, key=lambda index: points[index])
