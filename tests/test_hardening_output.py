"""Hardening (issue 21, output and odd input): each red-team case, reproduced, with zoo's answer.

Numbered as in the issue; docs/errors.md lists the new messages with their exit codes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import registry_text, write_image_folders
from test_bad_input import cli, one_line
from test_hardening import record

import zoo
from zoo.analysis.record import RunRecord
from zoo.runs.store import get_run, list_runs, save_run

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # every control character but newline


def two_class_images(root: Path, names: tuple[str | bytes, str | bytes]) -> Path:
    """train/ and test/ with two colour classes (4 and 2 images each), renamed to `names`."""
    data = write_image_folders(root, {"train": 4, "test": 2})
    for split in ("train", "test"):
        shutil.rmtree(data / split / "blue")
        for colour, name in zip(("red", "green"), names):
            target = name if isinstance(name, bytes) else os.fsencode(name)
            os.rename(
                os.fsencode(data / split / colour), os.path.join(os.fsencode(data / split), target)
            )
    return data


# --- 2. CSV formula injection -------------------------------------------------------------------


def test_2_csv_cells_never_start_a_formula(capsys):
    save_run(
        record(
            data="=cmd|'calc'!A0",
            backbone="+tiny",
            status="failed",
            reason="@SUM(A1)",
            created_at="\t2026-01-01",
        )
    )
    save_run(record(data="-2+3", reason="\rx"))
    code, out, err = cli(["runs", "--csv"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    cells = [cell for row in rows for cell in row.values()]
    assert {"'=cmd|'calc'!A0", "'+tiny", "'@SUM(A1)", "'-2+3"} <= set(cells)
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert rows[0]["test_accuracy"] == "0.5"  # numbers stay numbers


# --- 3. terminal escapes ------------------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b[31mRED\x1b[0m"
OSC8 = "\x1b]8;;http:evil\x1b\\click\x1b]8;;\x1b\\"


def test_3_no_control_characters_reach_the_terminal(tmp_path, tiny_savedmodel, capsys, monkeypatch):
    registry = tmp_path / "registry.toml"
    text = registry_text(str(tiny_savedmodel), description="ESC]0;title BEL", paper="pESC[31m")
    registry.write_text(text.replace("ESC", "\\u001b").replace("BEL", "\\u0007"))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    # Class folders with control characters are refused at scan time (item 4), in escaped words.
    hostile = two_class_images(tmp_path / "hostile", (HOSTILE, OSC8))
    code, out, err = cli(["run", "tiny", "--data", str(hostile), "--epochs", "1"], capsys)
    assert code == 2 and "control character" in err and not CONTROL.search(out + err), err
    data = two_class_images(tmp_path / "data", ("red", "green"))
    result = zoo.run(["tiny"], data=data, epochs=1).results[0]
    assert result.ok, result.reason
    image = tmp_path / f"{HOSTILE}.png"
    shutil.copy(next((data / "test" / "red").iterdir()), image)
    save_run(record(status="failed", reason=f"ValueError: {HOSTILE}", backbone=OSC8))
    for args in (
        ["list"],
        ["show", "tiny"],
        ["predict", str(image), "--run", "1"],
        ["runs"],
        ["compare", "1", "2"],
        ["runs", "--csv"],
        ["runs", "--json"],
    ):
        code, out, err = cli(args, capsys)
        assert code == 0, err
        assert not CONTROL.search(out + err), (args, out + err)
    assert "\\x1b[31mRED" in out or "\\u001b[31mRED" in out


# --- 12. mathtext in class names ----------------------------------------------------------------

MATH_CLASSES = ["$\\undefinedcmd{x}$", "cost $5 or $6"]


def math_record(**changes) -> RunRecord:
    metrics = {
        "accuracy": 0.5,
        "classes": MATH_CLASSES,
        "confusion_matrix": [[1, 1], [1, 1]],
        "per_class_accuracy": dict.fromkeys(MATH_CLASSES, 0.5),
    }
    return record(
        metrics=metrics,
        history={"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]},
        backbone="$\\frac{a}$",
        **changes,
    )


def test_12_class_names_with_dollars_draw_in_reports(tmp_path, capsys):
    save_run(math_record())
    save_run(math_record())
    code, out, err = cli(["report", "1", "--out", str(tmp_path / "one")], capsys)
    assert code == 0, err
    assert (tmp_path / "one" / "confusion_matrix.png").is_file()
    code, out, err = cli(["report", "--compare", "1", "2", "--out", str(tmp_path / "two")], capsys)
    assert code == 0, err
    assert list((tmp_path / "two").glob("*.html"))


# --- 13. names that are not UTF-8 ---------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="bytes file names are a Linux case")
def test_13_file_and_class_names_that_are_not_utf8_run(tiny_registry, tmp_path, capsys):
    data = two_class_images(tmp_path / "data", ("red", b"gr\xffeen"))
    red = os.fsencode(data / "train" / "red")
    shutil.copy(os.path.join(red, b"red_0.png"), os.path.join(red, b"bad_\xff\xfe.png"))
    code, out, err = cli(["run", "tiny", "--data", str(data), "--epochs", "1"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    run = list_runs()[0]
    assert run.status == "ok" and len(run.metrics["classes"]) == 2
    code, out, err = cli(["runs"], capsys)
    assert code == 0 and not CONTROL.search(out), err


# --- 14. what an ensemble run cannot do ---------------------------------------------------------


def ensemble_record() -> RunRecord:
    return record(
        backbone="tiny+tiny",
        mode="ensemble",
        settings={"members": [1, 2], "combine": "mean of test probabilities"},
        history={},
    )


@pytest.mark.parametrize("command", [["export", "3"], ["report", "3"]])
def test_14_export_and_report_of_an_ensemble_say_what_it_is(command, capsys):
    save_run(record())
    save_run(record())
    save_run(ensemble_record())
    code, _, err = cli(command, capsys)
    line = one_line(err)
    assert code == 2 and "ensemble" in line and "run 3" in line, err


# --- 15. damaged .npz artifacts -----------------------------------------------------------------


def stored_with_probabilities(tmp_path: Path, index: int, content: bytes | None) -> int:
    folder = tmp_path / f"run{index}"
    folder.mkdir()
    path = folder / "test_probabilities.npz"
    if content is None:
        np.savez(path, probabilities=np.full((2, 2), 0.5, np.float32), labels=np.array([0, 1]))
    else:
        path.write_bytes(content)
    head = folder / "head.npz"
    head.write_bytes(b"" if content == b"" else path.read_bytes())
    artifacts = {"run_folder": str(folder), "test_probabilities": str(path), "head": str(head)}
    return save_run(record(artifacts=artifacts))


@pytest.mark.parametrize("content", [b"", b"garbage that is not a zip", b"PK\x03\x04broken"])
def test_15_a_damaged_probabilities_file_is_named_in_one_line(tmp_path, content, capsys):
    good = stored_with_probabilities(tmp_path, 1, None)
    bad = stored_with_probabilities(tmp_path, 2, content)
    code, _, err = cli(["ensemble", str(good), str(bad)], capsys)
    line = one_line(err)
    assert code == 2 and "test_probabilities.npz" in line and "aborted" not in line, err
    assert len(list_runs()) == 2


def test_15_a_zero_byte_head_is_refused_before_tensorflow(
    tiny_registry, tiny_images, tmp_path, capsys
):
    source = stored_with_probabilities(tmp_path, 1, b"")
    code, _, err = cli(
        ["run", "tiny", "--data", str(tiny_images), "--mode", "fine-tune"]
        + ["--head-from", str(source), "--epochs", "1"],
        capsys,
    )
    line = one_line(err)
    assert code == 2 and "head.npz" in line, err
    assert len(list_runs()) == 1


# --- 17. --data stored as an absolute path ------------------------------------------------------


def test_17_data_is_stored_absolute_and_a_missing_folder_names_data(
    tiny_registry, tmp_path, capsys, monkeypatch
):
    write_image_folders(tmp_path / "work" / "data", {"train": 3, "test": 2})
    monkeypatch.chdir(tmp_path / "work")
    code, _, err = cli(["run", "tiny", "--data", "data", "--epochs", "1"], capsys)
    assert code == 0, err
    run = get_run(1)
    assert Path(run.data).is_absolute()
    assert all(Path(folder).is_absolute() for folder in run.settings["data"].values())
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(tmp_path / "work" / "data")
    code, _, err = cli(["export", "1", "--format", "tflite"], capsys)
    line = one_line(err)
    assert code == 2 and str(tmp_path / "work" / "data") in line and "--data" in line, err


# --- 18. a plugin that prints; NaN in --json ----------------------------------------------------

CHATTY_PLUGIN = """
import zoo
print("hello from the plugin")

@zoo.hookimpl
def register_backbones(register):
    print("registering")
"""


def test_18_a_printing_plugin_leaves_json_and_csv_clean(tmp_path, capsys, monkeypatch):
    plugin = tmp_path / "chatty.py"
    plugin.write_text(CHATTY_PLUGIN)
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    save_run(record(metrics={"accuracy": float("nan"), "classes": ["a", "b"]}))
    for args in (["list", "--json"], ["runs", "--json"], ["plugins", "--json"]):
        code, out, err = cli(args, capsys)
        assert code == 0, err
        json.loads(out)  # nothing else on stdout
        assert "NaN" not in out
    assert json.loads(cli(["runs", "--json"], capsys)[1])[0]["metrics"]["accuracy"] is None
    code, out, err = cli(["runs", "--csv"], capsys)
    assert code == 0 and out.startswith("id,"), out


# --- 19. one class ------------------------------------------------------------------------------


def test_19_a_one_class_data_set_is_refused_in_one_line(tiny_registry, tmp_path, capsys):
    data = write_image_folders(tmp_path / "data", {"train": 3, "test": 2})
    for split in ("train", "test"):
        shutil.rmtree(data / split / "blue")
        shutil.rmtree(data / split / "green")
    code, _, err = cli(["run", "tiny", "--data", str(data), "--epochs", "1"], capsys)
    line = one_line(err)
    assert code == 2 and "one class" in line, err
    assert list_runs() == []


# --- 20. raw library output ---------------------------------------------------------------------

LOG_ONE_RUN = """
import sys
from zoo_plugins.mlflow_tracker import log_run
metrics = {"accuracy": 0.5, "classes": ["a", "b"], "confusion_matrix": [[1, 0], [0, 1]]}
run = {"id": int(sys.argv[1]), "status": "ok", "backbone": "tiny", "mode": "feature-extraction",
       "settings": {"epochs": 1}, "history": {"loss": [1.0]}, "metrics": metrics,
       "versions": {"zoo": "0"}, "artifacts": {}, "data": "/d", "data_fingerprint": "ab"}
print(log_run(run))
"""


def test_20_three_runs_logged_to_mlflow_at_once_all_arrive_quietly_under_zoo_home(
    tmp_path, zoo_home
):
    pytest.importorskip("mlflow")
    import subprocess

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LOG_ONE_RUN, str(index)],
            cwd=elsewhere,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in (1, 2, 3)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert all(len(output.strip().splitlines()) == 1 for output in outputs), outputs
    assert list(elsewhere.iterdir()) == []  # no mlflow.db or mlruns/ where zoo was started
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{zoo_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("zoo")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["zoo.run_id"] for r in runs) == ["1", "2", "3"]
    assert experiment.artifact_location.startswith((zoo_home / "mlruns").as_uri())


def test_20_warnings_under_json_are_one_line_each(tiny_registry, tmp_path, capsys):
    data = write_image_folders(tmp_path / "data", {"train": 3, "test": 2})
    (data / "train" / "red" / "notes.txt").write_text("not an image")
    code, out, err = cli(["run", "tiny", "--data", str(data), "--epochs", "1", "--json"], capsys)
    assert code == 0, err
    json.loads(out)
    assert err.splitlines() == ["warning: 1 unreadable file skipped: notes.txt"], err


def test_20_progress_leaves_no_blank_lines_in_a_log(tiny_registry, tiny_images, capsys):
    code, _, err = cli(
        ["run", "tiny", "--data", str(tiny_images), "--epochs", "1", "--augment", "4"], capsys
    )
    assert code == 0, err
    assert "" not in err.splitlines(), repr(err)


def test_20_long_class_names_draw_without_a_layout_warning(tmp_path):
    import warnings

    from zoo.runs.report import write_report

    classes = [f"class name {i} " * 12 for i in range(2)]
    metrics = {"accuracy": 0.5, "classes": classes, "confusion_matrix": [[1, 1], [1, 1]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(record(metrics=metrics, id=1), tmp_path / "report")


def test_20_a_tflite_export_prints_no_library_notes(tiny_registry, tiny_images, tmp_path, capfd):
    from zoo.runs.export import export_run

    result = zoo.run(["tiny"], data=tiny_images, epochs=1).results[0]
    capfd.readouterr()
    export_run(get_run(result.run_id), tmp_path / "lite", "tflite", "int8")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured.err


def test_20_tensorboard_on_a_busy_port_is_one_line(zoo_home, capsys):
    import socket

    (zoo_home / "tensorboard").mkdir(parents=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = cli(["tensorboard", "--port", str(port)], capsys)
    assert code == 2 and f"port {port}" in one_line(err) and "--port" in err


# --- 21. small ones -----------------------------------------------------------------------------


def test_21_unfreeze_on_a_joined_run_names_the_option_given(
    tmp_path, tiny_savedmodel, capsys, monkeypatch
):
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)) + registry_text(str(tiny_savedmodel), name="tiny2")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    code, _, err = cli(["run", "tiny+tiny2", "--unfreeze", "1"], capsys)
    line = one_line(err)
    assert code == 2 and line.endswith("drop --unfreeze") and "--mode" not in line, err


def test_21_a_bracketed_ipv6_ray_address_is_read():
    from zoo.extraction.cluster import check_address

    assert check_address("[::1]:6379") == ("::1", 6379)
    assert check_address("10.0.0.5:6379") == ("10.0.0.5", 6379)


def test_21_exported_folders_are_readable_by_others(tiny_registry, tiny_images, tmp_path):
    from zoo.runs.export import export_run

    result = zoo.run(["tiny"], data=tiny_images, epochs=1).results[0]
    out = tmp_path / "served"
    export_run(get_run(result.run_id), out, "savedmodel")
    folders = [out, *(path for path in out.rglob("*") if path.is_dir())]
    assert len(folders) > 2
    assert all(folder.stat().st_mode & 0o755 == 0o755 for folder in folders)


def test_21_a_hook_without_hookimpl_is_named(tmp_path, capsys, monkeypatch):
    plugin = tmp_path / "forgetful.py"
    plugin.write_text("def register_backbones(register):\n    pass\n")
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    code, out, err = cli(["plugins"], capsys)
    assert code == 0 and "forgetful" in out
    (line,) = [line for line in err.splitlines() if "forgetful" in line]
    assert line.startswith("warning:") and "register_backbones without @zoo.hookimpl" in line


def test_21_a_zoo_handle_without_a_builder_says_so(tmp_path):
    from zoo.catalog.plugins import load_catalog
    from zoo.errors import BackboneUnavailable
    from zoo.sources.hub import resolve

    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text("zoo:unbuilt"))
    backbone = load_catalog(registry).get("tiny")
    with pytest.raises(BackboneUnavailable) as refused:
        resolve(backbone)
    assert "build_savedmodel" in str(refused.value) and "network" not in str(refused.value)


def test_21_runs_and_compare_show_the_engine(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    metrics = {"accuracy": 0.5, "classes": ["a", "b"], "engine": "openvino 2026.4.1 fp32"}
    save_run(record(metrics=metrics))
    for args in (["runs"], ["compare", "1"]):
        code, out, err = cli(args, capsys)
        assert code == 0 and "openvino fp32" in out, out
