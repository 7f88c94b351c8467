"""One `--deploy` measurement of a stored run, stage by stage, with CPU time beside wall time.

    ZOO_HOME=DIR python benchmarks/profile_deploy.py RUN_ID [--target tflite-int8]
        [--calibration 100,50,25] [--batches 1,8,32] [--out DIR]

The machine may be shared: each stage prints its wall seconds, the CPU seconds this process
spent in it (`os.times()`, user + system, all threads) and the load average after it. Stages:
the calibration sample, the conversion (with each calibration count given: the int8 test
accuracy each gives), the runtimes' load, the pass over every test image (at each batch size
given, with whether its predictions equal batch 1's), and the timed calls. Exports go to
`--out` (a scratch folder), never into the run's folder. Writes benchmarks/results/<date>-
profile-deploy.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class Stages:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def timed(self, name: str, work):
        wall, cpu = time.perf_counter(), os.times()
        value = work()
        after = os.times()
        row = {
            "stage": name,
            "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(after.user + after.system - cpu.user - cpu.system, 2),
            "load": loadavg(),
        }
        self.rows.append(row)
        print(
            f"{name:48s} wall {row['wall_s']:7.2f} s  cpu {row['cpu_s']:7.2f} s  "
            f"load {row['load']:.2f}",
            flush=True,
        )
        return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=int)
    parser.add_argument("--target", default="tflite-int8")
    parser.add_argument("--calibration", default="100")
    parser.add_argument("--batches", default="1")
    parser.add_argument("--out", help="scratch folder for the exports")
    args = parser.parse_args()

    from zoo.analysis.evaluation import evaluate
    from zoo.catalog.plugins import load_plugins
    from zoo.runs import deploy
    from zoo.runs.store import get_run
    from zoo.runs.targets import load_targets

    record = get_run(args.run)
    target = load_targets(load_plugins()).targets[args.target]
    out = Path(args.out or tempfile.mkdtemp(prefix="zoo-profile-deploy-"))
    stages = Stages()
    stages.timed("import tensorflow", lambda: __import__("tensorflow"))
    results: dict = {
        "run": args.run,
        "backbone": record.backbone,
        "target": args.target,
        "float_accuracy": record.metrics["accuracy"],
        "threads": deploy.all_threads(),
        "load_before": loadavg(),
        "calibration": [],
        "batches": [],
    }
    shipped = None
    for count in [int(c) for c in args.calibration.split(",")]:
        folder = out / f"{args.target}-{count}"
        folder.mkdir(parents=True, exist_ok=True)
        target.calibration_images = count
        shipped = stages.timed(
            f"export, {count} calibration images",
            lambda f=folder: _quietly(target.export, record, f),
        )
        workers = [target.predictor(shipped, 1) for _ in range(deploy.all_threads())]
        probabilities, labels, first = stages.timed(
            f"test pass ({count} calibration images)",
            lambda w=workers: deploy._test_pass(
                record, w, deploy.Reporter(), args.target, target.test_batch
            ),
        )
        accuracy = evaluate(probabilities, labels, record.metrics["classes"])["accuracy"]
        print(
            f"  {count} calibration images: accuracy {accuracy:.4f} "
            f"(float {results['float_accuracy']:.4f})",
            flush=True,
        )
        results["calibration"].append(
            {
                "images": count,
                "accuracy": accuracy,
                "export": stages.rows[-2],
                "size_bytes": deploy.size_on_disk(shipped),
            }
        )
    reference = probabilities
    for batch in [int(b) for b in args.batches.split(",") if b]:
        predict = target.predictor(shipped, 1)
        rows = stages.timed(
            f"test pass at batch {batch}, one 1-thread runtime",
            lambda p=predict, b=batch: _batched(record, p, b),
        )
        results["batches"].append(
            {
                "batch": batch,
                **stages.rows[-1],
                "equal_to_batch_1": bool(np.array_equal(rows, reference)),
                "max_abs_difference": float(np.abs(rows - reference).max()),
            }
        )
        print(
            f"  batch {batch}: equal to the 2-worker batch-1 pass: "
            f"{results['batches'][-1]['equal_to_batch_1']} (max |diff| "
            f"{results['batches'][-1]['max_abs_difference']:.2e})",
            flush=True,
        )
    for name, count in (("1_thread", 1), ("all_threads", deploy.all_threads())):
        predict = stages.timed(
            f"load a {count}-thread runtime", lambda c=count: target.predictor(shipped, c)
        )
        seconds = stages.timed(
            f"{deploy.WARMUP_CALLS} + {deploy.TIMED_CALLS} calls, {name}",
            lambda p=predict: deploy.time_calls(lambda: p(first)),
        )
        results[name] = deploy.latency_figures(seconds)
        print(f"  {name}: {results[name]}", flush=True)
    results["stages"] = stages.rows
    stamp = f"{datetime.datetime.now():%Y-%m-%d-%H%M}"
    path = Path(__file__).parent / "results" / f"{stamp}-profile-deploy-{args.target}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


def _quietly(work, *args):
    from zoo.runs.deploy import converters_quiet

    with converters_quiet():
        return work(*args)


def _batched(record, predict, batch: int) -> np.ndarray:
    from zoo.data.decode import decoded_batches
    from zoo.data.folders import scan_folder
    from zoo.runs.export import geometry_of

    test = scan_folder(Path(record.settings["data"]["test"]), record.metrics["classes"])
    parts = []
    for _, pixels, _ in decoded_batches(test.paths, geometry_of(record), 32):
        pixels = pixels.astype(np.float32)
        for start in range(0, len(pixels), batch):
            chunk = pixels[start : start + batch]
            if len(chunk) < batch:  # the last, short chunk: one image a call
                parts += [predict(image[np.newaxis]) for image in chunk]
            else:
                parts.append(predict(chunk))
    return np.concatenate(parts)


if __name__ == "__main__":
    main()
