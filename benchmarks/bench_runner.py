"""How fast is zoo? The plain Keras recipe (A) against zoo cold (B), warm (B') and the bound (C).

    python benchmarks/bench_runner.py [--backbone efficientnet_lite0] [--repeats 3] [--only C,B]

Every measurement runs in its own child process (so peak RSS, the child's own VmHWM, is per
measurement); the clock starts after TensorFlow is imported and covers loading the backbone onward.
  A   the classic notebook: hub.KerasLayer(trainable=False) + Dense softmax in a Sequential,
      fit for N epochs on an image pipeline with the test set as validation_data every epoch;
  B   zoo.run for the same backbone and epochs, empty feature cache;
  B'  the same again with the cache filled, then again with --epochs 20;
  B-tensorflow  B with --engine tensorflow (B itself is --engine auto): the accuracy reference;
  B-bf16  B with --engine openvino --precision bf16, where the CPU has native bf16;
  C   one pass of the backbone alone over every train and test image, decode and resize
      included, at the best batch size found, through one engine and precision (C-tensorflow-fp32,
      C-openvino-fp32, C-openvino-bf16 where the CPU has native bf16): no run on that engine can
      beat it;
  D   decoding and resizing alone, in zoo's decode threads: what the engines are fed at.
Also B at 1x, 2x and 4x the training images (flipped copies), and through the CLI, wall clock:
`zoo run` on an empty home, then `zoo run --epochs 20`. Results: a table, the median
of the repeats, and benchmarks/results/<date>-<backbone>.json. The machine's load average
(/proc/loadavg) is recorded with every measurement: the CPU may be shared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PROBE_BATCHES = (16, 32, 64, 128)
OPTIONAL_STAGES = ("scaling", "cli", "all")


# ---- child side: one measurement, printed as one JSON line ------------------------------------


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def measure_plain_recipe(backbone_name: str, data: Path, epochs: int) -> dict:
    import tensorflow_hub as hub
    import tf_keras as keras

    from zoo.catalog.plugins import load_catalog
    from zoo.sources.hub import resolve

    backbone = load_catalog().get(backbone_name)
    started = time.perf_counter()
    low, high = backbone.input_range
    load = dict(image_size=backbone.input_size, batch_size=32, label_mode="categorical")
    train = keras.utils.image_dataset_from_directory(data / "train", seed=42, **load)
    test = keras.utils.image_dataset_from_directory(data / "test", shuffle=False, **load)
    model = keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=(*backbone.input_size, 3)),
            keras.layers.Rescaling((high - low) / 255.0, offset=low),
            hub.KerasLayer(str(resolve(backbone)), trainable=False),
            keras.layers.Dense(len(train.class_names), activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(train, epochs=epochs, validation_data=test, verbose=0)
    return {
        "seconds": time.perf_counter() - started,
        "accuracy": history.history["val_accuracy"][-1],
    }


def measure_zoo(
    backbone_name: str, data: Path, epochs: int, engine: str = "auto", precision: str = "fp32"
) -> dict:
    import zoo

    started = time.perf_counter()
    (result,) = zoo.run(
        [backbone_name], data=data, epochs=epochs, engine=engine, precision=precision
    ).results
    assert result.ok, result.reason
    return {
        "seconds": time.perf_counter() - started,
        "accuracy": result.metrics["accuracy"],
        "computed_features": result.computed_features,
        "epochs_run": result.epochs_run,
        "engine": result.engine,
    }


def loaded_engine(backbone_name: str, engine_name: str, precision: str):
    """An engine of zoo's own registry, loaded (for OpenVINO: converted, if not yet, and compiled)."""
    from zoo.catalog.plugins import load_catalog
    from zoo.extraction.engines import ResolvedBackbone, load_engines
    from zoo.sources.hub import resolve

    catalog = load_catalog()
    backbone = catalog.get(backbone_name)
    resolved = ResolvedBackbone(backbone, resolve(backbone))
    engine = load_engines(catalog.plugins).build(engine_name, resolved, precision)
    engine.load()
    return backbone, engine


def all_paths(data: Path) -> list[Path]:
    from zoo.data.folders import scan_folder

    return scan_folder(data / "train").paths + scan_folder(data / "test").paths


def measure_decode(backbone_name: str, data: Path) -> dict:
    from zoo.catalog.plugins import load_catalog
    from zoo.data.decode import DECODE_THREADS, decoded_batches

    backbone = load_catalog().get(backbone_name)
    paths = all_paths(data)
    started = time.perf_counter()
    failed = sum(len(bad) for _, _, bad in decoded_batches(paths, backbone.preprocessing, 32))
    seconds = time.perf_counter() - started
    assert failed == 0, f"{failed} images did not decode"
    return {
        "seconds": seconds,
        "images": len(paths),
        "images_per_second": len(paths) / seconds,
        "threads": DECODE_THREADS,
    }


def measure_inference_bound(backbone_name: str, data: Path, engine: str, precision: str) -> dict:
    from zoo.data.decode import decoded_batches

    paths = all_paths(data)
    started = time.perf_counter()
    backbone, encode = loaded_engine(backbone_name, engine, precision)
    rates = {}
    for batch in PROBE_BATCHES:  # probe on a few batches; the full pass uses the fastest
        probe = paths[: 2 * batch]
        encode(next(decoded_batches(probe[:batch], backbone.preprocessing, batch))[1])  # warm up
        tick = time.perf_counter()
        for _, pixels, _ in decoded_batches(probe, backbone.preprocessing, batch):
            encode(pixels)
        rates[batch] = len(probe) / (time.perf_counter() - tick)
    best = max(rates, key=rates.get)
    tick = time.perf_counter()
    for _, pixels, _ in decoded_batches(paths, backbone.preprocessing, best):
        encode(pixels)
    pass_seconds = time.perf_counter() - tick
    return {
        "seconds": pass_seconds,
        "images": len(paths),
        "images_per_second": len(paths) / pass_seconds,
        "best_batch": best,
        "probe_rates": rates,
        "setup_seconds": tick - started,  # model load (+ compile) + probe, reported apart
        "engine": encode.label,
    }


def measure_run_all(engine: str) -> dict:
    """`zoo run --all --engine ENGINE` on the demo, through the real CLI, in this process."""
    import contextlib
    import io

    from zoo.cli import main

    printed = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        try:
            main(["run", "--all", "--json", "--engine", engine])
        except SystemExit as done:
            exit_code = done.code
    runs = json.loads(printed.getvalue())["runs"]
    return {
        "seconds": time.perf_counter() - started,
        "exit_code": exit_code,
        "runs": [(r["backbone"], r["status"], r["metrics"].get("accuracy")) for r in runs],
    }


def child_main(args: argparse.Namespace) -> None:
    _quiet_tensorflow()
    data = Path(args.data)
    load_before = load_average()
    if args.phase == "A":
        result = measure_plain_recipe(args.backbone, data, args.epochs)
    elif args.phase == "B":
        result = measure_zoo(args.backbone, data, args.epochs, args.engine, args.precision)
    elif args.phase == "all":
        result = measure_run_all(args.engine)
    elif args.phase == "D":
        result = measure_decode(args.backbone, data)
    else:
        result = measure_inference_bound(args.backbone, data, args.engine, args.precision)
    result["peak_rss_mb"] = own_peak_rss_mb()
    result["loadavg"] = [load_before, load_average()]
    print("RESULT " + json.dumps(result), flush=True)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def own_peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: a child inherits its parent's at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- parent side: homes, data, repeats, table -------------------------------------------------


def run_child(
    phase: str,
    home: Path,
    data: Path,
    backbone: str,
    epochs: int,
    engine: str = "auto",
    precision: str = "fp32",
) -> dict:
    """Run one measurement in a child process, which reports its own peak RSS."""
    env = {**os.environ, "ZOO_HOME": str(home)}
    env.pop("TFHUB_CACHE_DIR", None)
    command = [
        sys.executable,
        __file__,
        "--child",
        phase,
        "--data",
        str(data),
        "--backbone",
        backbone,
        "--epochs",
        str(epochs),
        "--engine",
        engine,
        "--precision",
        precision,
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    output = process.stdout.read()
    status = process.wait()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if status != 0 or not lines:
        raise SystemExit(f"measurement {phase} failed (status {status}):\n{output[-2000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def prepare(workdir: Path, backbone: str) -> tuple[Path, Path]:
    """A home with the backbone built and converted to OpenVINO IR for each precision measured
    (conversion is setup, not part of any measurement; the CLI pair includes it)."""
    seed_home = workdir / "seed-home"
    os.environ["ZOO_HOME"] = str(seed_home)
    from zoo.data.demo import demo_data_dir

    for engine, precision in engine_precisions():
        if engine == "openvino":
            loaded_engine(backbone, engine, precision)
    return seed_home, demo_data_dir()


def engine_precisions() -> list[tuple[str, str]]:
    """Each engine and precision this machine can run, TensorFlow's first."""
    from zoo.extraction.engines.openvino_engine import OpenVinoEngine, installed

    pairs = [("tensorflow", "fp32")]
    if installed():
        pairs += [("openvino", precision) for precision in OpenVinoEngine.precisions()]
    return pairs


def fresh_home(seed_home: Path, target: Path) -> Path:
    """A copy of the seed home without features or runs: a cold start for zoo."""
    shutil.copytree(
        seed_home, target, ignore=shutil.ignore_patterns("features", "runs", "runs.sqlite*")
    )
    return target


def scaled_data(demo: Path, factor: int, target: Path) -> Path:
    """The demo with `factor` x the training images: originals plus flipped copies."""
    from PIL import Image, ImageOps

    flips = [
        lambda im: im,
        ImageOps.mirror,
        ImageOps.flip,
        lambda im: ImageOps.flip(ImageOps.mirror(im)),
    ]
    shutil.copytree(demo / "test", target / "test")
    for class_dir in sorted((demo / "train").iterdir()):
        out = target / "train" / class_dir.name
        out.mkdir(parents=True)
        for image_path in sorted(class_dir.iterdir()):
            with Image.open(image_path) as image:
                for index, flip in enumerate(flips[:factor]):
                    flip(image).save(out / f"{image_path.stem}-{index}.png")
    return target


def measure_cli_pair(backbone: str, home: Path) -> dict:
    """Wall time of `zoo run BACKBONE` on an empty home, as a new user's first run (TensorFlow
    import, demo unpack and any backbone conversion included), then of `--epochs 20` after it."""
    env = {**os.environ, "ZOO_HOME": str(home)}
    env.pop("TFHUB_CACHE_DIR", None)
    seconds = {}
    for name, extra in (("first", []), ("second_epochs20", ["--epochs", "20"])):
        started = time.perf_counter()
        command = [sys.executable, "-m", "zoo", "run", backbone, *extra]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[2:])} failed:\n{done.stderr[-2000:]}")
        seconds[name] = time.perf_counter() - started
    return {**seconds, "ratio": seconds["second_epochs20"] / seconds["first"]}


def save_partial(args, rows: dict[str, list[dict]]) -> None:
    """Every raw measurement so far, in benchmarks/results/partial-<backbone>.json."""
    args.out.mkdir(parents=True, exist_ok=True)
    done = {name: runs for name, runs in rows.items() if runs}
    (args.out / f"partial-{args.backbone}.json").write_text(json.dumps(done, indent=2))


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--scales", default="1,2,4", help="training-set multiples for the scaling run"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--only",
        help="comma-separated measurements to run (A, B, B', B'20, B-tensorflow, C, D, "
        "scaling, cli, all); default every one",
    )
    parser.add_argument("--child", dest="phase", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.phase:
        return child_main(args)

    chosen = set(args.only.split(",")) if args.only else None
    wanted = lambda name: chosen is None or name in chosen or name.split("-")[0] in chosen  # noqa: E731
    workdir = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    seed_home, demo = prepare(workdir, args.backbone)
    measurements = [  # name, child phase, engine, precision; B' and B'20 reuse B's home
        ("A", "A", "auto", "fp32"),
        ("B", "B", "auto", "fp32"),
        ("B'", "B", "auto", "fp32"),
        ("B'20", "B", "auto", "fp32"),
        ("B-tensorflow", "B", "tensorflow", "fp32"),
        *[("B-bf16", "B", e, p) for e, p in engine_precisions() if p == "bf16"],
        *[(f"C-{e}-{p}", "C", e, p) for e, p in engine_precisions()],
        ("D", "D", "auto", "fp32"),
    ]
    measurements = [m for m in measurements if wanted(m[0])]
    rows: dict[str, list[dict]] = {name: [] for name, *_ in measurements}
    for repeat in range(args.repeats):
        home = fresh_home(seed_home, workdir / f"home-{repeat}")
        for name, phase, engine, precision in measurements:
            epochs = 20 if name == "B'20" else args.epochs
            measure_home = home
            if name in ("B-tensorflow", "B-bf16"):  # cold too: its own empty feature cache
                measure_home = fresh_home(seed_home, workdir / f"home-{name}-{repeat}")
            rows[name].append(
                run_child(phase, measure_home, demo, args.backbone, epochs, engine, precision)
            )
            save_partial(args, rows)  # a long benchmark stopped early keeps what it measured
        print(
            f"repeat {repeat + 1}/{args.repeats}: "
            + ", ".join(f"{name} {runs[-1]['seconds']:.1f}s" for name, runs in rows.items()),
            flush=True,
        )
    scaling = []
    for factor in (int(f) for f in args.scales.split(",")) if wanted("scaling") else ():
        data = scaled_data(demo, factor, workdir / f"data-{factor}x")
        home = fresh_home(seed_home, workdir / f"home-{factor}x")
        scaling.append({"factor": factor, **run_child("B", home, data, args.backbone, args.epochs)})
        print(
            f"scaling {factor}x: {scaling[-1]['seconds']:.1f}s, {scaling[-1]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    cli_pairs = []
    for repeat in range(args.repeats) if wanted("cli") else ():
        cli_pairs.append(measure_cli_pair(args.backbone, workdir / f"cli-home-{repeat}"))
        pair = cli_pairs[-1]
        print(
            f"CLI pair {repeat + 1}/{args.repeats}: first {pair['first']:.1f}s, "
            f"second --epochs 20 {pair['second_epochs20']:.1f}s, ratio {pair['ratio']:.3f}",
            flush=True,
        )
    run_all = {}  # engine: one cold `zoo run --all`, each on an empty home
    for engine in ("auto", "tensorflow") if wanted("all") else ():
        all_home = fresh_home(seed_home, workdir / f"home-all-{engine}")
        run_all[engine] = run_child("all", all_home, demo, args.backbone, args.epochs, engine)
    report(args, len(all_paths(demo)), rows, scaling, run_all, cli_pairs)
    shutil.rmtree(workdir, ignore_errors=True)


def report(
    args,
    images: int,
    rows: dict[str, list[dict]],
    scaling: list[dict],
    run_all: dict[str, dict],
    cli_pairs: list,
) -> None:
    import tensorflow as tf

    summary = {
        name: {
            "seconds": median([r["seconds"] for r in runs]),
            "accuracy": median([r["accuracy"] for r in runs]) if "accuracy" in runs[0] else None,
            "peak_rss_mb": median([r["peak_rss_mb"] for r in runs]),
            "engine": runs[0].get("engine"),
            "loadavg": [r["loadavg"] for r in runs],
        }
        for name, runs in rows.items()
    }
    for name, row in summary.items():
        runs = rows[name]
        if "images" in runs[0]:  # C and D: every image once
            passes = runs[0]["images"]
        elif name == "A":  # every epoch: all training images, then the test set
            passes = images * args.epochs
        else:
            passes = runs[0].get("computed_features")
        row["images_per_second"] = passes / row["seconds"] if passes else None
    ratios = {}

    def ratio(label: str, top: str, bottom: str) -> None:
        if top in summary and bottom in summary:
            ratios[label] = summary[top]["seconds"] / summary[bottom]["seconds"]

    ratio("A/B", "A", "B")
    ratio("B(auto)/C(tensorflow)", "B", "C-tensorflow-fp32")
    ratio("B(auto)/C(openvino fp32)", "B", "C-openvino-fp32")
    ratio("B(tensorflow)/C(tensorflow)", "B-tensorflow", "C-tensorflow-fp32")
    ratio("C(tensorflow)/C(openvino fp32)", "C-tensorflow-fp32", "C-openvino-fp32")
    ratio("C(tensorflow)/C(openvino bf16)", "C-tensorflow-fp32", "C-openvino-bf16")
    ratio("B'/B", "B'", "B")
    ratio("B'20/B", "B'20", "B")
    print(f"\n{'':20}{'seconds':>10}{'images/s':>10}{'peak MB':>10}{'test acc':>10}  engine")
    for name, row in summary.items():
        accuracy = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
        rate = f"{row['images_per_second']:.1f}" if row["images_per_second"] else "cached"
        print(
            f"{name:20}{row['seconds']:10.1f}{rate:>10}{row['peak_rss_mb']:10.0f}{accuracy:>10}"
            f"  {row['engine'] or '-'}"
        )
    print("  ".join(f"{k} = {v:.3f}" for k, v in ratios.items()))
    for engine, measured in run_all.items():
        print(
            f"zoo run --all --engine {engine}: {measured['seconds']:.1f}s, "
            f"peak RSS {measured['peak_rss_mb']:.0f} MB, rows {measured['runs']}"
        )
    if len(run_all) == 2:
        ratios["all(tensorflow)/all(auto)"] = (
            run_all["tensorflow"]["seconds"] / run_all["auto"]["seconds"]
        )
        print(f"all(tensorflow)/all(auto) = {ratios['all(tensorflow)/all(auto)']:.3f}")
    cli = (
        {key: median([pair[key] for pair in cli_pairs]) for key in cli_pairs[0]}
        if cli_pairs
        else None
    )
    if cli:
        per_pair = ", ".join(f"{pair['ratio']:.3f}" for pair in cli_pairs)
        print(
            f"CLI, wall: first {cli['first']:.1f}s, second --epochs 20 {cli['second_epochs20']:.1f}s, "
            f"ratio {cli['ratio']:.3f} (per pair: {per_pair})"
        )
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "openvino": _version("openvino"),
        },
        "backbone": args.backbone,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "median": summary,
        "ratios": ratios,
        "raw": rows,
        "scaling": scaling,
        "run_all": run_all,
        "cli_median": cli,
        "cli_pairs": cli_pairs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    path = args.out / f"{stamp}-{args.backbone}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
