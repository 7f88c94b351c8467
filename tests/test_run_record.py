"""The typed run record: what the store and every writer and reader agree on. The JSON of
`zoo runs --json` and `zoo compare --json` is pinned to a file written before the record
existed (tests/data/runs_json_golden.json), so its shape cannot drift."""

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_main

from zoo.analysis.record import (
    COLUMNS,
    DAMAGED,
    SCHEMA_VERSION,
    STATUSES,
    WRITTEN_STATUSES,
    RunRecord,
    row_problem,
)
from zoo.runs import store
from zoo.runs.store import get_run, list_runs, save_run, update_run

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


# --- the record and its forms -------------------------------------------------------------------


def _record(**changes) -> RunRecord:
    facts = {
        "backbone": "tiny",
        "mode": "feature-extraction",
        "status": "ok",
        "settings": {"epochs": 2, "preprocessing": {"input_size": [32, 32]}},
        "data": "/photos/food",
        "data_fingerprint": "abcd",
        "metrics": {"accuracy": 0.75, "classes": ["a", "b"], "engine": "tensorflow 2.21 fp32"},
        "history": {"loss": [1.0, 0.5]},
        "versions": {"zoo": "0.1"},
        "created_at": "2026-12-01T10:00:00",
    }
    return RunRecord(**{**facts, **changes})


def test_a_record_comes_back_from_its_row_as_it_went_in(tmp_path):
    home = tmp_path / "home"
    inside, outside = str(home / "runs" / "r1" / "head.npz"), "/elsewhere/head.npz"
    record = _record(artifacts={"head": inside, "other": outside, "error": "disk full"}, id=7)
    row = record.to_row(home)
    assert "id" not in row and set(row) == set(COLUMNS)
    assert json.loads(row["artifacts"])["head"] == "$ZOO_HOME/runs/r1/head.npz"  # relative
    assert json.loads(row["artifacts"])["other"] == outside
    assert row_problem(row) is None  # what the store imports from a pending file
    back = RunRecord.from_row({**row, "id": 7}, home)
    assert back == record
    moved = RunRecord.from_row({**row, "id": 7}, tmp_path / "copy")  # a copied home
    assert moved.artifacts["head"] == str(tmp_path / "copy" / "runs" / "r1" / "head.npz")


def test_a_row_of_the_first_schema_reads_with_no_data_folder(tmp_path):
    row = {key: value for key, value in _record().to_row(tmp_path).items() if key != "data"}
    old = RunRecord.from_row({**row, "id": 1}, tmp_path)
    assert old.data is None and old.data_name is None and old.is_ok


def test_a_cell_that_is_not_a_json_object_marks_the_run_damaged(tmp_path):
    row = {**_record().to_row(tmp_path), "id": 3, "metrics": "{cut", "history": "[1, 2]"}
    damaged = RunRecord.from_row(row, tmp_path)
    assert damaged.status == DAMAGED and not damaged.is_ok
    assert damaged.reason == "its stored metrics, history is not valid; the run cannot be used"
    assert damaged.metrics == {} and damaged.history == {} and damaged.settings["epochs"] == 2


def test_the_json_form_is_the_listing_shape_and_reads_back():
    record = _record(id=4)
    facts = record.to_json()
    assert list(facts) == ["id", *COLUMNS]  # the order `zoo runs --json` has always printed
    assert RunRecord.from_json(facts) == record
    assert json.loads(json.dumps(facts)) == facts  # plain JSON values only


def test_accessors_answer_what_readers_used_to_dig_for(tmp_path):
    record = _record(
        artifacts={"test_probabilities": "/r/p.npz", "run_folder": "/r"},
        metrics={"accuracy": 1, "classes": ["a"], "deploy": {"t": {"accuracy": 0.5}}},
    )
    assert record.accuracy == 1.0 and record.classes == ["a"]
    assert record.probabilities_path == "/r/p.npz" and record.run_folder == Path("/r")
    assert record.preprocessing == {"input_size": [32, 32]} and record.data_name == "food"
    assert record.deployed == {"t": {"accuracy": 0.5}}
    odd = _record(metrics={"accuracy": "high"}, settings={})  # a store zoo did not write
    assert odd.accuracy is None and odd.classes is None and odd.deployed == {}
    assert odd.preprocessing is None and odd.run_folder is None and odd.members == []


def test_the_record_schema_counts_the_store_migrations():
    assert len(store.MIGRATIONS) == SCHEMA_VERSION  # a migration that changes the row: a field


def test_statuses_written_and_read():
    assert set(WRITTEN_STATUSES) < set(STATUSES) and DAMAGED not in WRITTEN_STATUSES


# --- every writer, every reader -----------------------------------------------------------------


def test_a_pending_record_is_stored_as_it_was_kept(zoo_home):
    record = _record(artifacts={"run_folder": str(zoo_home / "runs" / "r1")})
    save_run(_record(backbone="first"))
    kept = store.keep_pending(record)
    assert row_problem(json.loads(kept.read_text())) is None
    (stored, first) = list_runs()  # the next command imports it
    assert not kept.exists() and first.backbone == "first"
    assert stored == RunRecord.from_json({**record.to_json(), "id": 2})


def test_update_run_hands_the_change_a_record(zoo_home):
    run_id = save_run(_record())

    def change(record: RunRecord) -> None:
        assert isinstance(record, RunRecord)
        record.metrics["deploy"] = {"t": {"accuracy": 0.5}}

    after = update_run(run_id, change)
    assert after == get_run(run_id) and get_run(run_id).deployed == {"t": {"accuracy": 0.5}}


def test_the_runner_and_ensemble_write_records_every_reader_takes(
    tiny_registry, tiny_images, capsys
):
    import zoo
    from zoo.cli import tables
    from zoo.runs.artifacts import load_head
    from zoo.runs.comparison import judge
    from zoo.runs.ensemble import ensemble

    results = [
        zoo.run(["tiny"], data=tiny_images, epochs=1, lr=0.05, seed=seed).results[0]
        for seed in (1, 2)
    ]
    assert all(result.ok for result in results), [result.reason for result in results]
    trained = [get_run(result.run_id) for result in results]
    joined = ensemble([record.id for record in trained])
    assert isinstance(joined, RunRecord) and joined == get_run(joined.id)
    assert joined.members == [record.id for record in trained] and joined.data == str(tiny_images)
    for record in trained:
        assert record.is_ok and record.classes == ["blue", "green", "red"]
        assert record.data == str(tiny_images) and record.preprocessing is not None
        assert Path(record.probabilities_path).is_file() and record.run_folder.is_dir()
        assert record.accuracy == results[0 if record is trained[0] else 1].metrics["accuracy"]
        kernel, _ = load_head(record)
        assert kernel.shape[1] == 3
    judgement = judge(trained)
    assert judgement.verdict is not None and set(judgement.names) == {r.id for r in trained}
    records = [*trained, joined]
    assert tables.runs_table(records).row_count == 3
    assert tables.comparison_table([tables.stored_row(r) for r in records]).row_count == 3
    assert "tiny+tiny" in tables.runs_csv(records)
    code, out, _ = run_main(["runs", "--json"], capsys)
    assert code == 0 and json.loads(out) == [r.to_json() for r in reversed(records)]
