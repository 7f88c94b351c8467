"""How long does the verdict take over many runs on a large test set?

    python benchmarks/bench_verdict.py [--runs 10] [--images 10000] [--classes 10] [--repeats 5]

Writes each synthetic run's test probabilities as `zoo run` does (test_probabilities.npz), then
times zoo.runs.comparison.judge over the records: reading every run's predictions, checking they
are on one test set, the exact McNemar tests against the best, Holm, the grouping. The rivals
differ from the best by a few points, so some are tied and some are worse, and the tests sum
thousands of exact binomial terms. Prints the median of the repeats and writes
benchmarks/results/<date>-verdict.json. Target (issue 22): under 1 s for 10 runs on 10,000 images.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_records(folder: Path, runs: int, images: int, classes: int) -> list[dict]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, size=images)
    records = []
    for run in range(runs):
        accuracy = 0.85 - 0.005 * run  # 0.85, 0.845, ...: ties near the top, worse below
        right = rng.random(images) < accuracy
        predicted = np.where(right, labels, (labels + 1 + rng.integers(0, classes - 1)) % classes)
        probabilities = np.full((images, classes), 0.1 / (classes - 1), np.float32)
        probabilities[np.arange(images), predicted] = 0.9
        path = folder / f"run-{run + 1}.npz"
        np.savez(path, probabilities=probabilities, labels=labels)
        records.append(
            {
                "id": run + 1,
                "backbone": f"net{run + 1}",
                "status": "ok",
                "data_fingerprint": "same",
                "metrics": {
                    "classes": [str(c) for c in range(classes)],
                    "images_per_second": 100.0 - run,
                    "params_m": 5.0,
                },
                "artifacts": {"test_probabilities": str(path)},
            }
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["ZOO_HOME"] = str(Path(scratch) / "home")  # an empty store lends no speeds
        from zoo.runs.comparison import judge

        records = synthetic_records(Path(scratch), options.runs, options.images, options.classes)
        seconds = []
        for _ in range(options.repeats):
            started = time.perf_counter()
            judgement = judge(records)
            seconds.append(time.perf_counter() - started)
    verdict = judgement.verdict
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "runs": options.runs,
        "test_images": options.images,
        "classes": options.classes,
        "median_seconds": statistics.median(seconds),
        "max_seconds": max(seconds),
        "tied": verdict.tied,
        "worse": verdict.worse,
        "target_seconds": 1.0,
    }
    print(
        f"verdict over {options.runs} runs on {options.images} test images: "
        f"median {result['median_seconds']:.3f} s (max {result['max_seconds']:.3f} s); "
        f"tied {verdict.tied}, worse {verdict.worse}"
    )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    (RESULTS / f"{stamp}-verdict.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
