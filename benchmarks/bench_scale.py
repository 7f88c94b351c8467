"""Does zoo scale? Time per image and peak RSS on the full Fashion-MNIST (70,000 PNGs).

    python benchmarks/bench_scale.py [--only extract,scratch,finetune,ray] [--workdir DIR]
        [--extract-fractions 0.25,1] [--finetune-images 10000] [--finetune-batch-sizes 32,16]
        [--ray-images 5000]

Builds image folders from Debian's `dataset-fashion-mnist` (60,000 train + 10,000 test 28x28
PNGs, `apt-get install dataset-fashion-mnist`) once under --workdir, then measures, each in its own
child process on an empty zoo home (peak RSS is the child's own VmHWM):
  extract-F   `zoo run efficientnet_lite0 --epochs 1` on a fraction F of the images (a quarter,
              then all, by default): the feature path, whose only N-sized array should be the
              feature matrix (N x 1280 x 4 B);
  scratch     `zoo run scratch_cnn --epochs 1` on all 70,000: end to end, streamed from disk;
  finetune    `zoo run efficientnet_lite0 --mode fine-tune --epochs 1` on 10,000 of them, once
              per --finetune-batch-sizes (default 32);
  ray/local   feature extraction of --ray-images images through a two-node Ray cluster on this
              machine (one CPU per node) against in-process on the same cores.
Results: a table and benchmarks/results/<date>-scale.json, with the load average of each.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SOURCE = Path("/usr/share/datasets/fashion-mnist")
LITE = "efficientnet_lite0"
STAGES = ("extract", "scratch", "finetune", "ray")


# ---- data -------------------------------------------------------------------------------------


def idx_arrays(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28], labels [N]) from Fashion-MNIST's gzipped IDX files."""
    with gzip.open(SOURCE / f"{prefix}-images-idx3-ubyte.gz") as images:
        pixels = np.frombuffer(images.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SOURCE / f"{prefix}-labels-idx1-ubyte.gz") as labels:
        return pixels, np.frombuffer(labels.read(), np.uint8, offset=8)


def class_names() -> list[str]:
    import io
    from importlib import resources

    data = resources.files("zoo.demo_data").joinpath("fashion_mnist_demo.npz").read_bytes()
    with np.load(io.BytesIO(data)) as arrays:
        return [str(name) for name in arrays["class_names"]]


def full_dataset(workdir: Path) -> Path:
    """workdir/fashion-mnist/{train,test}/<class>/<index>.png, built once."""
    from PIL import Image

    root = workdir / "fashion-mnist"
    if (root / "complete").is_file():
        return root
    if not SOURCE.is_dir():
        sys.exit(f"no {SOURCE}: apt-get install dataset-fashion-mnist")
    names = class_names()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        pixels, labels = idx_arrays(prefix)
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(pixels, labels)):
            Image.fromarray(image).save(root / split / names[label] / f"{index}.png")
    (root / "complete").write_text("70000\n")
    return root


def subset(full: Path, folder: Path, fraction: float) -> Path:
    """The first `fraction` of each class folder, hard-linked (no copy)."""
    if folder.is_dir():
        return folder
    for class_dir in sorted(full.glob("*/*")):
        files = sorted(class_dir.glob("*.png"), key=lambda p: int(p.stem))
        target = folder / class_dir.relative_to(full)
        target.mkdir(parents=True)
        for path in files[: round(len(files) * fraction)]:
            os.link(path, target / path.name)
    return folder


# ---- child side -------------------------------------------------------------------------------


def measure_run(data: Path, backbone: str, **settings) -> dict:
    import zoo

    started = time.perf_counter()
    (result,) = zoo.run([backbone], data=data, epochs=1, **settings).results
    assert result.ok, result.reason
    return {
        "seconds": time.perf_counter() - started,
        "extract_seconds": result.extract_seconds,
        "computed_features": result.computed_features,
        "accuracy": result.metrics["accuracy"],
        "engine": result.engine,
    }


def measure_on_ray(data: Path) -> dict:
    """The same extraction through a two-node Ray cluster on 127.0.0.1, one CPU per node."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = (
        "0"  # read by `import ray`: nodes on 127.0.0.1
    )
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        return measure_run(data, LITE, ray=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()


def child_main(stage: str, data: Path, batch_size: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = load_average()
    if stage == "scratch":
        result = measure_run(data, "scratch_cnn")
    elif stage == "finetune":
        result = measure_run(data, LITE, mode="fine-tune", batch_size=batch_size)
    elif stage == "ray":
        result = measure_on_ray(data)
    else:  # extract, local
        result = measure_run(data, LITE)
    result["images"] = sum(1 for _ in data.glob("*/*/*.png"))
    result["seconds_per_image"] = result["seconds"] / result["images"]
    result["peak_rss_mb"] = own_peak_rss_mb()
    result["loadavg"] = [load_before, load_average()]
    print("RESULT " + json.dumps(result), flush=True)


def own_peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- parent side ------------------------------------------------------------------------------


def run_child(stage: str, data: Path, workdir: Path, label: str, batch_size: int = 32) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"home-{label}-", dir=workdir))
    env = {**os.environ, "ZOO_HOME": str(home)}
    command = [sys.executable, __file__, "--child", stage, "--data", str(data)]
    command += ["--batch-size", str(batch_size)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    subprocess.run(["rm", "-rf", str(home)])
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    print(
        f"{label:18}{result['images']:>8}{result['seconds']:>10.1f}"
        f"{1000 * result['seconds_per_image']:>10.2f}{result['peak_rss_mb']:>10.0f}"
        f"  {result.get('engine') or '-'}  load {result['loadavg']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated stages: {', '.join(STAGES)}")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "zoo-scale")
    parser.add_argument("--ray-images", type=int, default=5000, help="images for ray vs local")
    parser.add_argument("--extract-fractions", default="0.25,1", help="of the 70,000 images")
    parser.add_argument("--finetune-images", type=int, default=10_000)
    parser.add_argument("--finetune-batch-sizes", default="32", help="one fine-tune run each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child, args.data, args.batch_size)
    stages = args.only.split(",") if args.only else list(STAGES)
    args.workdir.mkdir(parents=True, exist_ok=True)
    full = full_dataset(args.workdir)
    print(f"{'':18}{'images':>8}{'seconds':>10}{'ms/image':>10}{'peak MB':>10}  engine")
    results: dict[str, dict] = {}
    for fraction in map(float, args.extract_fractions.split(",")) if "extract" in stages else ():
        data = full if fraction == 1 else subset(full, args.workdir / f"part-{fraction}", fraction)
        label = f"extract-{fraction:g}"
        results[label] = run_child("extract", data, args.workdir, label)
    if "scratch" in stages:
        results["scratch"] = run_child("scratch", full, args.workdir, "scratch")
    if "finetune" in stages:
        fraction = args.finetune_images / 70_000
        tuning = subset(full, args.workdir / f"finetune-{args.finetune_images}", fraction)
        for batch in map(int, args.finetune_batch_sizes.split(",")):
            label = "finetune" if batch == 32 else f"finetune-batch{batch}"
            results[label] = run_child("finetune", tuning, args.workdir, label, batch)
    if "ray" in stages:
        sample = subset(full, args.workdir / f"ray-{args.ray_images}", args.ray_images / 70_000)
        results["local"] = run_child("local", sample, args.workdir, "local")
        results["ray"] = run_child("ray", sample, args.workdir, "ray")
    report(args, results)


def report(args, results: dict[str, dict]) -> None:
    derived = {}
    extracts = sorted(
        (r for name, r in results.items() if name.startswith("extract-")), key=lambda r: r["images"]
    )
    if len(extracts) >= 2:  # the smallest against the largest
        small, large = extracts[0], extracts[-1]
        grown = large["images"] - small["images"]
        derived["extract_time_per_image_ratio_largest_to_smallest"] = (
            large["seconds_per_image"] / small["seconds_per_image"]
        )
        derived["extract_rss_growth_kb_per_image"] = (
            1024 * (large["peak_rss_mb"] - small["peak_rss_mb"]) / grown
        )
        derived["feature_vector_kb"] = 1280 * 4 / 1024
        derived["extract_peak_rss_mb_at_70000_extrapolated"] = (
            large["peak_rss_mb"]
            + (70_000 - large["images"]) * derived["extract_rss_growth_kb_per_image"] / 1024
        )
    if "ray" in results:
        derived["ray_over_local_extract"] = (
            results["ray"]["extract_seconds"] / results["local"]["extract_seconds"]
        )
        derived["ray_over_local_total"] = results["ray"]["seconds"] / results["local"]["seconds"]
    for key, value in derived.items():
        print(f"{key} = {value:.3f}")
    record = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "results": results,
        "derived": derived,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{datetime.datetime.now():%Y-%m-%d-%H%M}-scale.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
