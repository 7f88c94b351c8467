"""How long does `zoo inspect` take on 70,000 images, and does its memory stay flat?

    python benchmarks/bench_inspect.py [--workdir DIR] [--fractions 0.1,1]

Builds the Fashion-MNIST PNG folders as benchmarks/bench_scale.py does (Debian's
`dataset-fashion-mnist`), then runs `zoo inspect --json` on a fraction of them and on all, each in
its own process on an empty zoo home: wall time and the child's peak RSS (VmHWM). Flat memory means
the peak barely grows from a tenth of the images to all of them.
Results: a table and benchmarks/results/<date>-inspect.json, with the load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import RESULTS, full_dataset, load_average, subset  # noqa: E402

CHILD = """
import json, sys
from pathlib import Path
from zoo.runs.inspection import inspect_data
facts = inspect_data(Path(sys.argv[1]))
peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))
print('RESULT ' + json.dumps({'images': facts['images'], 'leaks': facts['leaks'],
      'unreadable': len(facts['unreadable']), 'peak_rss_mb': peak / 1024}))
"""


def measure(data: Path) -> dict:
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(data)],
            capture_output=True,
            text=True,
            env={**os.environ, "ZOO_HOME": home},
            check=True,
        )
        seconds = time.perf_counter() - started
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[7:]), "seconds": round(seconds, 1), "load": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench")
    parser.add_argument("--fractions", default="0.1,1")
    args = parser.parse_args()
    full = full_dataset(args.workdir)
    rows = {}
    for fraction in [float(f) for f in args.fractions.split(",")]:
        data = (
            full if fraction == 1 else subset(full, args.workdir / f"fmnist-{fraction}", fraction)
        )
        rows[str(fraction)] = measure(data)
        print(fraction, rows[str(fraction)], flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{datetime.date.today()}-inspect.json"
    out.write_text(json.dumps({"cpus": os.cpu_count(), "runs": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
