"""The typed run record: what the store and every writer and reader agree on. The JSON of
`zoo runs --json` and `zoo compare --json` is pinned to a file written before the record
existed (tests/data/runs_json_golden.json), so its shape cannot drift."""

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_main

GOLDEN = Path(__file__).parent / "data" / "runs_json_golden.json"
OLD_TABLE = (
    "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
    "backbone TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, "
    "settings TEXT NOT NULL, data_fingerprint TEXT, metrics TEXT NOT NULL, "
    "history TEXT NOT NULL, artifacts TEXT NOT NULL, versions TEXT NOT NULL)"
)
OLD_COLUMNS = (
    "created_at, backbone, mode, status, reason, settings, data_fingerprint, metrics, history, "
    "artifacts, versions"
)


def _row(backbone, status="ok", accuracy=0.5, artifacts=None, **extra):
    metrics = {"accuracy": accuracy, "epochs_run": 3, "classes": ["a", "b"], "engine": "tf"}
    return (
        "2026-11-01T10:00:00",
        backbone,
        "feature-extraction",
        status,
        None if status == "ok" else "offline",
        json.dumps({"epochs": 3, "lr": 0.003, "seed": 42, "tuned": extra.get("tuned")}),
        "abcd1234abcd1234",
        json.dumps(metrics if status == "ok" else {"accuracy": None}),
        json.dumps({"loss": [0.9, 0.5]}),
        json.dumps(artifacts or {}),
        json.dumps({"zoo": "0.1"}),
    )


@pytest.fixture
def older_store(zoo_home):
    """A store of every shape zoo has read: rows from before the data column (one with a home
    path, one with an absolute path from before paths were relative, a failure), a damaged row,
    then (after zoo migrates it) rows with the data column."""
    zoo_home.mkdir(parents=True)
    old = sqlite3.connect(zoo_home / "runs.sqlite")
    old.execute(OLD_TABLE)
    rows = [
        _row("resnet50v2", artifacts={"head": "$ZOO_HOME/runs/r1/head.npz", "run_folder": "x"}),
        _row("mobilenet_v2", accuracy=0.7, artifacts={"head": "/elsewhere/head.npz"}),
        _row("scratch_cnn", status="failed"),
        _row("efficientnet_b0"),
    ]
    marks = ", ".join("?" * len(rows[0]))
    old.executemany(f"INSERT INTO runs ({OLD_COLUMNS}) VALUES ({marks})", rows)
    old.execute("UPDATE runs SET metrics = '{not json' WHERE id = 4")
    old.commit()
    old.close()
    connection = sqlite3.connect(zoo_home / "runs.sqlite")
    connection.execute("ALTER TABLE runs ADD COLUMN data TEXT")
    connection.execute("PRAGMA user_version = 2")
    connection.execute(
        f"INSERT INTO runs ({OLD_COLUMNS}, data) VALUES ({marks}, ?)",
        (*_row("efficientnet_lite0", accuracy=0.9, tuned={"learning_rate": 0.01}), "/photos/food"),
    )
    connection.commit()
    connection.close()
    return zoo_home


def _outputs(capsys, home) -> dict:
    """What the listing commands print, with this test's home written as <HOME>."""
    outputs = {}
    for name, args in {
        "runs": ["runs", "--json"],
        "runs_ok": ["runs", "--json", "--status", "ok"],
        "runs_damaged": ["runs", "--json", "--status", "damaged"],
        "compare": ["compare", "1", "2", "5", "--json"],
        "csv": ["runs", "--csv"],
    }.items():
        code, out, _ = run_main(args, capsys)
        text = out.replace(str(home), "<HOME>")
        outputs[name] = {"code": code, "out": text if name == "csv" else json.loads(text)}
    return outputs


def test_the_json_of_runs_and_compare_is_unchanged(older_store, capsys):
    outputs = _outputs(capsys, older_store)
    assert outputs == json.loads(GOLDEN.read_text())
    # Key order too: scripts that print the JSON as it comes see the same text.
    assert json.dumps(outputs) == json.dumps(json.loads(GOLDEN.read_text()))
