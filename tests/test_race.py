"""The race's decisions (zoo.analysis.race): nested subsets, thresholds, who is raced out, and
how often simulated races drop the true best."""

import hashlib
import math
import time

import numpy as np
import pytest
from scipy import stats

from zoo.analysis.race import (
    FRACTIONS,
    decide_round,
    elimination_threshold,
    round_subset,
    subset_ranks,
)
from zoo.analysis.statistics import mcnemar_exact, mcnemar_one_sided, wilson_interval


def digests_of(count: int, start: int = 0) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(start, start + count)]


def test_round_subsets_are_nested_and_stratified():
    labels = np.repeat([0, 1, 2], [40, 17, 9])
    ranks = subset_ranks(labels, digests_of(len(labels)), seed=3)
    previous: set[int] = set()
    for fraction in FRACTIONS:
        chosen = round_subset(labels, ranks, fraction)
        assert previous <= set(chosen.tolist())  # nested
        previous = set(chosen.tolist())
        for label, count in ((0, 40), (1, 17), (2, 9)):  # ceil(f * n) of each class
            assert int((labels[chosen] == label).sum()) == max(1, math.ceil(fraction * count))
    assert len(previous) == len(labels)  # the last round is everything
    assert len(round_subset(labels, ranks, 0.5)) == 20 + 9 + 5


def test_subsets_follow_the_content_not_the_order_and_depend_on_the_seed():
    labels = np.zeros(32, dtype=int)
    digests = digests_of(32)
    chosen = set(np.array(digests)[round_subset(labels, subset_ranks(labels, digests, 1), 0.25)])
    backwards = digests[::-1]
    again = round_subset(labels, subset_ranks(labels, backwards, 1), 0.25)
    assert set(np.array(backwards)[again]) == chosen  # the same images, whatever their order
    other = round_subset(labels, subset_ranks(labels, digests, 2), 0.25)
    assert set(np.array(digests)[other]) != chosen


def test_adding_images_does_not_reshuffle_the_others():
    labels = np.repeat([0, 1], 24)
    digests = digests_of(48)
    ranks = subset_ranks(labels, digests, seed=0)
    grown_labels = np.concatenate([labels, [0, 0, 1, 1]])
    grown_digests = digests + digests_of(4, start=1000)
    grown = subset_ranks(grown_labels, grown_digests, seed=0)
    for label in (0, 1):  # the old images keep their order within the class
        old = np.flatnonzero(labels == label)
        assert np.array_equal(np.argsort(ranks[old]), np.argsort(grown[old]))
    for fraction in FRACTIONS[:-1]:
        before = set(round_subset(labels, ranks, fraction).tolist())
        after = set(round_subset(grown_labels, grown, fraction).tolist())
        # at most one old image a new image can displace, and only from a round's tail
        assert len(before - after) <= 4
        assert len(after & before) >= len(before) - 4


@pytest.mark.parametrize(
    "b,c", [(0, 0), (1, 0), (0, 1), (5, 5), (120, 95), (95, 120), (731, 12), (4900, 5100)]
)
def test_the_one_sided_mcnemar_test_is_scipys_greater_binomial_test(b, c):
    expected = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    assert mcnemar_one_sided(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    if b > c:  # the race spends its level on the one direction that can drop a survivor
        assert mcnemar_one_sided(b, c) == pytest.approx(mcnemar_exact(b, c) / 2, rel=1e-9)


def test_a_survivor_is_raced_out_at_the_one_sided_level():
    """26 images only the leader gets right, 8 only the other: one-sided p 1.5e-3, under the
    threshold of 10 survivors (0.05 / 27 = 1.9e-3), where the two-sided p (2.9e-3) is not."""
    leader = np.array([True] * 26 + [False] * 8 + [True] * 50)
    other = np.array([False] * 26 + [True] * 8 + [True] * 50)
    others = {f"same{i}": leader.copy() for i in range(8)}
    decision = decide_round({"leader": leader, **others, "other": other}, 0.05, 3)
    duel = decision.duels["other"]
    assert duel.p_value == pytest.approx(stats.binomtest(26, 34, alternative="greater").pvalue)
    assert decision.threshold == pytest.approx(0.05 / 27)
    assert mcnemar_exact(26, 8) > decision.threshold >= duel.p_value
    assert decision.out == ["other"]


def test_threshold_is_bonferroni_over_rounds_and_comparisons():
    assert elimination_threshold(0.05, 3, 11) == pytest.approx(0.05 / 30)
    assert elimination_threshold(0.05, 3, 2) == pytest.approx(0.05 / 3)
    with pytest.raises(ValueError):
        elimination_threshold(0.05, 3, 1)


def test_a_clearly_worse_backbone_is_raced_out_and_a_tie_is_not():
    rng = np.random.default_rng(0)
    good = rng.random(120) < 0.9
    tie = good.copy()
    tie[:6] = ~tie[:6]  # differs on 6 images, 3 each way or so: no evidence either way
    worse = good & (rng.random(120) < 0.5)  # right on about half of what the leader gets right
    decision = decide_round({"good": good, "tie": tie, "worse": worse}, 0.05, 3)
    assert decision.leader in ("good", "tie")
    assert decision.out == ["worse"]
    assert decision.threshold == pytest.approx(0.05 / 6)
    duel = decision.duels["worse"]
    assert duel.p_value <= decision.threshold and duel.only_this == 0
    assert duel.interval == wilson_interval(int(worse.sum()), 120)
    assert not decision.duels.get("tie", decision.duels.get("good")).out


def test_an_exact_tie_keeps_the_first_as_leader_and_drops_no_one():
    same = np.array([True, False] * 20)
    decision = decide_round({"a": same, "b": same.copy()}, 0.05, 3)
    assert decision.leader == "a" and decision.out == []
    assert decision.duels["b"].p_value == 1.0


def test_a_round_refuses_vectors_of_different_images():
    with pytest.raises(ValueError, match="same, non-empty test images"):
        decide_round({"a": np.ones(5, bool), "b": np.ones(6, bool)}, 0.05, 3)


def simulated_race(abilities, images, alpha, rng, spread=1.5):
    """One race of candidates "0", "1", ... on `images` synthetic test images; the names raced
    out. Candidate i is right on image j with probability sigmoid(ability_i + ease_j): the
    images' ease is shared, so candidates are correlated as models on one test set are, and the
    true accuracy E[sigmoid(ability + ease)] is highest for the highest ability. The nested
    rounds are the first 1/8, 1/4, 1/2 of the images (drawn independently, so a prefix is a
    random subset)."""
    ease = rng.normal(0, spread, images)
    chance = 1 / (1 + np.exp(-(np.asarray(abilities)[:, None] + ease[None, :])))
    right = rng.random(chance.shape) < chance
    survivors, out = [str(i) for i in range(len(abilities))], []
    for fraction in FRACTIONS[:-1]:
        if len(survivors) < 2:
            break
        seen = math.ceil(fraction * images)
        round_right = {name: right[int(name), :seen] for name in survivors}
        decision = decide_round(round_right, alpha, len(FRACTIONS) - 1)
        out += decision.out
        survivors = [name for name in survivors if name not in decision.out]
    return out


def test_simulated_races_drop_the_true_best_at_most_alpha_of_the_time():
    """400 races of 10 candidates: the best (ability 1.5, about 77% accurate), four near-ties
    (1.3-1.45), five far worse (-0.5 to 0.5): the best's drop rate's 95% upper bound <= alpha."""
    alpha, races = 0.05, 400
    abilities = [1.5, 1.45, 1.4, 1.35, 1.3, 0.5, 0.2, 0.0, -0.2, -0.5]
    rng = np.random.default_rng(2026)
    started = time.perf_counter()
    outcomes = [simulated_race(abilities, 800, alpha, rng) for _ in range(races)]
    seconds = time.perf_counter() - started
    best_dropped = sum("0" in out for out in outcomes)
    far_worse_dropped = np.mean([sum(n in out for n in "56789") / 5 for out in outcomes])
    rate, upper = best_dropped / races, wilson_interval(best_dropped, races)[1]
    print(
        f"best raced out in {best_dropped}/{races} races ({rate:.4f}, 95% upper bound "
        f"{upper:.4f}, alpha {alpha}); far-worse raced out {far_worse_dropped:.1%}; {seconds:.2f} s"
    )
    assert upper <= alpha
    assert far_worse_dropped > 0.9  # the race has the power to drop what is clearly worse
    assert seconds < 5


def test_simulated_races_with_alpha_near_one_do_drop_the_best_sometimes():
    """The check above can fail: where the threshold is loose, the best does get raced out."""
    rng = np.random.default_rng(7)
    abilities = [1.5, 1.45, 1.4, 1.35, 1.3]
    outcomes = [simulated_race(abilities, 800, 0.99, rng) for _ in range(200)]
    assert sum("0" in out for out in outcomes) / 200 > 0.05
