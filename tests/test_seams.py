"""Defects a review of zoo's seams found (issue 20), each reproduced, and the seams that fix them."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import tempfile
from pathlib import Path

import pytest
from conftest import TINY_FEATURES, registry_text, write_image_folders
from test_bad_input import cli
from test_hardening import record, run_cli
from test_plugins import write_plugin

import zoo
from zoo.analysis.record import RunRecord
from zoo.runs import store
from zoo.runs.store import get_run, list_runs, save_run


def test_debug_shows_where_a_failing_backbone_failed(
    tmp_path, tiny_savedmodel, tiny_images, capsys, monkeypatch
):
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)).replace(
            f"feature_dim = {TINY_FEATURES}", "feature_dim = 5"
        )
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    code, _, err = run_cli(tiny_images, capsys)
    assert code == 1 and "Traceback" not in err and "tiny failed:" in err
    code, _, err = cli(
        ["--debug", "run", "tiny", "--data", str(tiny_images), "--epochs", "1"], capsys
    )
    assert code == 1
    assert "Traceback (most recent call last)" in err and "feature_dim = 5" in err
    assert "tiny failed:" in err  # the one-line summary still follows


def test_runs_lists_damaged_rows_by_status(capsys):
    for _ in range(3):
        save_run(record())
    with sqlite3.connect(store.store_path()) as connection:
        connection.execute("UPDATE runs SET history = '[' WHERE id = 2")
    code, out, err = cli(["runs", "--status", "damaged", "--json"], capsys)
    assert code == 0, err
    assert [run["id"] for run in json.loads(out)] == [2]
    code, out, err = cli(["runs", "--status", "ok", "--json", "--last", "1"], capsys)
    assert code == 0, err
    assert [run["id"] for run in json.loads(out)] == [3]
    assert [r.id for r in list_runs(1, status="ok", data=None)] == [3]
    assert [r.id for r in list_runs(5, status="ok")] == [3, 1]  # the damaged one is not ok


def test_an_ensemble_records_its_data_and_trackers_see_it(
    tiny_registry, tiny_images, tmp_path, capsys, monkeypatch
):
    seen = tmp_path / "seen.txt"
    tracker = write_plugin(
        tmp_path,
        "tracker",
        f"""
        import zoo

        @zoo.hookimpl
        def run_finished(run):
            with open({str(seen)!r}, "a") as out:
                out.write(f"{{run['id']}} {{run['mode']}}\\n")
        """,
    )
    monkeypatch.setenv("ZOO_PLUGINS", str(tracker))
    members = [
        zoo.run(["tiny"], data=tiny_images, epochs=1, seed=seed).results[0] for seed in (1, 2)
    ]
    code, _, err = cli(["ensemble", *(str(m.run_id) for m in members)], capsys)
    assert code == 0, err
    assert seen.read_text().splitlines() == [
        "1 feature-extraction",
        "2 feature-extraction",
        "3 ensemble",
    ]
    assert get_run(3).data == str(tiny_images)
    code, out, err = cli(["runs", "--data", tiny_images.name, "--json"], capsys)
    assert code == 0, err
    assert [run["id"] for run in json.loads(out)] == [3, 2, 1]


def test_export_works_under_a_home_named_like_a_pattern(
    tiny_registry, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home [1] *?{a,b}"))
    data = write_image_folders(tmp_path / "data", {"train": 10, "test": 5})
    code, _, err = run_cli(data, capsys)
    assert code == 0, err
    out = tmp_path / "lite"
    code, stdout, err = cli(
        ["export", "1", "--format", "tflite", "--out", str(out), "--json"], capsys
    )
    assert code == 0, err
    facts = json.loads(stdout)
    assert facts["test_images_checked"] == 15 and facts["top1_agreement"] >= 0.99


def _archive(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=".")
    return buffer.getvalue()


def test_ray_workers_leave_no_unpacked_copy_behind(
    tiny_registry, tiny_savedmodel, tmp_path, monkeypatch
):
    """A restarted actor builds its worker again: it must not leave another copy behind."""
    from zoo.catalog.plugins import load_catalog
    from zoo.extraction.cluster import FeatureWorker

    node_temp = tmp_path / "node-tmp"
    node_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(node_temp))
    backbone = load_catalog().get("tiny")
    archive = _archive(tiny_savedmodel)
    first = FeatureWorker(backbone, archive, "tensorflow", "fp32")
    again = FeatureWorker(backbone, archive, "tensorflow", "fp32")  # the same actor, restarted
    assert list(node_temp.iterdir()) == []  # each unpacked its copy, started, removed it
    assert first.identity()[0] == again.identity()[0] == "tensorflow"


def _measured(run_id: int, backbone: str, engine: str, speed: float | None) -> RunRecord:
    return RunRecord(
        id=run_id,
        backbone=backbone,
        mode="feature-extraction",
        status="ok",
        metrics={"engine": engine, "images_per_second": speed},
    )


def test_a_cached_run_borrows_the_speed_of_its_own_engine_and_precision():
    from zoo.runs.speeds import measured_speeds
    from zoo.runs.speeds import speed_of as _speed

    runs = [
        _measured(1, "tiny", "openvino 2026.4.1 fp32", 900.0),
        _measured(2, "tiny", "tensorflow 2.20.0 fp32", 300.0),
        _measured(3, "tiny", "openvino 2026.4.1 bf16", 1500.0),
        _measured(4, "wide", "openvino 2026.4.1 fp32", 100.0),
    ]
    speeds = measured_speeds(runs)
    cached = _measured(9, "tiny", "openvino 2026.5.0 fp32", None)  # a newer OpenVINO
    assert _speed(cached, speeds) == (900.0, 1)
    assert _speed(_measured(9, "tiny", "tensorflow 2.20.0 fp32", None), speeds) == (300.0, 2)
    assert _speed(_measured(9, "tiny", "openvino 2026.4.1 bf16", None), speeds) == (1500.0, 3)
    assert _speed(_measured(9, "tiny", "tensorflow 2.20.0 bf16", None), speeds) is None


@pytest.mark.parametrize(
    "command",
    ["list", "show", "plugins", "pull", "run", "runs", "compare", "report", "tensorboard"]
    + ["predict", "ensemble", "export"],
)
def test_help_texts_lose_nothing_to_markup(command, capsys, monkeypatch):
    """Typer reads help as Rich markup: `[default: x]` or `zoo[ray]` vanished from it."""
    monkeypatch.setenv("COLUMNS", "300")
    code, out, _ = cli([command, "--help"], capsys)
    assert code == 0
    text = " ".join(out.replace("│", " ").split())  # Rich wraps and boxes the help panel
    assert " ." not in text and " )" not in text and "()" not in text
    if command == "run":
        assert "Learning rate (default: 3e-3 for a head" in text
        assert "TensorBoard root (default: ZOO_HOME/tensorboard)." in text
        assert "(needs zoo[ray])" in text and "epochs of stage 2 (default: --epochs)" in text
        assert "Folder of train/ [val/] [test/], or of class folders" in text


def test_settings_check_values_only_and_preflight_checks_this_machine(monkeypatch):
    """Making or copying settings touches nothing; preflight answers what the machine lacks."""
    import dataclasses
    import importlib.util

    from zoo.catalog.plugins import load_plugins
    from zoo.errors import UsageError
    from zoo.extraction.engines import load_engines
    from zoo.runs import runner
    from zoo.runs.settings import RunSettings

    def no_store(run_id):
        raise AssertionError("settings read the run store")

    monkeypatch.setattr(runner, "get_run", no_store)
    settings = RunSettings(mode="fine-tune", engine="onnx", head_from=999, ray="auto")
    dataclasses.replace(settings, epochs=2)
    with pytest.raises(UsageError, match="--epochs must be between"):
        RunSettings(epochs=0)
    engines = load_engines(load_plugins())
    with pytest.raises(UsageError, match="unknown engine 'onnx'"):
        runner.preflight(settings, engines)
    monkeypatch.undo()
    settings = dataclasses.replace(settings, engine="auto")
    with pytest.raises(UsageError, match="no run with id 999"):
        runner.preflight(settings, engines)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "ray" else find_spec(name)
    )
    with pytest.raises(UsageError, match="--ray needs Ray"):
        runner.preflight(dataclasses.replace(settings, head_from=None), engines)
