"""--tune's accuracy and cost, and TFLite export agreement, on the demo data.

    python benchmarks/bench_beyond.py [--backbone efficientnet_lite0] [--seeds 5] [--check 500]

In one process, on a fresh ZOO_HOME: a cold run (features computed; a converted backbone is
built too), then per seed a plain and a tuned warm run. --tune's cost is the tuned run's time
minus the plain one's, as a share of the cold run, in wall and CPU seconds (the machine is
shared: CPU seconds move less with the load). Then the first tuned run is exported to TFLite
(float16, int8) and checked on `--check` test images. Writes benchmarks/results/<date>-beyond.json.
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


def timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    value = call()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--check", type=int, default=500, help="test images checked per export")
    args = parser.parse_args()
    os.environ["ZOO_HOME"] = tempfile.mkdtemp(prefix="zoo-bench-beyond-")
    import zoo
    from zoo.runs.export import export_run
    from zoo.runs.store import get_run

    def one(**settings):
        (result,) = zoo.run([args.backbone], **settings).results
        assert result.ok, result.reason
        return result

    out = {"backbone": args.backbone, "load_before": loadavg()}
    cold, wall, cpu = timed(lambda: one(seed=42))
    out["cold"] = {"wall_s": wall, "cpu_s": cpu, "accuracy": cold.metrics["accuracy"]}
    runs = []
    for seed in range(args.seeds):
        plain, plain_wall, plain_cpu = timed(lambda seed=seed: one(seed=seed))
        tuned, tuned_wall, tuned_cpu = timed(lambda seed=seed: one(seed=seed, tune=True))
        runs.append(
            {
                "seed": seed,
                "plain": {
                    "accuracy": plain.metrics["accuracy"],
                    "wall_s": plain_wall,
                    "cpu_s": plain_cpu,
                },
                "tuned": {
                    "accuracy": tuned.metrics["accuracy"],
                    "wall_s": tuned_wall,
                    "cpu_s": tuned_cpu,
                    "run_id": tuned.run_id,
                    "chosen": {k: v for k, v in tuned.tuned.items() if k != "trials"},
                },
            }
        )
        print(json.dumps(runs[-1]), flush=True)
    out["seeds"] = runs
    for kind in ("plain", "tuned"):
        out[f"{kind}_mean_accuracy"] = statistics.mean(r[kind]["accuracy"] for r in runs)
    for clock in ("wall_s", "cpu_s"):
        extra = statistics.mean(r["tuned"][clock] - r["plain"][clock] for r in runs)
        out[f"tune_cost_{clock}"] = extra
        out[f"tune_cost_share_{clock}"] = extra / out["cold"][clock]
    record = get_run(runs[0]["tuned"]["run_id"])
    exports = {}
    for quantize in ("float16", "int8"):
        folder = Path(os.environ["ZOO_HOME"]) / f"export-{quantize}"
        report, wall, _ = timed(
            lambda q=quantize, f=folder: export_run(record, f, "tflite", q, limit=args.check)
        )
        exports[quantize] = {**report.facts(), "wall_s": wall}
        print(quantize, json.dumps(exports[quantize]), flush=True)
    sizes = {
        "saved_model_bytes": sum(
            f.stat().st_size for f in Path(record["artifacts"]["model"]).rglob("*") if f.is_file()
        )
    }
    out["exports"] = {**exports, **sizes}
    out["load_after"] = loadavg()
    target = Path(__file__).parent / "results" / f"{datetime.date.today()}-beyond.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("seeds", "exports")}, indent=2))
    print(json.dumps(out["exports"], indent=2))


if __name__ == "__main__":
    main()
