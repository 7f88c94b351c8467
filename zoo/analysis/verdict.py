"""The verdict: which runs are tied for best on one test set, which are worse, which to take.

Every run is compared with the most accurate one on the same test images by the exact McNemar
test (only the images where the two disagree carry evidence), or on balanced accuracy by a
paired bootstrap, Holm-corrected over the comparisons. Runs not significantly worse are tied with the best; among them the recommendation
goes to the fastest, the smallest or the most accurate (`prefer`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from zoo.analysis.bootstrap import balanced_accuracy, paired_bootstrap_p
from zoo.analysis.statistics import holm, mcnemar_exact, wilson_interval

PREFERENCES = ("speed", "size", "accuracy", "latency")  # latency: of a deployed model (--deploy)
# One measured extraction speed on a busy machine varies by more than this (the demo's three Lite
# models measured 27-33 img/s under load, 85-150 quiet): speeds this close count as equal, and size
# decides between them.
SPEED_TOLERANCE = 0.10
METRICS = ("accuracy", "balanced-accuracy")
RESAMPLES = 2000  # the paired bootstrap's: p-values to about 0.01 near alpha 0.05
TESTS = {
    "accuracy": "exact McNemar test against the best run on the same test images, Holm-corrected",
    "balanced-accuracy": f"paired bootstrap ({RESAMPLES} resamples of the test images) of "
    "balanced accuracy against the best run, Holm-corrected",
}
SEEDED = "; seeded runs compared by their seed-averaged probabilities"


@dataclass(frozen=True)
class Candidate:
    """One run as the verdict sees it: which test images it got right, and its costs."""

    run_id: int
    name: str
    correct: np.ndarray  # bool, one per test image, in the test set's order
    images_per_second: float | None = None
    params_m: float | None = None
    seeds: int = 1  # heads averaged into `correct` (--seeds)
    labels: np.ndarray | None = None  # the true classes, for balanced accuracy
    latency_ms: float | None = None  # the deployed model's median latency (--deploy)
    deployed: str | None = None  # the deployment target whose predictions `correct` holds

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def score(self, metric: str) -> float:
        if metric == "balanced-accuracy":
            return balanced_accuracy(self.correct, self.labels)
        return self.accuracy


@dataclass(frozen=True)
class Pair:
    run: int
    vs: int  # the best run
    b: int  # test images only the best got right
    c: int  # test images only `run` got right
    p: float
    p_adjusted: float


@dataclass
class Verdict:
    metric: str
    alpha: float
    test: str
    prefer: str
    best: int
    tied: list[int]
    worse: list[int]
    recommended: int
    because: str
    pairs: list[Pair] = field(default_factory=list)
    intervals: dict[int, tuple[float, float]] = field(default_factory=dict)

    def facts(self) -> dict:
        """The verdict as JSON-ready data (`--json`, trackers)."""
        facts = asdict(self)
        facts["intervals"] = {str(run): list(ci) for run, ci in self.intervals.items()}
        return facts


def decide(
    candidates: list[Candidate],
    alpha: float = 0.05,
    prefer: str = "speed",
    metric: str = "accuracy",
) -> Verdict:
    """The verdict over runs that saw the same test images (same length, same order)."""
    if len(candidates) < 2:
        raise ValueError("a verdict needs at least two runs")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    if len({len(candidate.correct) for candidate in candidates}) != 1:
        raise ValueError("the runs did not see the same number of test images")
    if metric == "balanced-accuracy" and any(run.labels is None for run in candidates):
        raise ValueError("balanced accuracy needs each run's test labels")
    best = max(
        candidates, key=lambda run: (run.score(metric), _preference(run, prefer), -run.run_id)
    )
    others = [run for run in candidates if run is not best]
    pairs = _pairs(best, others, metric)
    worse = [pair.run for pair in pairs if pair.p_adjusted < alpha]
    tied = [best] + [run for run in others if run.run_id not in worse]
    recommended = max(
        _contenders(tied, prefer), key=lambda run: (_preference(run, prefer), run.accuracy)
    )
    seeded = any(run.seeds > 1 for run in candidates)
    targets = sorted({run.deployed for run in candidates if run.deployed})
    deployed = f"; on the deployed models' predictions ({', '.join(targets)})" if targets else ""
    return Verdict(
        metric=metric,
        alpha=alpha,
        test=TESTS[metric] + (SEEDED if seeded else "") + deployed,
        prefer=prefer,
        best=best.run_id,
        tied=[run.run_id for run in tied],
        worse=worse,
        recommended=recommended.run_id,
        because=_because(recommended, tied, prefer),
        pairs=pairs,
        intervals={run.run_id: _interval(run) for run in candidates},
    )


def _interval(run: Candidate) -> tuple[float, float]:
    return wilson_interval(int(run.correct.sum()), len(run.correct))


def _pairs(best: Candidate, others: list[Candidate], metric: str) -> list[Pair]:
    counts = [
        (int((best.correct & ~run.correct).sum()), int((run.correct & ~best.correct).sum()))
        for run in others
    ]
    if metric == "balanced-accuracy":
        p_values = [
            paired_bootstrap_p(best.correct, run.correct, best.labels, RESAMPLES) for run in others
        ]
    else:
        p_values = [mcnemar_exact(b, c) for b, c in counts]
    adjusted = holm(p_values)
    return [
        Pair(run.run_id, best.run_id, b, c, p, p_adjusted)
        for run, (b, c), p, p_adjusted in zip(others, counts, p_values, adjusted)
    ]


def _contenders(tied: list[Candidate], prefer: str) -> list[Candidate]:
    """The tied runs the preference chooses among: for speed, those within SPEED_TOLERANCE of
    the fastest measured (ranked by size next); otherwise all of them."""
    speeds = [run.images_per_second for run in tied if run.images_per_second is not None]
    if prefer != "speed" or not speeds:
        return tied
    floor = (1 - SPEED_TOLERANCE) * max(speeds)
    return [
        run for run in tied if run.images_per_second is not None and run.images_per_second >= floor
    ]


def _preference(run: Candidate, prefer: str) -> tuple:
    """Larger is preferred; an unknown speed or size ranks last."""
    speed = run.images_per_second if run.images_per_second is not None else -1.0
    size = -run.params_m if run.params_m is not None else float("-inf")
    if prefer == "speed":  # among runs equally fast within SPEED_TOLERANCE (_contenders)
        return (size, speed)
    if prefer == "latency":
        return (-run.latency_ms if run.latency_ms is not None else float("-inf"), size)
    if prefer == "size":
        return (size, speed)
    return (run.accuracy,)


def _because(chosen: Candidate, tied: list[Candidate], prefer: str) -> str:
    if len(tied) == 1:
        return "it is significantly more accurate than every other run"
    most_accurate = f"the most accurate of them ({chosen.accuracy:.3f})"
    if prefer == "accuracy":
        return most_accurate
    if prefer == "latency":
        if chosen.latency_ms is None:
            return f"{most_accurate}; none has a measured latency"
        return f"the fastest deployed model of them ({chosen.latency_ms:.2f} ms an image, 1 thread)"
    speeds = [run.images_per_second for run in tied if run.images_per_second is not None]
    sizes = [run.params_m for run in tied if run.params_m is not None]
    reasons = []
    fastest = max(speeds) if speeds else None
    if fastest is not None and chosen.images_per_second == fastest:
        reasons.append(f"the fastest of them ({fastest:.0f} img/s)")
    elif prefer == "speed" and fastest is not None:
        reasons.append(
            f"as fast as the fastest within {SPEED_TOLERANCE:.0%} "
            f"({chosen.images_per_second:.0f} against {fastest:.0f} img/s)"
        )
    if sizes and chosen.params_m == min(sizes):
        reasons.append(f"the smallest ({chosen.params_m:.1f} M params)")
    return " and ".join(reasons) or f"{most_accurate}; none has a measured speed or size"


def format_p(p: float) -> str:
    """`p < 1e-10` for vanishing p-values, else three significant figures."""
    return "p < 1e-10" if p < 1e-10 else f"p = {p:.3g}"


def sentences(verdict: Verdict, names: dict[int, str]) -> list[str]:
    """The verdict in words, one sentence a line (plain text: the CLI renders it)."""
    label = {run: f"{names[run]} (run {run})" for run in names}
    adjusted = {pair.run: pair.p_adjusted for pair in verdict.pairs}
    lines = []
    on = " on balanced accuracy" if verdict.metric == "balanced-accuracy" else ""
    if len(verdict.tied) > 1:
        lines.append(
            f"Tied for best{on} (no significant difference at {verdict.alpha:g}): "
            + ", ".join(label[run] for run in verdict.tied)
            + "."
        )
    else:
        lines.append(f"Best{on}: {label[verdict.best]}, significantly better than the rest.")
    lines.append(f"Recommended: {label[verdict.recommended]}, {verdict.because}.")
    if verdict.worse:
        lines.append(
            "Significantly worse: "
            + ", ".join(f"{label[run]} ({format_p(adjusted[run])})" for run in verdict.worse)
            + "."
        )
    return lines
