"""The race's decisions (numpy only): which images each round sees, and who is raced out.

A race runs frozen backbones on nested, stratified subsets of the training and test images
(`FRACTIONS`: 1/8, 1/4, 1/2, all). Each image has a place in its class, set by a seeded hash of
its content digest (as zoo.data.layouts.split_by_digest), and the round at fraction f takes the
first ceil(f * n) of each class of n: every round holds the one before it, and adding images
never reshuffles the others (a new image only takes its own place in the order).

After each round but the last, every survivor is compared with the round's leader (the highest
subset accuracy; ties go to the earlier candidate) by the exact McNemar test on the round's test
images, one-sided (the alternative: the leader is the better). The correction is Bonferroni over
the R - 1 elimination rounds and over the m - 1 comparisons of a round: with m survivors a
backbone is raced out when it is below the leader and its one-sided p-value is
<= alpha / ((R - 1)(m - 1)). For the true best to be dropped in a round, one of the m - 1 others
must beat it at that level in a one-sided test whose null (the other is not better) holds; by
the union bound this has probability at most alpha / (R - 1) in a round, whoever the
(data-dependent) leader is, so at most alpha over the race. A two-sided test would spend half of
that level on a direction that cannot drop anyone (the survivor above the leader). Holm within a
round would not do: its ordering presumes fixed hypotheses, and the leader is chosen from the
same data. m and the survivors come from earlier rounds on the same (nested) images, so the
bound is argued round by round, and tests/test_race.py checks the rate on simulated races. The
survivors of the last elimination round are trained on all the images and judged by the
ordinary verdict.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from zoo.analysis.statistics import mcnemar_one_sided, wilson_interval

FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)


def subset_ranks(labels: np.ndarray, digests: list[str], seed: int) -> np.ndarray:
    """Each image's place within its class (0 first), ordered by a seeded hash of its digest.

    Identical files share a digest and sit side by side; their order is their order given."""
    labels = np.asarray(labels)
    keys = [hashlib.sha256(f"race/{seed}/{digest}".encode()).digest() for digest in digests]
    ranks = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = sorted(members, key=lambda index: keys[index])
        ranks[order] = np.arange(len(order))
    return ranks


def round_subset(labels: np.ndarray, ranks: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (ascending) of the images in the round at `fraction`: the first ceil(f * n) of
    each class of n images, at least one."""
    labels = np.asarray(labels)
    kept = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = labels == label
        count = int(members.sum())
        taken = max(1, math.ceil(round(fraction * count, 9)))  # 0.5 * 10 is 5, not 6
        kept |= members & (ranks < taken)
    return np.flatnonzero(kept)


def elimination_threshold(alpha: float, elimination_rounds: int, survivors: int) -> float:
    """The p-value at or below which a survivor is raced out: alpha / ((R - 1)(m - 1))."""
    if elimination_rounds < 1 or survivors < 2:
        raise ValueError("a threshold needs at least one elimination round and two survivors")
    return alpha / (elimination_rounds * (survivors - 1))


@dataclass
class Duel:
    """One survivor against the round's leader on the round's test images."""

    backbone: str
    right: int  # test images it got right
    images: int
    only_leader: int  # images only the leader got right (b)
    only_this: int  # images only this one got right (c)
    p_value: float
    out: bool

    @property
    def accuracy(self) -> float:
        return self.right / self.images

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.right, self.images)

    def facts(self) -> dict:
        return {
            "backbone": self.backbone,
            "accuracy": self.accuracy,
            "accuracy_ci": list(self.interval),
            "right": self.right,
            "images": self.images,
            "only_leader": self.only_leader,
            "only_this": self.only_this,
            "p_value": self.p_value,
            "out": self.out,
        }


@dataclass
class RoundDecision:
    leader: str
    leader_accuracy: float
    threshold: float
    duels: dict[str, Duel] = field(default_factory=dict)  # every survivor but the leader

    @property
    def out(self) -> list[str]:
        return [name for name, duel in self.duels.items() if duel.out]


def decide_round(
    correct: dict[str, np.ndarray], alpha: float, elimination_rounds: int
) -> RoundDecision:
    """Who is raced out of a round: `correct` maps each survivor (in order) to a bool per test
    image of the round (the same images for all), whether it classified that image right."""
    names = list(correct)
    if len(names) < 2:
        raise ValueError("a round needs at least two survivors")
    vectors = {name: np.asarray(correct[name], dtype=bool) for name in names}
    sizes = {len(vector) for vector in vectors.values()}
    if len(sizes) != 1 or not sizes.pop():
        raise ValueError("every survivor must be scored on the same, non-empty test images")
    leader = max(names, key=lambda name: (int(vectors[name].sum()), -names.index(name)))
    threshold = elimination_threshold(alpha, elimination_rounds, len(names))
    best = vectors[leader]
    decision = RoundDecision(leader, float(best.mean()), threshold)
    for name in names:
        if name == leader:
            continue
        mine = vectors[name]
        only_leader, only_this = int((best & ~mine).sum()), int((mine & ~best).sum())
        p_value = mcnemar_one_sided(only_leader, only_this)  # the leader is better
        below = int(mine.sum()) < int(best.sum())
        decision.duels[name] = Duel(
            name,
            int(mine.sum()),
            len(mine),
            only_leader,
            only_this,
            p_value,
            out=below and p_value <= threshold,
        )
    return decision
