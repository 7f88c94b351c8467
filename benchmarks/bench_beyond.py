"""Issue 13's targets on the demo data: --tune, --augment, ensembles, TFLite export.

    python benchmarks/bench_beyond.py [--backbone efficientnet_lite0] [--second efficientnet_lite1]
                                      [--seeds 5] [--augment 2] [--check 500] [--no-scratch]

In one process, on a fresh ZOO_HOME: cold runs of the backbone and of `--second` (features
computed; converted backbones built), and of scratch_cnn (seed 42), then per seed warm runs of
the backbone plain, `--tune`, `--augment K`, `--tune --augment K`, the second backbone plain,
the two joined (`A+B`) and the ensemble of the two plain runs (`zoo ensemble`). The first seed's
augmented run computes the views (its time is not a warm one). --tune's cost is the tuned run's
time minus the plain one's, as a share of the cold run, in wall and CPU seconds. Then the first
tuned run is exported to TFLite (float16, int8) and checked on `--check` test images. Writes
benchmarks/results/<date>-beyond.json.
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


def measured(result, wall: float, cpu: float) -> dict:
    facts = {"accuracy": result.metrics["accuracy"], "wall_s": wall, "cpu_s": cpu}
    chosen = {k: v for k, v in (result.tuned or {}).items() if k != "trials"}
    return {**facts, "run_id": result.run_id, **({"chosen": chosen} if chosen else {})}


def save(out: dict) -> None:
    target = Path(__file__).parent / "results" / f"{datetime.date.today()}-beyond.json"
    target.write_text(json.dumps(out, indent=2) + "\n")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--second", default="efficientnet_lite1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--augment", type=int, default=2)
    parser.add_argument("--no-scratch", action="store_true", help="skip the scratch_cnn run")
    parser.add_argument("--check", type=int, default=500, help="test images checked per export")
    args = parser.parse_args()
    os.environ["ZOO_HOME"] = tempfile.mkdtemp(prefix="zoo-bench-beyond-")
    import zoo
    from zoo.runs.ensemble import ensemble
    from zoo.runs.export import export_run
    from zoo.runs.store import get_run

    def one(name, **settings):
        (result,) = zoo.run([name], **settings).results
        assert result.ok, result.reason
        return result

    out = {"backbone": args.backbone, "second": args.second, "load_before": loadavg()}
    cold, wall, cpu = timed(lambda: one(args.backbone, seed=42))
    out["cold"] = {"wall_s": wall, "cpu_s": cpu, "accuracy": cold.metrics["accuracy"]}
    second, wall, cpu = timed(lambda: one(args.second, seed=42))
    out["second_cold"] = {"wall_s": wall, "cpu_s": cpu, "accuracy": second.metrics["accuracy"]}
    if not args.no_scratch:
        scratch, wall, cpu = timed(lambda: one("scratch_cnn", seed=42))
        out["scratch_cnn"] = {"wall_s": wall, "cpu_s": cpu, "accuracy": scratch.metrics["accuracy"]}
    print(json.dumps(out), flush=True)
    joined = f"{args.backbone}+{args.second}"
    views = {"augment": args.augment}
    runs = []
    for seed in range(args.seeds):
        row = {"seed": seed}
        for kind, name, settings in (
            ("plain", args.backbone, {}),
            ("tuned", args.backbone, {"tune": True}),
            ("augmented", args.backbone, views),
            ("tuned_augmented", args.backbone, {"tune": True, **views}),
            ("second", args.second, {}),
            ("joined", joined, {}),
        ):
            result, wall, cpu = timed(lambda n=name, k=settings, s=seed: one(n, seed=s, **k))
            row[kind] = measured(result, wall, cpu)
        members = [row["plain"]["run_id"], row["second"]["run_id"]]
        row["ensemble"] = {"accuracy": ensemble(members).accuracy, "members": members}
        runs.append(row)
        print(json.dumps(row), flush=True)
        save({**out, "seeds": runs})  # what is done so far, should a later step fail
    out["seeds"] = runs
    kinds = ("plain", "tuned", "augmented", "tuned_augmented", "second", "joined", "ensemble")
    for kind in kinds:
        accuracies = [r[kind]["accuracy"] for r in runs]
        out[f"{kind}_mean_accuracy"] = statistics.mean(accuracies)
        out[f"{kind}_stdev_accuracy"] = statistics.stdev(accuracies) if len(runs) > 1 else None
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
            f.stat().st_size for f in Path(record.artifacts["model"]).rglob("*") if f.is_file()
        )
    }
    out["exports"] = {**exports, **sizes}
    out["load_after"] = loadavg()
    save(out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("seeds", "exports")}, indent=2))
    print(json.dumps(out["exports"], indent=2))


if __name__ == "__main__":
    main()
