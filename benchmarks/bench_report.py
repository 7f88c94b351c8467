"""How long does `zoo report` take, and how much memory, as the number of classes grows?

    python benchmarks/bench_report.py [--classes 10 200 1000] [--images-per-class 20]

Each size runs in its own child process (peak RSS is the child's own VmHWM): a stored-run record
with a synthetic confusion matrix (mostly correct, a few random mistakes per class), then
write_report into a temporary folder. Prints one line per size and writes
benchmarks/results/<date>-report.json. Before zoo drew large matrices without per-cell counts,
200 classes took 64 s and 4.7 GB and 1000 classes did not finish in 300 s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = """
import json, re, sys, tempfile, time
from pathlib import Path
import numpy as np
from zoo.runs.report import write_report

classes, per_class = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
matrix = np.zeros((classes, classes), dtype=int)
for true in range(classes):
    wrong = rng.integers(0, classes, size=per_class // 5)
    matrix[true, true] = per_class - len(wrong)
    np.add.at(matrix[true], wrong, 1)
record = {
    "id": 1, "backbone": "synthetic", "mode": "feature-extraction", "status": "ok",
    "reason": None, "history": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8],
                                "val_loss": [1.1, 0.6], "val_accuracy": [0.5, 0.7]},
    "metrics": {"accuracy": float(np.trace(matrix) / matrix.sum()),
                "classes": [f"class {i}" for i in range(classes)],
                "confusion_matrix": matrix.tolist()},
    "artifacts": {},
}
started = time.perf_counter()
written = write_report(record, Path(tempfile.mkdtemp()))
seconds = time.perf_counter() - started
peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
print(json.dumps({"classes": classes, "seconds": round(seconds, 2), "peak_mb": peak,
                  "files": sorted(p.name for p in written)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 200, 1000])
    parser.add_argument("--images-per-class", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for classes in args.classes:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(classes), str(args.images_per_class)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(
            f"{classes:5d} classes: {row['seconds']:6.2f} s, peak {row['peak_mb']} MB, {row['files']}"
        )
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average: {' '.join(load)}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{datetime.date.today()}-report.json"
    out.write_text(json.dumps({"load_average": load, "rows": rows}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
