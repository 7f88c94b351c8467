"""`--deploy TARGET`: each target end to end on a tiny run, the stored figures, the budget filter
on constructed measurements, the CLI's bad inputs, and one real Lite0 run in int8."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import run_main

import zoo
from zoo.analysis.budget import check_budget, pareto_front, within_budget
from zoo.analysis.record import RunRecord
from zoo.catalog.plugins import load_plugins
from zoo.errors import UsageError
from zoo.reporting import Reporter
from zoo.runs.deploy import (
    deploy_runs,
    latency_figures,
    series_figures,
    time_calls,
    time_in_turns,
)
from zoo.runs.store import get_run, update_run
from zoo.runs.targets import load_targets, parse_target_names

TARGETS = ("tflite-float16", "tflite-int8", "openvino-fp32", "openvino-int8")


@pytest.fixture
def tiny_run(tiny_registry, tiny_images) -> dict:
    (result,) = zoo.run(["tiny"], data=tiny_images, epochs=5, lr=0.05).results
    assert result.ok, result.reason
    return get_run(result.run_id)


def _target(name: str):
    target = load_targets(load_plugins()).targets[name]
    if target.available():
        pytest.skip(f"{name}: {target.available()}")
    return target


@pytest.mark.parametrize("name", TARGETS)
def test_each_target_exports_once_and_measures_through_its_runtime(tiny_run, name):
    target = _target(name)
    (figures,) = deploy_runs([tiny_run], [target])[tiny_run.id].values()
    stored = get_run(tiny_run.id)
    assert stored.metrics["deploy"][name] == figures  # stored with the run
    assert stored.metrics["accuracy"] == tiny_run.metrics["accuracy"]  # nothing else moved
    shipped = Path(stored.artifacts[f"deploy_{name}"])
    on_disk = (
        shipped.stat().st_size
        if shipped.is_file()
        else sum(f.stat().st_size for f in shipped.rglob("*") if f.is_file())
    )
    assert figures["size_bytes"] == on_disk > 0
    assert figures["test_images"] == 15 and figures["paired"] is True
    # The deployed model's probabilities, beside the run's own, in the run's test order.
    with np.load(stored.artifacts[f"deploy_{name}_probabilities"]) as deployed:
        probabilities, labels = deployed["probabilities"], deployed["labels"]
    with np.load(stored.artifacts["test_probabilities"]) as own:
        assert np.array_equal(own["labels"], labels)
        agreement = (own["probabilities"].argmax(1) == probabilities.argmax(1)).mean()
    assert figures["accuracy"] == pytest.approx((probabilities.argmax(1) == labels).mean())
    assert agreement >= (0.9 if name.endswith("int8") else 0.99)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
    for threads in ("1_thread", "all_threads"):
        timing = figures["latency"][threads]
        assert timing["calls"] == 50 and 0 < timing["median_ms"] <= timing["p90_ms"]
        assert timing["cpu_median_ms"] > 0 and 0 <= timing["preempted_calls"] <= 50
    assert figures["export_seconds"] > 0
    # A second measurement on this machine reuses the stored one; a new one reuses the export.
    again = deploy_runs([stored], [target])[tiny_run.id][name]
    assert again == figures
    from zoo.runs.deploy import exported

    assert exported(stored, target) == (shipped, 0.0)


def test_int8_files_really_hold_int8(tiny_run):
    import tensorflow as tf

    target = _target("tflite-int8")
    deploy_runs([tiny_run], [target])
    path = get_run(tiny_run.id).artifacts["deploy_tflite-int8"]
    interpreter = tf.lite.Interpreter(model_path=path)
    assert np.int8 in {detail["dtype"] for detail in interpreter.get_tensor_details()}


def test_a_failed_export_leaves_no_half_folder(tiny_run, monkeypatch):
    target = _target("tflite-float16")

    def broken(run, folder):
        (folder / "model.tflite").write_bytes(b"half")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(target, "export", broken)
    with pytest.warns(UserWarning, match="tflite-float16 failed: RuntimeError: converter crashed"):
        figures = deploy_runs([tiny_run], [target])[tiny_run.id]["tflite-float16"]
    assert figures["error"] == "RuntimeError: converter crashed"
    deploy_folder = Path(tiny_run.artifacts["run_folder"]) / "deploy"
    assert deploy_folder.is_dir() and list(deploy_folder.iterdir()) == []  # no half export
    assert get_run(tiny_run.id).metrics["deploy"]["tflite-float16"] == figures


def test_update_run_changes_only_what_it_is_given(tiny_run):
    before = get_run(tiny_run.id)

    def change(record):
        record.metrics["extra"] = 1
        record.artifacts["thing"] = before.artifacts["run_folder"] + "/thing"

    after = update_run(tiny_run.id, change)
    assert get_run(tiny_run.id) == after
    assert after.metrics == {**before.metrics, "extra": 1}
    assert after.artifacts["thing"].endswith("/thing")
    assert {k: v for k, v in after.to_json().items() if k not in ("metrics", "artifacts")} == {
        k: v for k, v in before.to_json().items() if k not in ("metrics", "artifacts")
    }

    def failing(record):
        record.metrics["extra"] = 2
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        update_run(tiny_run.id, failing)
    assert get_run(tiny_run.id).metrics["extra"] == 1  # rolled back
    with pytest.raises(UsageError, match="no run with id 99"):
        update_run(99, change)


# ---- the pure parts -----------------------------------------------------------------------------
def test_latency_figures_and_timed_calls():
    figures = latency_figures([0.001 * n for n in range(1, 11)])  # 1..10 ms
    assert figures == {"median_ms": pytest.approx(5.5), "p90_ms": pytest.approx(9.1), "calls": 10}
    ticks = iter(range(100))
    calls = []
    timed = time_calls(lambda: calls.append(1), calls=3, warmup=2, clock=lambda: next(ticks))
    assert timed == [1, 1, 1] and len(calls) == 5
    with pytest.raises(ValueError):
        latency_figures([])


def test_series_take_turns_after_their_warm_up_and_record_cpu_and_preemption():
    order = []
    timed = time_in_turns(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, calls=3, warmup=2
    )
    assert order == ["a", "a", "b", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert [len(calls) for calls in timed.values()] == [3, 3]
    spin = time_in_turns({"busy": lambda: sum(range(200_000))}, calls=5, warmup=0)["busy"]
    figures = series_figures(spin)
    assert figures["calls"] == 5 and 0 < figures["median_ms"] <= figures["p90_ms"]
    # The calling thread's CPU time: all of a busy call, none of a sleeping one.
    assert 0 < figures["cpu_median_ms"] <= figures["median_ms"] * 1.05
    (asleep,) = time_in_turns({"sleep": lambda: time.sleep(0.02)}, calls=1, warmup=0).values()
    assert asleep[0].wall >= 0.02 and asleep[0].cpu < 0.01
    assert 0 <= figures["preempted_calls"] <= 5


def _measured(run_id, backbone, accuracy, ms, mb, target="tflite-int8", status="ok"):
    figures = {
        "accuracy": accuracy,
        "latency": {"1_thread": {"median_ms": ms}},
        "size_bytes": mb * 1e6,
    }
    return RunRecord(
        id=run_id,
        backbone=backbone,
        mode="feature-extraction",
        status=status,
        reason=None if status == "ok" else "out of memory",
        metrics={"deploy": {target: figures}},
    )


def test_budget_keeps_what_fits_and_says_why_the_others_do_not():
    runs = [
        _measured(1, "lite0", 0.83, 4.0, 4.5),
        _measured(2, "lite1", 0.84, 7.0, 5.6),
        _measured(3, "lite2", 0.85, 11.0, 6.8),
        _measured(4, "big", 0.86, 3.0, 90.0),
        _measured(5, "broken", 0.0, 0.0, 0.0, status="failed"),
        RunRecord(
            id=6,
            backbone="x",
            mode="feature-extraction",
            status="ok",
            metrics={"deploy": {"tflite-int8": {"error": "boom"}}},
        ),
        RunRecord(id=7, backbone="y", mode="feature-extraction", status="ok"),
    ]
    fit = within_budget(runs, ["tflite-int8"], budget_ms=8, budget_mb=10)
    assert [c.run_id for c in fit.fits] == [2, 1]  # most accurate first
    reasons = {run: why for run, _, why in fit.left_out}
    assert reasons == {
        3: "11.00 ms > 8 ms",
        4: "90.00 MB > 10 MB",
        5: "the run failed: out of memory",
        6: "tflite-int8 failed: boom",
        7: "not measured on tflite-int8",
    }
    fastest = within_budget(runs, ["tflite-int8"], budget_ms=8, prefer="latency")
    assert [c.run_id for c in fastest.fits] == [4, 1, 2]
    everything = within_budget(runs[:4], ["tflite-int8"])
    assert len(everything.fits) == 4 and not everything.left_out
    assert json.loads(json.dumps(fit.facts()))["left_out"][0] == {
        "run": 3,
        "target": "tflite-int8",
        "reason": "11.00 ms > 8 ms",
    }


def test_pareto_front_keeps_only_the_unbeaten():
    points = [(4.0, 0.83), (7.0, 0.84), (11.0, 0.82), (3.0, 0.80), (7.0, 0.83), (4.0, 0.83)]
    # (11, .82) is slower and worse than (4, .83); (7, .83) is beaten by (4, .83); ties both stay.
    assert pareto_front(points) == [3, 0, 5, 1]


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, None, "speed", ["t"]), "--budget-ms must be a positive number, not 0"),
        ((None, -1.0, "speed", ["t"]), "--budget-mb must be a positive number, not -1"),
        ((5, None, "speed", []), "--budget-ms is a budget for the deployed model: add --deploy"),
        ((None, None, "latency", []), "--prefer latency ranks by measured latency"),
        ((None, None, "colour", ["t"]), "--prefer must be one of speed, size, accuracy, latency"),
    ],
)
def test_budget_flags_that_mean_nothing_are_refused(args, message):
    with pytest.raises(UsageError, match=message):
        check_budget(*args)


def test_target_names_parse_repeated_and_comma_separated():
    assert parse_target_names(["tflite-int8,openvino-fp32", "tflite-int8"]) == [
        "tflite-int8",
        "openvino-fp32",
    ]
    assert parse_target_names(None) == []
    with pytest.raises(UsageError, match="--deploy needs a target name"):
        parse_target_names([","])


# ---- the command line ---------------------------------------------------------------------------
def test_run_with_deploy_shows_the_columns_and_the_budget(tiny_registry, tiny_images, capsys):
    args = ["run", "tiny", "--data", str(tiny_images), "--epochs", "3"]
    code, out, err = run_main([*args, "--deploy", "tflite-float16", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    (run,) = report["runs"]
    figures = run["metrics"]["deploy"]["tflite-float16"]
    assert figures == get_run(run["run_id"]).metrics["deploy"]["tflite-float16"]
    (fit,) = report["budget"]["fits"]
    assert fit["run_id"] == run["run_id"] and fit["target"] == "tflite-float16"
    assert (
        fit["probabilities"]
        == get_run(run["run_id"]).artifacts["deploy_tflite-float16_probabilities"]
    )
    # compare reuses the stored measurement (no new export, no new timing) and applies a budget.
    tight = figures["latency"]["1_thread"]["median_ms"] / 2
    compare = ["compare", str(run["run_id"]), "--deploy", "tflite-float16"]
    code, out, err = run_main([*compare, "--budget-ms", str(tight)], capsys)
    assert code == 0, err
    assert "deployed acc" in out and "MB" in out
    assert "Within budget (latency <= " in out and " none" in out
    assert f"Does not fit: run {run['run_id']} on tflite-float16: " in out and " ms > " in out
    code, out, err = run_main([*compare, "--json", "--prefer", "latency"], capsys)
    assert code == 0, err
    (stored,) = json.loads(out)["runs"]
    assert stored["metrics"]["deploy"]["tflite-float16"] == figures
    # Measured on this machine already: compare answers without TensorFlow, and for bad input
    # before it too.
    script = (
        "import sys; from zoo.cli import main\n"
        f"for args in ({compare!r}, {[*compare, '--budget-mb', '0']!r}):\n"
        "    try:\n        main(args)\n    except SystemExit as done:\n"
        "        print('exit', done.code)\n"
        "assert 'tensorflow' not in sys.modules, 'compare --deploy loaded tensorflow'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-4:] == ["exit", "0", "exit", "2"], done.stdout


UNAVAILABLE_TARGET = """
import zoo

class Phone(zoo.DeployTarget):
    name = "phone-npu"

    def available(self):
        return "no NPU on this machine"

@zoo.hookimpl
def register_deploy_targets(register):
    register(Phone())
"""


@pytest.fixture
def two_runs_and_an_ensemble(tmp_path, tiny_savedmodel, tiny_images, monkeypatch, capsys):
    from conftest import export_tiny_savedmodel, registry_text

    other = export_tiny_savedmodel(tmp_path / "wide", seed=1)
    registry = tmp_path / "two.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)) + registry_text(str(other), name="wide")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    for name in ("tiny", "wide"):
        code, _, err = run_main(["run", name, "--data", str(tiny_images), "--epochs", "1"], capsys)
        assert code == 0, err
    code, _, err = run_main(["ensemble", "1", "2"], capsys)
    assert code == 0, err
    plugin = tmp_path / "zoo_phone.py"
    plugin.write_text(UNAVAILABLE_TARGET)
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    return tiny_images


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["compare", "1", "--deploy", "tflite-int4"],
            "unknown deploy target 'tflite-int4'; choose",
        ),
        (["compare", "1", "--deploy", "phone-npu"], "'phone-npu' cannot run here: no NPU"),
        (["compare", "3", "--deploy", "tflite-int8"], "run 3 is an ensemble of runs [1, 2]"),
        (["compare", "1", "--deploy", "tflite-int8", "--budget-ms", "0"], "--budget-ms must be"),
        (["compare", "1", "--deploy", "tflite-int8", "--budget-mb", "-2"], "--budget-mb must be"),
        (["compare", "1", "--budget-mb", "5"], "--budget-mb is a budget for the deployed model"),
        (["compare", "1", "--prefer", "latency"], "--prefer latency ranks by measured latency"),
        (["run", "tiny+wide", "--deploy", "tflite-int8"], "no single model to deploy"),
        (["run", "tiny", "--deploy", "nope"], "unknown deploy target 'nope'"),
        (["run", "tiny", "--budget-ms", "-1", "--deploy", "tflite-int8"], "--budget-ms must be"),
    ],
)
def test_bad_deploy_input_is_one_line_and_exit_2(two_runs_and_an_ensemble, capsys, args, message):
    if args[0] == "run":
        args = [*args, "--data", str(two_runs_and_an_ensemble)]
    code, out, err = run_main(args, capsys)
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_combined_run_is_refused_by_compare(tiny_images, two_runs_and_an_ensemble, capsys):
    code, _, err = run_main(
        ["run", "tiny+wide", "--data", str(tiny_images), "--epochs", "1"], capsys
    )
    assert code == 0, err
    code, _, err = run_main(["compare", "4", "--deploy", "tflite-float16"], capsys)
    assert code == 2 and "trained one head on the features of 2 backbones" in err
    assert len(err.strip().splitlines()) == 1


def test_the_comparison_report_draws_deployed_accuracy_against_latency(
    tiny_registry, tiny_images, tmp_path
):
    import re

    from zoo.runs.compare_report import compare_runs

    summary = zoo.run(["tiny", "tiny"], data=tiny_images, epochs=1)
    first, second = (result.run_id for result in summary.results)
    plain = compare_runs([first, second], tmp_path / "plain")
    assert not (tmp_path / "plain" / "deployed_accuracy_vs_latency.png").exists()
    assert len(plain.pictures) == 4  # the verdict's intervals, speed, per class, loss

    def measured(accuracy, ms):
        def change(record):
            record.metrics["deploy"] = {
                "tflite-int8": {
                    "accuracy": accuracy,
                    "latency": {"1_thread": {"median_ms": ms}},
                    "size_bytes": 10**6,
                },
                "openvino-fp32": {"error": "conversion failed"},  # not drawn
            }

        return change

    update_run(first, measured(0.9, 2.0))
    update_run(second, measured(0.8, 20.0))
    comparison = compare_runs([first, second], tmp_path / "deployed")
    png = tmp_path / "deployed" / "deployed_accuracy_vs_latency.png"
    assert png in comparison.pictures and png.read_bytes().startswith(b"\x89PNG")
    page = comparison.html.read_text()
    pictures = re.findall(r'<img id="(\w+)" alt="\w+" src="data:image/png;base64,', page)
    assert len(pictures) == 5 and "deployed_accuracy_vs_latency" in pictures  # + the verdict's


def test_real_lite0_run_deployed_to_tflite_int8(zoo_home, lite0_built, capsys, monkeypatch):
    """The real path: EfficientNet-Lite0 on a demo slice, `zoo run --deploy tflite-int8`."""
    import tensorflow as tf
    from conftest import plant_demo_slice

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("ZOO_DEPLOY_HERE")  # measured in a child process, as `zoo run` does
    plant_demo_slice(zoo_home, train_per_class=6, test_per_class=2)
    args = ["run", "efficientnet_lite0", "--deploy", "tflite-int8", "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    (run,) = json.loads(out)["runs"]
    figures = run["metrics"]["deploy"]["tflite-int8"]
    assert figures["test_images"] == 20 and figures["paired"] is True
    # int8 on 20 images: within 3 images of the float model's accuracy.
    assert abs(figures["accuracy"] - run["metrics"]["accuracy"]) <= 0.15
    # One byte a weight, give or take the graph: 3.4 M parameters in int8.
    params = run["metrics"]["params_m"] * 1e6
    assert 0.8 * params < figures["size_bytes"] < 1.6 * params
    path = get_run(run["run_id"]).artifacts["deploy_tflite-int8"]
    assert Path(path).stat().st_size == figures["size_bytes"]
    interpreter = tf.lite.Interpreter(model_path=path)
    assert np.int8 in {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert figures["latency"]["1_thread"]["median_ms"] > 0


class _KillsTheChild(Reporter):
    """Kills the measurement's child process when it starts its test pass, once."""

    def __init__(self):
        self.tasks, self.advanced, self.killed = [], 0, False

    @contextlib.contextmanager
    def task(self, description, total):
        self.tasks.append((description, total))
        if not self.killed:
            self.killed = True
            (child,) = psutil.Process().children()
            child.kill()
        yield self.advance

    def advance(self, steps):
        self.advanced += steps


def test_a_measurement_in_its_own_process_reports_and_survives_the_childs_death(
    tiny_run, monkeypatch
):
    monkeypatch.delenv("ZOO_DEPLOY_HERE")
    target, reporter = _target("tflite-float16"), _KillsTheChild()
    (killed,) = deploy_runs([tiny_run], [target], reporter)[tiny_run.id].values()
    assert "its measurement process stopped (killed by SIGKILL" in killed["error"]
    assert get_run(tiny_run.id).metrics["deploy"]["tflite-float16"] == killed
    assert psutil.Process().children() == []  # ended, not left behind

    (figures,) = deploy_runs([get_run(tiny_run.id)], [target], reporter)[tiny_run.id].values()
    assert "error" not in figures and figures["test_images"] == 15
    assert reporter.tasks[-1] == ("tflite-float16: test images", 15) and reporter.advanced == 15
    with np.load(get_run(tiny_run.id).artifacts["deploy_tflite-float16_probabilities"]) as kept:
        right = (kept["probabilities"].argmax(1) == kept["labels"]).mean()
    assert figures["accuracy"] == pytest.approx(right)
    assert psutil.Process().children() == []
    # What the user waited for: the child's start and stop are a stage of the cost.
    process = figures["cost"]["process"]
    assert process["wall_s"] > 0 and process["cpu_s"] > 0
    assert figures["seconds"] == pytest.approx(
        sum(s["wall_s"] for s in figures["cost"].values()), abs=0.5
    )


def test_two_processes_adding_to_one_run_lose_nothing(zoo_home):
    """Each update reads and writes under one write lock: two processes adding measurements of
    their own to the same run keep every one of them."""
    from test_hardening import record

    from zoo.runs.store import save_run

    run_id = save_run(record())
    script = (
        "import sys\nfrom zoo.runs.store import update_run\n"
        "for n in range(15):\n"
        f"    update_run({run_id}, lambda r: r.metrics.setdefault('deploy', {{}}).update("
        "{f'{sys.argv[1]}-{n}': {'n': n}}))\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, name], stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()
    deploy = get_run(run_id).metrics["deploy"]
    assert sorted(deploy) == sorted(f"{name}-{n}" for name in "ab" for n in range(15))


def test_the_verdict_judges_deployed_models_within_the_budget(
    two_runs_and_an_ensemble, capsys, monkeypatch
):
    """With --deploy the verdict compares the deployed models' own predictions, only of runs
    within the budget, and --prefer latency breaks the tie by their measured latency."""
    monkeypatch.delenv("ZOO_PLUGINS")
    args = ["compare", "1", "2", "--deploy", "tflite-float16", "--prefer", "latency", "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    facts = json.loads(out)
    verdict, fits = facts["verdict"], facts["budget"]["fits"]
    assert "deployed models' predictions (tflite-float16)" in verdict["test"]
    assert verdict["prefer"] == "latency" and sorted(verdict["tied"] + verdict["worse"]) == [1, 2]
    # b and c come from the deployed predictions, not the runs' own
    right = {}
    for fit in fits:
        stored = np.load(fit["probabilities"])
        right[fit["run_id"]] = stored["probabilities"].argmax(1) == stored["labels"]
    (pair,) = verdict["pairs"]
    best, other = right[pair["vs"]], right[pair["run"]]
    assert (pair["b"], pair["c"]) == (int((best & ~other).sum()), int((other & ~best).sum()))
    if len(verdict["tied"]) == 2:  # tied: the faster deployed model is recommended
        fastest = min(fits, key=lambda fit: fit["ms"])["run_id"]
        assert verdict["recommended"] == fastest and "fastest deployed" in verdict["because"]
    # a budget nothing meets: no verdict, in one line, the table still printed
    code, out, err = run_main(
        ["compare", "1", "2", "--deploy", "tflite-float16", "--budget-mb", "0.000001"], capsys
    )
    assert code == 0, err
    assert "no verdict: it needs two or more runs whose deployed models fit the budget" in out


def test_the_api_deploys_and_applies_the_budget(tiny_registry, tiny_images):
    summary = zoo.run(["tiny"], data=tiny_images, epochs=3, deploy="tflite-float16")
    (result,) = summary.results
    stored = get_run(result.run_id)
    figures = result.metrics["deploy"]["tflite-float16"]
    assert figures == stored.metrics["deploy"]["tflite-float16"]
    assert figures["test_images"] == 15 and figures["latency"]["1_thread"]["calls"] == 50
    assert Path(result.artifacts["deploy_tflite-float16"]).is_file()
    (fit,) = summary.budget.fits  # no budget: every measured model fits
    assert (fit.run_id, fit.target) == (result.run_id, "tflite-float16")
    # A budget below the measured latency leaves it out, and says why; the export is reused.
    tight = figures["latency"]["1_thread"]["median_ms"] / 2
    again = zoo.run(
        ["tiny"], data=tiny_images, epochs=3, deploy=["tflite-float16"], budget_ms=tight
    )
    (other,) = again.results
    assert other.run_id != result.run_id and again.budget.fits == []
    ((run_id, target, why),) = again.budget.left_out
    assert (run_id, target) == (other.run_id, "tflite-float16") and " ms > " in why
    assert zoo.run(["tiny"], data=tiny_images, epochs=1).__class__.__name__ == "RunSummary"


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"deploy": "tflite-int4"}, "unknown deploy target 'tflite-int4'"),
        ({"budget_ms": 5}, "--budget-ms is a budget for the deployed model"),
        ({"deploy": "tflite-int8", "budget_mb": 0}, "--budget-mb must be a positive number"),
    ],
)
def test_the_api_refuses_bad_deploy_input_before_training(
    tiny_registry, tiny_images, keywords, message
):
    with pytest.raises(UsageError, match=message):
        zoo.run(["tiny"], data=tiny_images, epochs=1, **keywords)
    from zoo.runs.store import list_runs

    assert list_runs() == []  # nothing trained


def test_a_combined_selection_is_refused_by_the_api(
    tmp_path, tiny_savedmodel, tiny_images, monkeypatch
):
    from conftest import export_tiny_savedmodel, registry_text

    other = export_tiny_savedmodel(tmp_path / "wide", seed=1)
    registry = tmp_path / "two.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)) + registry_text(str(other), name="wide")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    with pytest.raises(
        UsageError, match="tiny\\+wide trains one head .* no single model to deploy"
    ):
        zoo.run(["tiny+wide"], data=tiny_images, epochs=1, deploy="tflite-int8")


@pytest.mark.parametrize(
    "name, home",
    [(name, "home [1] *?{a,b}") for name in TARGETS] + [("openvino-fp32", "home a,b")],
)
def test_targets_export_under_a_home_named_like_a_pattern(
    tiny_registry, tiny_images, tmp_path, monkeypatch, name, home
):
    """TensorFlow's SavedModel reader and the TFLite converter glob the path they are given;
    OpenVINO reads a comma in it as a list of files."""
    target = _target(name)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / home))
    (result,) = zoo.run(["tiny"], data=tiny_images, epochs=3).results
    figures = deploy_runs([get_run(result.run_id)], [target])[result.run_id][name]
    assert "error" not in figures, figures.get("error")
    assert figures["test_images"] == 15 and figures["size_bytes"] > 0


@pytest.mark.parametrize("name", TARGETS)
def test_the_test_pass_at_the_targets_batch_equals_one_image_a_call(tiny_run, name):
    from zoo.reporting import Reporter
    from zoo.runs.deploy import _test_pass, exported

    target = _target(name)
    shipped, _ = exported(tiny_run, target)
    passes = {}
    for batch in sorted({1, target.test_batch}):
        workers = [target.predictor(shipped, 1) for _ in range(2)]
        passes[batch] = _test_pass(tiny_run, workers, Reporter(), name, batch)
    one, batched = passes[1], passes[target.test_batch]
    assert one[0].shape == (15, 3) and np.array_equal(one[1], batched[1])
    assert np.array_equal(one[0], batched[0])  # the very same probabilities
