"""`zoo runs` a person can use: data folder and fingerprint, filters, --json, --csv; and the
commands around tracking (`zoo plugins`, `zoo tensorboard`). The records are written to the
store directly: no training here."""

import csv
import importlib.util
import io
import json
import sqlite3

import pluggy
import pytest
from conftest import run_main

from zoo.analysis.record import RunRecord
from zoo.catalog import hookspecs
from zoo.runs.store import get_run, list_runs, save_run


def record(backbone, data, status="ok", accuracy=0.5, fingerprint="a1b2c3d4e5f60718"):
    return RunRecord(
        created_at="2026-12-01T19:00:00",
        backbone=backbone,
        mode="feature-extraction",
        status=status,
        reason=None if status == "ok" else "offline",
        settings={"epochs": 5, "batch_size": 32, "lr": 0.003, "seed": 42},
        data=data,
        data_fingerprint=fingerprint,
        metrics={"accuracy": accuracy if status == "ok" else None, "epochs_run": 5},
    )


@pytest.fixture
def stored():
    """Five runs: two data folders, two backbones, one failure; ids 1..5."""
    rows = [
        record("resnet50v2", "/photos/food", accuracy=0.81),
        record("efficientnet_lite0", "/photos/food", accuracy=0.77),
        record("resnet50v2", "/photos/birds", accuracy=0.60, fingerprint="ffee0011ffee0011"),
        record("mobilenet_v2", "/photos/food", status="failed"),
        record(
            "efficientnet_lite0", "/photos/birds", accuracy=0.66, fingerprint="ffee0011ffee0011"
        ),
    ]
    return [save_run(row) for row in rows]


def ids(out: str) -> list[int]:
    return [row["id"] for row in json.loads(out)]


def test_filters_pick_runs_newest_first(stored, capsys):
    assert ids(run_main(["runs", "--json"], capsys)[1]) == [5, 4, 3, 2, 1]
    assert ids(run_main(["runs", "--backbone", "resnet50v2", "--json"], capsys)[1]) == [3, 1]
    assert ids(run_main(["runs", "--data", "food", "--json"], capsys)[1]) == [4, 2, 1]
    assert ids(run_main(["runs", "--data", "/photos/birds", "--json"], capsys)[1]) == [5, 3]
    assert ids(run_main(["runs", "--data", "ffee00", "--json"], capsys)[1]) == [5, 3]
    assert ids(run_main(["runs", "--status", "failed", "--json"], capsys)[1]) == [4]
    assert ids(run_main(["runs", "--last", "2", "--json"], capsys)[1]) == [5, 4]
    both = ["runs", "--data", "food", "--status", "ok", "--last", "1", "--json"]
    assert ids(run_main(both, capsys)[1]) == [2]
    # A filter that is right but matches nothing here is an empty answer, not an error.
    code, out, _ = run_main(
        ["runs", "--backbone", "mobilenet_v2", "--status", "ok", "--json"], capsys
    )
    assert code == 0 and json.loads(out) == []


def test_the_table_shows_the_data_folder_beside_its_fingerprint(stored, capsys):
    code, out, _ = run_main(["runs"], capsys)
    assert code == 0
    assert "food a1b2c3d4" in out and "birds ffee0011" in out


def test_csv_is_one_flat_row_a_run(stored, capsys):
    code, out, _ = run_main(["runs", "--csv", "--backbone", "resnet50v2"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["id"] for row in rows] == ["3", "1"]
    assert rows[1]["data"] == "/photos/food" and rows[1]["test_accuracy"] == "0.81"
    assert rows[1]["lr"] == "0.003" and rows[1]["reason"] == ""
    failed = list(
        csv.DictReader(io.StringIO(run_main(["runs", "--csv", "--status", "failed"], capsys)[1]))
    )
    assert failed[0]["test_accuracy"] == "" and failed[0]["reason"] == "offline"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--status", "done"], "--status must be one of ok, failed"),
        (["--last", "0"], "--last must be between 1 and"),
        (["--json", "--csv"], "one of --json and --csv"),
        (["--backbone", "resnet50"], "did you mean resnet50v2"),
        (["--data", "fod"], "did you mean food"),
        (["--data", "cars"], "stored: birds, food"),
        (["--last", "two"], "valid integer"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(stored, capsys, args, says):
    code, out, err = run_main(["runs", *args], capsys)
    assert code == 2 and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_a_store_from_before_the_data_column_gains_it(zoo_home):
    zoo_home.mkdir(parents=True)
    old = sqlite3.connect(zoo_home / "runs.sqlite")
    old.execute(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
        "backbone TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, "
        "settings TEXT NOT NULL, data_fingerprint TEXT, metrics TEXT NOT NULL, "
        "history TEXT NOT NULL, artifacts TEXT NOT NULL, versions TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO runs (created_at, backbone, mode, status, settings, data_fingerprint, "
        "metrics, history, artifacts, versions) VALUES "
        "('2026-11-01T10:00:00', 'resnet50v2', 'feature-extraction', 'ok', '{}', 'abcd', "
        "'{\"accuracy\": 0.7}', '{}', '{}', '{}')"
    )
    old.commit()
    old.close()
    assert get_run(1).data is None  # the old row is intact, its data folder unknown
    new_id = save_run(record("resnet50v2", "/photos/food"))
    assert [run.id for run in list_runs(data="food")] == [new_id]


def load_tracker_module(monkeypatch, mlflow_installed: bool):
    """A fresh copy of the MLflow tracker module, as if MLflow were (not) installed."""
    import zoo_plugins.mlflow_tracker as installed

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (real(name, *a) if mlflow_installed else None) if name == "mlflow" else real(name, *a)
        ),
    )
    spec = importlib.util.spec_from_file_location("probe_mlflow_tracker", installed.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_mlflow_tracker_without_mlflow_implements_no_hook(monkeypatch):
    manager = pluggy.PluginManager("zoo")
    manager.add_hookspecs(hookspecs)
    manager.register(load_tracker_module(monkeypatch, mlflow_installed=False), name="without")
    assert manager.hook.run_finished.get_hookimpls() == []


def test_zoo_plugins_lists_the_trackers(capsys):
    code, out, _ = run_main(["plugins", "--json"], capsys)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["tensorboard_hparams"]["hooks"] == ["run_finished"]
    tracked = importlib.util.find_spec("mlflow")
    expected = ["run_finished", "verdict_reached"] if tracked else []
    assert rows["mlflow_tracker"]["hooks"] == expected


def test_zoo_tensorboard_serves_the_log_root_on_localhost(zoo_home, monkeypatch, capsys):
    program = importlib.import_module(
        "tensorboard.program"
    )  # the module, not tensorboard's lazy alias
    configured = {}

    class FakeBoard:  # stands in for the server only: the wiring is what is under test here
        def configure(self, **flags):
            configured.update(flags)

        def main(self):
            return 0

    code, _, err = run_main(["tensorboard"], capsys)
    assert code == 2 and "no TensorBoard logs" in err and "zoo run" in err
    (zoo_home / "tensorboard").mkdir(parents=True)
    monkeypatch.setattr(program, "TensorBoard", FakeBoard)
    code, _, _ = run_main(["tensorboard", "--port", "6111"], capsys)
    assert code == 0
    assert configured == {
        "logdir": str(zoo_home / "tensorboard"),
        "host": "127.0.0.1",
        "port": 6111,
        "load_fast": "false",
    }
