"""Does OpenVINO's bf16 keep test accuracy? fp32 against bf16 features, 5 seeds, two datasets.

    python benchmarks/bench_precision.py [--backbone efficientnet_lite0] [--seeds 5]

Needs a CPU with native bf16 (AVX512-BF16 or AMX; zoo refuses bf16 elsewhere). Datasets: the
demo (Fashion-MNIST, 10 classes) and scikit-learn's bundled handwritten digits (1,797 8x8
images, 10 classes, no download), written as PNG folders, half of each class for test. Per
dataset and precision, in one process on a fresh ZOO_HOME: a cold run (the features computed
once), then one warm run per seed: the seed moves the head's training and the validation split,
the features are the same. Writes benchmarks/results/<date>-precision.json.
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


def digits_folders(target: Path) -> Path:
    """scikit-learn's digits as train/<digit>/*.png and test/<digit>/*.png (half of each)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.images * (255 / 16)).astype(np.uint8)  # 0..16 ink levels
    indices = np.arange(len(pixels))
    train, test = train_test_split(indices, test_size=0.5, stratify=digits.target, random_state=0)
    for split, chosen in (("train", train), ("test", test)):
        for i in chosen:
            folder = target / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i]).save(folder / f"{i:04d}.png")
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-precision-"))
    os.environ["ZOO_HOME"] = str(work / "home")
    import zoo
    from zoo.extraction.engines.openvino_engine import OpenVinoEngine

    if "bf16" not in OpenVinoEngine.precisions():
        raise SystemExit("this CPU has no native bf16: nothing to compare")
    datasets = {"demo": None, "digits": digits_folders(work / "digits")}
    out = {"backbone": args.backbone, "load_before": Path("/proc/loadavg").read_text().strip()}
    for name, data in datasets.items():
        for precision in ("fp32", "bf16"):

            def one(seed: int, data=data, precision=precision):
                (result,) = zoo.run(
                    [args.backbone], data=data, seed=seed, engine="openvino", precision=precision
                ).results
                assert result.ok, result.reason
                return result

            started = time.perf_counter()
            cold = one(42)
            cold_seconds = time.perf_counter() - started
            accuracies = [one(seed).metrics["accuracy"] for seed in range(args.seeds)]
            out[f"{name}-{precision}"] = {
                "cold_s": cold_seconds,
                "images_per_second": cold.images_per_second,
                "engine": cold.engine,
                "cold_accuracy": cold.metrics["accuracy"],
                "accuracies": accuracies,
                "mean": statistics.mean(accuracies),
                "stdev": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            }
            print(name, precision, json.dumps(out[f"{name}-{precision}"]), flush=True)
        out[f"{name}-bf16-minus-fp32"] = out[f"{name}-bf16"]["mean"] - out[f"{name}-fp32"]["mean"]
    out["load_after"] = Path("/proc/loadavg").read_text().strip()
    target = Path(__file__).parent / "results" / f"{datetime.date.today()}-precision.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if "minus" in k}, indent=2))


if __name__ == "__main__":
    main()
