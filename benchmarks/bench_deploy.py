"""Issue 26's targets on the demo: `--deploy tflite-int8` of Lite0, Lite1 and Lite2.

    python benchmarks/bench_deploy.py [--target tflite-int8] [--repeats 3]
                                      [--backbones efficientnet_lite0,efficientnet_lite1,...]

On a fresh ZOO_HOME (or `--home`, one whose backbones and features are cached), runs the whole
command `zoo run <backbones> --deploy TARGET --json`
`--repeats` times (the first one converts the backbones and computes the features; every repeat
trains new runs and deploys each of them afresh: export, the test set through the interpreter,
the timed calls). Prints, per backbone: the deployed accuracy against the float model's (points),
the size the run records against the file on disk, the 1-thread and all-thread median latency
of each repeat and its spread ((max - min) / median), the 1-thread calls' median CPU time and
its spread, how many timed calls another process interrupted and the load average then, and the
cost of one deploy measurement in wall and CPU seconds (stage by stage in the JSON). On a shared
machine run it with `nice`.
Writes benchmarks/results/<date>-deploy.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LITES = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def cpu() -> str:
    """The host's CPU model and core count: latency figures are facts of the machine."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} logical CPUs"


def one_command(backbones: list[str], target: str, home: str) -> tuple[dict, float]:
    command = [sys.executable, "-m", "zoo", "run", *backbones, "--deploy", target, "--json"]
    start = time.perf_counter()
    done = subprocess.run(
        command, env={**os.environ, "ZOO_HOME": home}, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout), wall


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def summary(name: str, repeats: list[dict], target: str) -> dict:
    figures = [run["metrics"]["deploy"][target] for run in repeats]
    shipped = Path(repeats[-1]["artifacts_deployed"])
    one_thread = [f["latency"]["1_thread"]["median_ms"] for f in figures]
    all_threads = [f["latency"]["all_threads"]["median_ms"] for f in figures]
    return {
        "backbone": name,
        "float_accuracy": [run["metrics"]["accuracy"] for run in repeats],
        "deployed_accuracy": [f["accuracy"] for f in figures],
        "points_lost": [
            100 * (run["metrics"]["accuracy"] - f["accuracy"]) for run, f in zip(repeats, figures)
        ],
        "size_bytes": figures[-1]["size_bytes"],
        "file_on_disk_bytes": shipped.stat().st_size,
        "ms_1_thread": one_thread,
        "ms_1_thread_p90": [f["latency"]["1_thread"]["p90_ms"] for f in figures],
        "ms_all_threads": all_threads,
        "threads": figures[-1]["threads"],
        "spread_1_thread": spread(one_thread),
        "spread_all_threads": spread(all_threads),
        "cpu_ms_1_thread": [f["latency"]["1_thread"]["cpu_median_ms"] for f in figures],
        "spread_cpu_1_thread": spread([f["latency"]["1_thread"]["cpu_median_ms"] for f in figures]),
        "preempted_calls": [
            [f["latency"][key]["preempted_calls"] for key in ("1_thread", "all_threads")]
            for f in figures
        ],
        "load_while_timed": [f["latency"]["1_thread"]["load_average"] for f in figures],
        "deploy_seconds": [f["seconds"] for f in figures],
        "deploy_cpu_seconds": [
            sum(stage["cpu_s"] for stage in f["cost"].values()) for f in figures
        ],
        "cost": [f["cost"] for f in figures],
        "export_seconds": [f["export_seconds"] for f in figures],
        "test_images": figures[-1]["test_images"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="tflite-int8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", default=LITES)
    parser.add_argument(
        "--home", help="a ZOO_HOME with the backbones converted and their features cached"
    )
    args = parser.parse_args()
    backbones = args.backbones.split(",")
    home = args.home or tempfile.mkdtemp(prefix="zoo-bench-deploy-")
    os.environ["ZOO_HOME"] = home  # get_run below reads the benchmark's store
    from zoo.runs.store import get_run

    out = {
        "target": args.target,
        "home": home,
        "cpu": cpu(),
        "load_before": loadavg(),
        "commands": [],
    }
    per_backbone: dict[str, list[dict]] = {name: [] for name in backbones}
    for repeat in range(args.repeats):
        report, wall = one_command(backbones, args.target, home)
        out["commands"].append({"wall_s": wall, "load_after": loadavg()})
        print(f"repeat {repeat + 1}: {wall:.1f} s (load {loadavg()})", flush=True)
        for run in report["runs"]:
            stored = get_run(run["run_id"])
            run["artifacts_deployed"] = stored.artifacts[f"deploy_{args.target}"]
            per_backbone[run["backbone"]].append(run)
    out["backbones"] = [summary(name, runs, args.target) for name, runs in per_backbone.items()]
    for row in out["backbones"]:
        print(
            f"{row['backbone']}: {args.target} acc "
            f"{', '.join(f'{a:.4f}' for a in row['deployed_accuracy'])} vs float "
            f"{', '.join(f'{a:.4f}' for a in row['float_accuracy'])} "
            f"(points lost {', '.join(f'{p:+.2f}' for p in row['points_lost'])}); "
            f"size {row['size_bytes'] / 1e6:.3f} MB recorded, "
            f"{row['file_on_disk_bytes'] / 1e6:.3f} MB on disk; "
            f"ms 1 thread {', '.join(f'{m:.2f}' for m in row['ms_1_thread'])} "
            f"(spread {row['spread_1_thread']:.1%}), "
            f"{row['threads']} threads {', '.join(f'{m:.2f}' for m in row['ms_all_threads'])} "
            f"(spread {row['spread_all_threads']:.1%}); "
            f"1-thread CPU ms {', '.join(f'{m:.2f}' for m in row['cpu_ms_1_thread'])} "
            f"(spread {row['spread_cpu_1_thread']:.1%}); preempted calls "
            f"{row['preempted_calls']} at load {row['load_while_timed']}; "
            f"deploy {', '.join(f'{s:.1f}' for s in row['deploy_seconds'])} s wall, "
            f"{', '.join(f'{s:.1f}' for s in row['deploy_cpu_seconds'])} s CPU "
            f"(export {', '.join(f'{s:.1f}' for s in row['export_seconds'])} s)",
            flush=True,
        )
    stamp = f"{datetime.datetime.now():%Y-%m-%d-%H%M}"
    target = Path(__file__).parent / "results" / f"{stamp}-deploy.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
