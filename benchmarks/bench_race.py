"""The race's groundwork, measured on the test bed (benchmarks/testbed): the screen against trained
accuracies, `--screen-only`'s time, and peak memory over several backbones.

    python benchmarks/bench_race.py [--train-per-class 75] [--test-per-class 250]
        [--memory tb_lite0_32,tb_lite0_64,tb_lite1_96,tb_lite2_260] [--screen-fraction 0.125]
        [--workdir DIR]

Each measurement is a child process (`zoo ...` through zoo.cli.main) on a zoo home of its own
(peak RSS is the child's VmHWM), on a stratified slice of the demo (the whole demo is 75 train
and 250 test images per class):
  full        `zoo run` of all 11 test-bed backbones (their trained test accuracies);
  screen      `zoo run --screen-only` with knn and with logme on the same home (features cached
              by `full`), timed, with Kendall tau against the accuracies of `full`;
  round       one round's extraction: a cold `--screen-only` of the 11 (each backbone's first
              1/8 of the training images computed, conversions already cached);
  memory      `zoo run` of the --memory backbones cold, against each of the --memory-singles
              (default: all of them) alone cold;
  export      the share of a cold tb_lite0_224 run spent writing its serving model;
  race        `zoo run --race` of the 11 against `zoo run` of the 11, each on a home holding
              only the conversions (converted/, engines/): whether the race's best is in the
              full comparison's tied-for-best group, the vectors each computed, the wall clock.
`--only memory,export` (or `--only race`, with `--conversions HOME` to copy that home's
conversions) runs just those. Results: a table, and benchmarks/results/<date>-race.json with
the load average.

Peak memory of one command is its process tree's: zoo extracts each backbone in a child process
(zoo/extraction/process.py). Each measurement gives the main process's peak RSS (VmHWM), the
largest child's (getrusage RUSAGE_CHILDREN, exact), and the tree's largest sum of RSS and of PSS
(sampled every 0.2 s: RSS counts the libraries both processes map twice, PSS shares them out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTBED = ROOT / "benchmarks" / "testbed"
RESULTS = ROOT / "benchmarks" / "results"
MEMORY_DEFAULT = "tb_lite0_32,tb_lite0_64,tb_lite1_96,tb_lite2_260"


def testbed_names() -> list[str]:
    import tomllib

    return list(tomllib.loads((TESTBED / "registry.toml").read_text())["backbones"])


def child_main(arguments: list[str], report: Path, time_export: bool) -> None:
    """Run `zoo ARGUMENTS` here; write its output, exit code, peak RSS (and export time)."""
    import contextlib
    import io

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    export_seconds = []
    if time_export:
        from zoo.runs import artifacts

        original = artifacts.save_with_head

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                export_seconds.append(time.perf_counter() - started)

        artifacts.save_with_head = timed
    import resource

    from zoo.cli import main

    sampler = TreeSampler()
    sampler.start()
    stdout, started = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        try:
            main(arguments)
            code = 0
        except SystemExit as done:
            code = done.code
    seconds = time.perf_counter() - started
    sampler.stop()
    peak = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    report.write_text(
        json.dumps(
            {
                "code": code,
                "seconds": seconds,
                "peak_rss": peak,
                "child_peak_rss": child_peak,
                "process_peak_rss": max(peak, child_peak),
                "tree_peak_rss_sum": max(sampler.rss_sum, peak),
                "tree_peak_pss_sum": sampler.pss_sum,
                "stdout": stdout.getvalue(),
                "export_seconds": export_seconds,
            }
        )
    )


class TreeSampler:
    """The largest sums of RSS and of PSS over this process and its descendants, sampled."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.interval, self.rss_sum, self.pss_sum = interval, 0, 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stopped.wait(self.interval):
            rss = pss = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    info = process.memory_full_info()
                except psutil.Error:  # ended between the listing and the reading
                    continue
                rss, pss = rss + info.rss, pss + info.pss
            self.rss_sum, self.pss_sum = max(self.rss_sum, rss), max(self.pss_sum, pss)


def zoo_child(home: Path, arguments: list[str], time_export: bool = False) -> dict:
    env = {
        **os.environ,
        "ZOO_HOME": str(home),
        "ZOO_PLUGINS": str(TESTBED / "plugin.py"),
        "ZOO_REGISTRY": str(TESTBED / "registry.toml"),
    }
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        command = [sys.executable, __file__, "--child", report.name]
        command += ["--time-export"] if time_export else []
        done = subprocess.run([*command, "--", *arguments], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not Path(report.name).stat().st_size:
            sys.exit(f"child failed: zoo {' '.join(arguments)}\n{done.stderr[-3000:]}")
        facts = json.loads(Path(report.name).read_text())
    if facts["code"] not in (0, None):
        sys.exit(f"zoo {' '.join(arguments)} exited {facts['code']}\n{done.stderr[-3000:]}")
    return facts


def demo_slice(workdir: Path, train_per_class: int, test_per_class: int) -> Path:
    """The first images of each class of the demo (files sorted by name) as train/ and test/."""
    env = {**os.environ, "ZOO_HOME": str(workdir / "demo-home")}
    script = "from zoo.data.demo import demo_data_dir; print(demo_data_dir())"
    demo = Path(
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    root = workdir / f"demo-{train_per_class}-{test_per_class}"
    if root.is_dir():
        return root
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for folder in sorted((demo / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                shutil.copy(image, root / split / folder.name / image.name)
    return root


def prepared_home(workdir: Path, name: str, converted: Path | None) -> Path:
    """An empty zoo home, holding a copy of the conversions (converted/) when given."""
    home = workdir / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    if converted is not None and converted.is_dir():
        shutil.copytree(converted, home / "converted")
    return home


def kendall(x: list[float], y: list[float]) -> float:
    sys.path.insert(0, str(ROOT))
    from zoo.analysis.screen import kendall_tau

    return kendall_tau(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-per-class", type=int, default=75)
    parser.add_argument("--test-per-class", type=int, default=250)
    parser.add_argument("--memory", default=MEMORY_DEFAULT)
    parser.add_argument("--memory-singles", default="", help="default: every --memory backbone")
    parser.add_argument("--only", default="full,screen,round,memory,export,race")
    parser.add_argument("--screen-fraction", default="0.125")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench-race")
    parser.add_argument(
        "--conversions", type=Path, help="--only race: a zoo home whose conversions to copy"
    )
    options = parser.parse_args()
    workdir = options.workdir
    data = demo_slice(workdir, options.train_per_class, options.test_per_class)
    names = testbed_names()
    results: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "data": {"train_per_class": options.train_per_class, "test": options.test_per_class},
        "screen_fraction": options.screen_fraction,
        "load_before": os.getloadavg(),
    }
    only = set(options.only.split(","))
    home = workdir / "home-full"
    if "full" in only:
        run_full_and_screens(options, home, data, names, results)
    if "round" in only:
        run_round(options, home, data, names, results)
    members = options.memory.split(",")
    if not (home / "converted").is_dir():  # the test bed's SavedModels, built once for all homes
        zoo_child(prepared_home(workdir, home.name, None), ["pull", *names])
    if "memory" in only:
        singles = {}
        for name in options.memory_singles.split(",") if options.memory_singles else members:
            alone = prepared_home(workdir, f"home-{name}", home / "converted")
            singles[name] = memory_facts(
                zoo_child(alone, ["run", name, "--data", str(data), "--json"])
            )
        together = prepared_home(workdir, "home-together", home / "converted")
        facts = zoo_child(together, ["run", *members, "--data", str(data), "--json"])
        results["memory"] = {
            "members": members,
            "single_cold": singles,
            "together": memory_facts(facts),
            "together_seconds": facts["seconds"],
        }
    if "export" in only:
        lite0 = prepared_home(workdir, "home-export", home / "converted")
        exported = zoo_child(lite0, ["run", "tb_lite0_224", "--data", str(data)], time_export=True)
        results["export"] = {
            "run_seconds": exported["seconds"],
            "export_seconds": exported["export_seconds"],
        }
    if "race" in only:
        results["race"] = measure_race(workdir, data, names, options.conversions or home)
    results["load_after"] = os.getloadavg()
    report(results, members)
    if "race" in results:
        report_race(results)
    save(results)


MEMORY_FIGURES = (
    "peak_rss",
    "child_peak_rss",
    "process_peak_rss",
    "tree_peak_rss_sum",
    "tree_peak_pss_sum",
)


def memory_facts(facts: dict) -> dict:
    return {key: facts[key] for key in MEMORY_FIGURES}


def run_full_and_screens(options, home: Path, data: Path, names: list[str], results: dict) -> None:
    home = prepared_home(home.parent, home.name, None)
    full = zoo_child(home, ["run", *names, "--data", str(data), "--epochs", "5", "--json"])
    accuracy = {
        row["backbone"]: row["metrics"]["accuracy"] for row in json.loads(full["stdout"])["runs"]
    }
    results["full"] = {"seconds": full["seconds"], "accuracy": accuracy}

    for method in ("knn", "logme"):
        timed = zoo_child(
            home,
            [
                "run",
                *names,
                "--data",
                str(data),
                "--screen-only",
                "--screen",
                method,
                "--screen-fraction",
                options.screen_fraction,
                "--json",
            ],
        )
        facts = json.loads(timed["stdout"])
        scores = {row["backbone"]: row["score"] for row in facts["ranking"]}
        results[f"screen_{method}"] = {
            "seconds": timed["seconds"],
            "kendall_tau": kendall([scores[n] for n in names], [accuracy[n] for n in names]),
            "kendall_tau_reported": facts["kendall_tau"],
            "ranking": facts["ranking"],
            "images": facts["images"],
        }


def run_round(options, home: Path, data: Path, names: list[str], results: dict) -> None:
    workdir = home.parent
    cold = prepared_home(workdir, "home-round", home / "converted")
    shutil.rmtree(cold / "engines", ignore_errors=True)
    if (home / "engines").is_dir():
        shutil.copytree(
            home / "engines", cold / "engines"
        )  # OpenVINO IR: conversions, not features
    round_run = zoo_child(
        cold,
        [
            "run",
            *names,
            "--data",
            str(data),
            "--screen-only",
            "--screen-fraction",
            options.screen_fraction,
            "--json",
        ],
    )
    round_facts = json.loads(round_run["stdout"])
    results["round"] = {
        "seconds": round_run["seconds"],
        "extraction_seconds": sum(row["seconds"] for row in round_facts["ranking"]),
        "computed": sum(row["computed_features"] for row in round_facts["ranking"]),
    }


def save(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M")
    (RESULTS / f"{stamp}-race.json").write_text(json.dumps(results, indent=2))


def conversions_home(workdir: Path, data: Path, names: list[str]) -> Path:
    """A home whose converted/ and engines/ hold every backbone's conversion: a `--screen-only`
    on 1% of the training images (its few features stay in that home only)."""
    home = prepared_home(workdir, "home-conversions", None)
    zoo_child(
        home,
        [
            "run",
            *names,
            "--data",
            str(data),
            "--screen-only",
            "--screen-fraction",
            "0.01",
            "--json",
        ],
    )
    return home


def converted_home(workdir: Path, name: str, source: Path) -> Path:
    """An empty home holding `source`'s conversions (models, OpenVINO IR) but no features."""
    home = prepared_home(workdir, name, source / "converted")
    if (source / "engines").is_dir():
        shutil.copytree(source / "engines", home / "engines")
    return home


def measure_race(workdir: Path, data: Path, names: list[str], source: Path | None = None) -> dict:
    """The race against the full comparison, both from homes with the conversions only."""
    source = source or conversions_home(workdir, data, names)
    arguments = ["run", *names, "--data", str(data), "--epochs", "5", "--json"]
    full = zoo_child(converted_home(workdir, "home-full-warm", source), arguments)
    raced = zoo_child(converted_home(workdir, "home-race", source), [*arguments, "--race"])
    full_facts, race_facts = json.loads(full["stdout"]), json.loads(raced["stdout"])
    named = {row["run_id"]: row["backbone"] for row in full_facts["runs"]}
    verdict = full_facts["verdict"]
    tied_for_best = sorted({named[verdict["best"]], *(named[run] for run in verdict["tied"])})
    race_named = {row["run_id"]: row["backbone"] for row in race_facts["runs"]}
    race_verdict = race_facts["verdict"] or {}
    finalists = race_facts["race"]["finalists"]
    race_best = race_named[race_verdict["best"]] if "best" in race_verdict else finalists[0]
    full_computed = sum(row["metrics"]["computed_features"] or 0 for row in full_facts["runs"])
    computed = {
        row["backbone"]: row["metrics"]["computed_features"] or 0 for row in full_facts["runs"]
    }
    race_computed = race_facts["race"]["computed_features"]["total"]
    return {
        "full_seconds": full["seconds"],
        "race_seconds": raced["seconds"],
        "full_computed": full_computed,
        "race_computed": race_computed,
        "tied_for_best": tied_for_best,
        # What the tied group's full runs alone cost: a race that keeps its alpha cannot drop
        # them reliably, so it computes at least about this share.
        "tied_share": sum(computed[name] for name in tied_for_best) / full_computed,
        "full_accuracy": {
            row["backbone"]: row["metrics"]["accuracy"] for row in full_facts["runs"]
        },
        "race_best": race_best,
        "race_best_in_tied_group": race_best in tied_for_best,
        "finalists": finalists,
        "rounds": [
            {
                **{k: r[k] for k in ("round", "images", "survivors", "leader", "threshold", "out")},
                "p_values": {c["backbone"]: c["p_value"] for c in r["comparisons"]},
            }
            for r in race_facts["race"]["rounds"]
        ],
    }


def report_race(results: dict) -> None:
    race = results["race"]
    share = race["race_computed"] / race["full_computed"]
    print(
        f"race: best {race['race_best']} "
        f"({'in' if race['race_best_in_tied_group'] else 'NOT in'} the full comparison's "
        f"tied-for-best group {race['tied_for_best']}); finalists {race['finalists']}"
    )
    print(
        f"race: {race['race_computed']} vectors vs {race['full_computed']} for the full "
        f"comparison ({share:.1%}; target <= 40%); wall clock {race['race_seconds']:.1f}s vs "
        f"{race['full_seconds']:.1f}s ({race['race_seconds'] / race['full_seconds']:.2f}x)"
    )
    if "tied_share" in race:
        print(
            f"race: the tied group's full runs alone are {race['tied_share']:.1%} of the full "
            "comparison's vectors (a race keeping its alpha cannot reliably go below that)"
        )
    for facts in race["rounds"]:
        print(
            f"  round {facts['round']} {facts['images']}: {len(facts['survivors'])} in, "
            f"leader {facts['leader']}, out at p <= {facts['threshold']:.2g}: {facts['out']}"
        )
        kept = {n: p for n, p in facts.get("p_values", {}).items() if n not in facts["out"]}
        if kept:
            print("    kept, p: " + ", ".join(f"{n} {p:.2g}" for n, p in sorted(kept.items())))
    if "load_after" in results:
        print(f"load average before {results['load_before']}, after {results['load_after']}")


def report(results: dict, members: list[str]) -> None:
    if "full" in results:
        report_screens(results)
    if "round" in results:
        facts = results["round"]
        print(
            f"one round's extraction (cold --screen-only, {facts['computed']} vectors): "
            f"{facts['seconds']:.1f}s (extraction + score {facts['extraction_seconds']:.1f}s)"
        )
    if "memory" in results:
        report_memory(results["memory"])
    if "export" in results:
        export = results["export"]
        print(
            f"cold tb_lite0_224 run: {export['run_seconds']:.1f}s, of which serving-model export "
            f"{sum(export['export_seconds']):.1f}s"
        )
    print(f"load average before {results['load_before']}, after {results['load_after']}")


def report_screens(results: dict) -> None:
    accuracy = results["full"]["accuracy"]
    print(f"full run of {len(accuracy)} backbones: {results['full']['seconds']:.1f}s")
    for method in ("knn", "logme"):
        facts = results[f"screen_{method}"]
        print(
            f"--screen-only {method} on {facts['images']} images (features cached): "
            f"{facts['seconds']:.1f}s, Kendall tau vs trained accuracy {facts['kendall_tau']:+.3f}"
        )
        for row in facts["ranking"]:
            print(
                f"  {row['backbone']:22s} {row['score']:+.4f}  acc {accuracy[row['backbone']]:.4f}"
            )


def report_memory(memory: dict) -> None:
    def line(label: str, facts: dict) -> str:
        figures = ", ".join(f"{key} {facts[key] / 1e6:.0f}" for key in MEMORY_FIGURES)
        return f"  {label:22s} MB: {figures}"

    print(f"peak memory, {len(memory['members'])} backbones in one `zoo run` and each alone:")
    print(line("together", memory["together"]))
    for name, facts in memory["single_cold"].items():
        print(line(name, facts))
    for key in ("process_peak_rss", "tree_peak_rss_sum", "tree_peak_pss_sum"):
        largest = max(facts[key] for facts in memory["single_cold"].values())
        together = memory["together"][key]
        verdict = "met" if together <= largest + 300e6 else "missed"
        print(
            f"  {key}: together {together / 1e6:.0f} MB, largest alone {largest / 1e6:.0f} MB, "
            f"target <= {(largest + 300e6) / 1e6:.0f} MB: {verdict}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        extra = sys.argv[3 : sys.argv.index("--")]
        child_main(
            sys.argv[sys.argv.index("--") + 1 :], Path(sys.argv[2]), "--time-export" in extra
        )
    else:
        main()
