"""Hardening (issue 21, stores and caches): each red-team case reproduced, with zoo's answer.

Tests are named after the issue's items; docs/errors.md lists what the user sees.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import warnings
from pathlib import Path

import pytest
from conftest import write_image_folders
from test_bad_input import cli, one_line
from test_hardening import record

from zoo.errors import StoreError, UsageError
from zoo.runs import runner, store
from zoo.runs.export import export_run
from zoo.runs.store import get_run, list_runs, save_run


def pending_folder(zoo_home: Path) -> Path:
    folder = zoo_home / store.PENDING_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def valid_pending(zoo_home: Path, name: str, **changes) -> Path:
    """A pending record exactly as zoo writes one, under `name`."""
    written = store.keep_pending(record(**changes))
    return written.rename(pending_folder(zoo_home) / name)


# --- item 1: SQL through pending runs -----------------------------------------------------------

HOSTILE_KEY = (
    "id, created_at, backbone, mode, status, settings, metrics, history, artifacts, versions) "
    "VALUES (1,'x','HACKED','m','ok','{}','{}','{}','{}','{}') "
    "ON CONFLICT(id) DO UPDATE SET backbone = ?, metrics = '{}' --"
)


def test_item_1_a_pending_record_cannot_write_sql(zoo_home):
    save_run(record())
    hostile = pending_folder(zoo_home) / "evil.json"
    hostile.write_text(json.dumps({HOSTILE_KEY: "HACKED"}))
    with pytest.warns(UserWarning, match="evil.json is not a run record zoo wrote"):
        runs = list_runs()
    assert [run["backbone"] for run in runs] == ["tiny"]
    assert get_run(1)["metrics"]["accuracy"] == 0.5
    assert not hostile.exists() and hostile.with_suffix(".damaged").is_file()


@pytest.mark.parametrize(
    "changes",
    [{"id": 1}, {"metrics": {"nested": "object, not text"}}, {"backbone": ["a", "list"]}],
)
def test_item_1_only_known_columns_and_scalar_values_are_imported(zoo_home, changes):
    save_run(record())
    folder = pending_folder(zoo_home)
    row = json.loads(store.keep_pending(record()).read_text())
    (folder / "odd.json").write_text(json.dumps({**row, **changes}))
    for written in folder.glob("*.json"):
        if written.name != "odd.json":
            written.unlink()
    with pytest.warns(UserWarning, match="odd.json is not a run record"):
        assert len(list_runs()) == 1
    assert (folder / "odd.damaged").is_file()


def test_item_1_insert_refuses_unknown_columns(zoo_home):
    with pytest.raises(ValueError, match="unknown columns"):
        save_run({**record(), "owner": "x"})


# --- item 5: one refused record does not block the rest -------------------------------------------


@pytest.mark.parametrize("first", ["{}", json.dumps({"backbone": None})])
def test_item_5_a_refused_pending_record_does_not_block_later_ones(zoo_home, first):
    folder = pending_folder(zoo_home)
    (folder / "a.json").write_text(first)
    valid_pending(zoo_home, "b.json", backbone="later")
    with pytest.warns(UserWarning, match="a.json is not a run record zoo wrote"):
        runs = list_runs()
    assert [run["backbone"] for run in runs] == ["later"]
    assert sorted(p.name for p in folder.iterdir()) == ["a.damaged"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # set aside once: later commands say nothing
        assert len(list_runs()) == 1


def test_item_5_a_locked_store_still_keeps_every_record_pending(zoo_home, monkeypatch):
    save_run(record())
    valid_pending(zoo_home, "a.json")
    valid_pending(zoo_home, "b.json")
    locker = sqlite3.connect(zoo_home / "runs.sqlite", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(store, "IMPORT_BUSY_TIMEOUT_S", 0.05)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a locked store is no damaged record
            assert len(list_runs()) == 1
    finally:
        locker.rollback()
        locker.close()
    assert sorted(p.name for p in pending_folder(zoo_home).iterdir()) == ["a.json", "b.json"]
    assert len(list_runs()) == 3


# --- item 11: pending JSON that is not an object ----------------------------------------------------


@pytest.mark.parametrize(
    "text", ["[]", "1", '"x"', "null", '{"a": [1]}', "[" * 100_000 + "]" * 100_000]
)
def test_item_11_pending_json_that_is_not_a_record_is_set_aside_once(zoo_home, capsys, text):
    save_run(record())
    pending = pending_folder(zoo_home) / "odd.json"
    pending.write_text(text)
    with pytest.warns(UserWarning, match="odd.json is not a run record zoo wrote"):
        code, out, err = cli(["runs", "--json"], capsys)
    assert code == 0 and "Traceback" not in err
    assert [run["id"] for run in json.loads(out)] == [1]
    assert sorted(p.name for p in pending.parent.iterdir()) == ["odd.damaged"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli(["runs", "--json"], capsys)[0] == 0  # never claimed again
    assert store.referenced_run_folders() == set()


def test_item_11_referenced_run_folders_reads_past_odd_pending_records(zoo_home):
    folder = pending_folder(zoo_home)
    for name, text in (("a", "{}"), ("b", "[" * 100_000 + "]" * 100_000)):
        (folder / f"{name}.json").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.referenced_run_folders() == set()


# --- item 16: a full disk is a full disk ------------------------------------------------------------


def test_item_16_an_io_error_on_a_full_disk_says_the_disk_is_full(zoo_home, monkeypatch):
    zoo_home.mkdir(parents=True)
    full = type("Usage", (), {"free": 4096})()
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: full)
    error = store.describe(sqlite3.OperationalError("disk I/O error"), zoo_home / "runs.sqlite")
    assert "the disk is full" in str(error)
    assert "damaged" not in str(error) and "move it aside" not in str(error)


def test_item_16_an_io_error_with_space_left_still_suggests_damage(zoo_home):
    zoo_home.mkdir(parents=True)
    error = store.describe(sqlite3.OperationalError("disk I/O error"), zoo_home / "runs.sqlite")
    assert "move it aside" in str(error)


def test_item_16_a_pending_record_on_a_full_disk_says_the_disk_is_full(monkeypatch):
    def no_space(record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "keep_pending", no_space)
    backbone = type("Named", (), {"name": "tiny"})()
    with pytest.raises(StoreError) as raised:
        runner._keep_pending(record(), StoreError("runs.sqlite: the disk is full"), backbone)
    assert "the disk is full; free some space" in str(raised.value)
    assert "None" not in str(raised.value)


# --- item 4: control characters in class names -----------------------------------------------------


@pytest.mark.parametrize("bad", ["first\nsecond", "tab\there", "esc\x1b[2J", "line\u2028sep"])
def test_item_4_a_class_name_with_a_control_character_is_refused_at_scan_time(
    tmp_path, tiny_registry, capsys, bad
):
    data = write_image_folders(tmp_path / "data", {"train": 2, "test": 1})
    for split in ("train", "test"):
        (data / split / "red").rename(data / split / bad)
    code, _, err = cli(["run", "tiny", "--data", str(data), "--epochs", "1"], capsys)
    assert code == 2
    line = one_line(err)
    assert repr(bad) in line and str(data / "train") in line and "rename the folder" in line
    assert list_runs() == []


def test_item_4_export_refuses_a_stored_class_name_that_would_shift_labels(zoo_home, tmp_path):
    run_id = save_run(record(metrics={"accuracy": 0.5, "classes": ["first\nsecond", "third"]}))
    with pytest.raises(UsageError, match="labels.txt cannot list one class a line"):
        export_run(get_run(run_id), tmp_path / "out", "savedmodel")
    assert not (tmp_path / "out").exists()
