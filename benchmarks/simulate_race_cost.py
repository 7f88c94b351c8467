"""What share of the full comparison's vectors a race computes, simulated (not measured).

    python benchmarks/simulate_race_cost.py [--test-images 800,2500] [--races 300]
                                            [--accuracies bench|catalogue]

Each simulated race draws, for every test image, whether each candidate gets it right: a shared
difficulty per image (so candidates agree on most images, as real backbones do: about 10% of
the images split the best two) plus each candidate's own noise, set so that its accuracy is the
given one. The rounds are the race's (zoo.analysis.race.FRACTIONS, the train and test subsets
growing together) and every decision is zoo's own `decide_round`; a candidate raced out at
fraction f costs f of its vectors, a finalist all of them. Prints the mean share, the mean
number of finalists and how often the best was raced out.

`bench` is the 11-backbone test bed's accuracies as the full comparison measured them on 800
test images (benchmarks/results/2026-12-03-0702-race.json); `catalogue` a made-up catalogue
of 100 (a handful near the best, most far worse), to show what the share depends on.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from zoo.analysis.race import FRACTIONS, decide_round

BENCH = {
    "tb_lite0_224": 0.821,
    "tb_lite1_240": 0.816,
    "tb_lite2_260": 0.809,
    "tb_lite1_96": 0.7925,
    "tb_lite0_128": 0.7825,
    "tb_lite0_96_upto14": 0.779,
    "tb_lite0_64": 0.7525,
    "tb_lite2_48": 0.7525,
    "tb_lite0_224_upto10": 0.724,
    "tb_lite0_32": 0.6775,
    "tb_lite0_224_upto4": 0.504,
}
OWN_NOISE = 0.35  # of each candidate's latent score; the rest is the image's shared difficulty


def catalogue() -> dict[str, float]:
    near = {f"near_{i}": 0.82 - 0.005 * i for i in range(5)}
    far = {f"far_{i}": 0.45 + 0.30 * i / 94 for i in range(95)}
    return {**near, **far}


def outcomes(accuracies: dict[str, float], images: int, rng: np.random.Generator) -> dict:
    shared = rng.standard_normal(images)
    weight = np.sqrt(1 - OWN_NOISE**2)
    normal = statistics.NormalDist()
    return {
        name: shared * weight + OWN_NOISE * rng.standard_normal(images) < normal.inv_cdf(accuracy)
        for name, accuracy in accuracies.items()
    }


def one_race(accuracies: dict[str, float], images: int, rng: np.random.Generator):
    right = outcomes(accuracies, images, rng)
    order = rng.permutation(images)
    alive, spent = list(accuracies), dict.fromkeys(accuracies, 0.0)
    elimination_rounds = len(FRACTIONS) - 1
    for fraction in FRACTIONS[:-1]:
        if len(alive) < 2:
            break
        seen = order < int(np.ceil(fraction * images))
        for name in alive:
            spent[name] = fraction
        decision = decide_round({n: right[n][seen] for n in alive}, 0.05, elimination_rounds)
        alive = [name for name in alive if name not in decision.out]
    for name in alive:
        spent[name] = 1.0
    return sum(spent.values()) / len(spent), alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-images", default="800,2500")
    parser.add_argument("--races", type=int, default=300)
    parser.add_argument("--accuracies", choices=("bench", "catalogue"), default="bench")
    options = parser.parse_args()
    accuracies = BENCH if options.accuracies == "bench" else catalogue()
    best = max(accuracies, key=accuracies.get)
    rng = np.random.default_rng(0)
    for images in map(int, options.test_images.split(",")):
        races = [one_race(accuracies, images, rng) for _ in range(options.races)]
        share = np.mean([cost for cost, _ in races])
        finalists = np.mean([len(alive) for _, alive in races])
        lost = np.mean([best not in alive for _, alive in races])
        print(
            f"{options.accuracies} ({len(accuracies)} candidates), {images} test images, "
            f"{options.races} races: {share:.1%} of the vectors, {finalists:.1f} finalists, "
            f"best raced out in {lost:.1%}"
        )


if __name__ == "__main__":
    main()
