"""Hardening (issue 21, stores and caches): each red-team case reproduced, with zoo's answer.

Tests are named after the issue's items; docs/errors.md lists what the user sees.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_FEATURES,
    besides_near_copies,
    export_tiny_savedmodel,
    registry_text,
    write_image_folders,
)
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
    assert [run.backbone for run in runs] == ["tiny"]
    assert get_run(1).metrics["accuracy"] == 0.5
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
    row = {**record().to_row(zoo_home), "owner": "x"}  # a record has no such field to give
    with closing(store.connect()) as connection, pytest.raises(ValueError, match="unknown col"):
        store._insert(connection, row)


# --- item 5: one refused record does not block the rest -------------------------------------------


@pytest.mark.parametrize("first", ["{}", json.dumps({"backbone": None})])
def test_item_5_a_refused_pending_record_does_not_block_later_ones(zoo_home, first):
    folder = pending_folder(zoo_home)
    (folder / "a.json").write_text(first)
    valid_pending(zoo_home, "b.json", backbone="later")
    with pytest.warns(UserWarning, match="a.json is not a run record zoo wrote"):
        runs = list_runs()
    assert [run.backbone for run in runs] == ["later"]
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


# --- items 6, 7, 10: the feature cache --------------------------------------------------------------


def run_tiny(
    data: Path, capsys, name: str = "tiny", *extra: str, engine: str = "tensorflow"
) -> tuple[int, str, str]:
    args = ["run", name, "--data", str(data), "--epochs", "1", "--engine", engine]
    return cli([*args, *extra], capsys)


def shards_of(zoo_home: Path, backbone: str) -> list[Path]:
    return sorted(
        shard
        for folder in (zoo_home / "features").glob(f"{backbone}-*")
        for shard in folder.glob("shard-*.npz")
    )


def warnings_in(err: str) -> list[str]:
    return besides_near_copies([line for line in err.splitlines() if line.startswith("warning:")])


@pytest.fixture
def two_tiny_backbones(tmp_path, tiny_savedmodel, monkeypatch) -> Path:
    """tiny and tiny2: the same graph and width, other weights."""
    other = export_tiny_savedmodel(tmp_path / "tiny2", seed=1)
    path = tmp_path / "registry.toml"
    path.write_text(registry_text(str(tiny_savedmodel)) + registry_text(str(other), name="tiny2"))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def test_item_6_another_backbones_shard_is_set_aside(
    two_tiny_backbones, tiny_images, zoo_home, capsys
):
    assert run_tiny(tiny_images, capsys)[0] == 0
    assert run_tiny(tiny_images, capsys, "tiny2")[0] == 0
    (mine,), (theirs,) = shards_of(zoo_home, "tiny"), shards_of(zoo_home, "tiny2")
    shutil.copy(theirs, mine)  # same width, same digests: only the key tells them apart
    code, _, err = run_tiny(tiny_images, capsys)
    assert code == 0, err
    (line,) = warnings_in(err)
    assert "written for features tiny2-" in line and "computed again" in line
    assert list_runs(backbone="tiny")[0].metrics["computed_features"] == 45
    code, _, err = run_tiny(tiny_images, capsys)
    assert code == 0 and warnings_in(err) == []
    assert list_runs(backbone="tiny")[0].metrics["computed_features"] == 0


def test_item_7_a_shard_holding_nan_is_set_aside(tiny_registry, tiny_images, zoo_home, capsys):
    assert run_tiny(tiny_images, capsys)[0] == 0
    (shard,) = shards_of(zoo_home, "tiny")
    with np.load(shard) as stored:
        parts = dict(stored)
    parts["features"][3, 1] = np.nan
    np.savez(shard, **parts)
    code, _, err = run_tiny(tiny_images, capsys)
    assert code == 0, err
    (line,) = warnings_in(err)
    assert "non-finite" in line
    (latest, _) = list_runs()
    assert latest.metrics["computed_features"] == 45
    assert np.isfinite(latest.history["loss"]).all()


def test_item_7_a_backbone_giving_nan_fails_its_row_naming_the_engine(
    tiny_registry, tiny_images, zoo_home, capsys, monkeypatch
):
    from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine

    real = TensorFlowEngine.__call__

    def poisoned(self, pixels):
        features = real(self, pixels)
        features[0, 0] = np.nan
        return features

    monkeypatch.setattr(TensorFlowEngine, "__call__", poisoned)
    code, _, err = run_tiny(tiny_images, capsys)
    assert code == 1 and "Traceback" not in err
    (stored,) = list_runs()
    assert stored.status == "failed"
    assert "tensorflow" in stored.reason and "non-finite features" in stored.reason
    assert shards_of(zoo_home, "tiny") == []


def test_item_10_a_wrong_feature_dim_leaves_the_valid_cache_alone(
    tmp_path, tiny_registry, tiny_images, zoo_home, capsys
):
    assert run_tiny(tiny_images, capsys)[0] == 0
    shards = shards_of(zoo_home, "tiny")
    good = tiny_registry.read_text()
    tiny_registry.write_text(good.replace(f"feature_dim = {TINY_FEATURES}", "feature_dim = 5"))
    code, _, err = run_tiny(tiny_images, capsys)
    assert code == 1
    assert list_runs()[0].reason == (
        f"tiny: the registry declares feature_dim = 5, but the model gives {TINY_FEATURES} "
        f"features; set feature_dim = {TINY_FEATURES} in its registry entry"
    )
    assert shards_of(zoo_home, "tiny") == shards and warnings_in(err) == []
    tiny_registry.write_text(good)
    assert run_tiny(tiny_images, capsys)[0] == 0
    assert list_runs()[0].metrics["computed_features"] == 0


PLUGIN_WITH_A_WRONG_WIDTH = """
import zoo

@zoo.hookimpl
def register_backbones(register):
    register(zoo.Backbone(name="tiny", handle={handle!r}, input_size=(32, 32),
                          input_range=(0.0, 1.0), feature_dim={width}))
"""


def test_item_10_a_wrong_feature_dim_in_plugin_code_says_plugin_code(
    tmp_path, tiny_savedmodel, tiny_images, zoo_home, capsys, monkeypatch
):
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "empty.toml"))
    (tmp_path / "empty.toml").write_text("")
    for width in (TINY_FEATURES, 5):
        plugin = tmp_path / f"width{width}.py"
        plugin.write_text(
            PLUGIN_WITH_A_WRONG_WIDTH.format(handle=str(tiny_savedmodel), width=width)
        )
        monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
        run_tiny(tiny_images, capsys)
    shards = shards_of(zoo_home, "tiny")
    wrong, right = list_runs()
    assert right.status == "ok" and len(shards) == 1
    assert wrong.reason == (
        f"tiny: plugin 'width5''s code declares feature_dim = 5, but the model gives "
        f"{TINY_FEATURES} features; set feature_dim = {TINY_FEATURES} in the plugin code"
    )
    code, out, _ = cli(["pull", "tiny", "--json"], capsys)
    assert "plugin code" in json.loads(out)[0]["reason"]


# --- item 8: a damaged OpenVINO IR ------------------------------------------------------------------


def truncate_bin(ir: Path) -> None:
    weights = ir / "model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def garble_xml(ir: Path) -> None:
    graph = ir / "model.xml"
    graph.write_text(graph.read_text()[:200] + "<<garbled")


@pytest.mark.parametrize("damage", [truncate_bin, garble_xml])
def test_item_8_a_damaged_openvino_ir_is_converted_again(
    tiny_registry, tiny_images, zoo_home, capsys, damage
):
    from zoo.extraction.engines.openvino_engine import ir_root

    assert run_tiny(tiny_images, capsys, engine="openvino")[0] == 0
    (ir,) = ir_root().iterdir()
    damage(ir)
    shutil.rmtree(zoo_home / "features")  # so the engine must load the IR
    code, _, err = run_tiny(tiny_images, capsys, engine="openvino")
    assert code == 0 and warnings_in(err) == [], err
    latest = list_runs()[0]
    assert latest.metrics["engine"].startswith("openvino ")
    assert latest.metrics["computed_features"] == 45
    assert [p.name for p in ir_root().iterdir()] == [ir.name]  # no .failed note, no leftovers
    code, out, _ = cli(["show", "tiny", "--json"], capsys)
    assert json.loads(out)["engine"] == "openvino fp32"


def test_item_8_a_fresh_ir_that_fails_to_compile_is_remembered_naming_the_file(
    tiny_registry, tiny_images, zoo_home, capsys, monkeypatch
):
    from zoo.extraction.engines import openvino_engine

    def refuse(self):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\nno kernel")

    monkeypatch.setattr(openvino_engine.OpenVinoEngine, "_compile", refuse)
    code, _, err = run_tiny(tiny_images, capsys, engine="openvino")
    assert code == 0
    (line,) = warnings_in(err)
    (ir,) = [p for p in openvino_engine.ir_root().iterdir() if p.is_dir()]
    assert f"could not compile tiny from {ir / 'model.xml'} (RuntimeError: no kernel)" in line
    assert ir.with_name(ir.name + ".failed").is_file()


# --- item 9: a changed converter is rebuilt ---------------------------------------------------------

BUILDER = """
import shutil
import zoo

def build_savedmodel(folder):
    shutil.copytree({source!r}, folder, dirs_exist_ok=True)

@zoo.hookimpl
def register_backbones(register):
    register(zoo.Backbone(name="built", handle="zoo:built", input_size=(32, 32),
                          input_range=(0.0, 1.0), feature_dim=8,
                          build_savedmodel=build_savedmodel{extra}))
"""


def weights(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((folder / "variables").glob("variables.*")))


def test_item_9_a_changed_build_function_or_build_version_rebuilds(
    tmp_path, tiny_savedmodel, zoo_home, capsys, monkeypatch
):
    other = export_tiny_savedmodel(tmp_path / "other-weights", seed=1)
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "empty.toml"))
    built = zoo_home / "converted" / "built"

    def pull(version: str, source: Path, extra: str = "") -> None:
        plugin = tmp_path / version / "builder.py"  # one plugin, edited between pulls
        plugin.parent.mkdir()
        plugin.write_text(BUILDER.format(source=str(source), extra=extra))
        monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
        code, out, err = cli(["pull", "built", "--json"], capsys)
        assert code == 0 and json.loads(out)[0]["ready"], err

    pull("v1", tiny_savedmodel)
    assert weights(built) == weights(tiny_savedmodel)
    pull("v2", other)  # the build function's source changed: built again
    assert weights(built) == weights(other)
    stamp = (built / ".zoo-build").stat()
    pull("v2-again", other)  # the same source in another file: nothing to rebuild
    assert (built / ".zoo-build").stat().st_mtime_ns == stamp.st_mtime_ns
    pull("v3", tiny_savedmodel, extra=', build_version="3"')
    assert weights(built) == weights(tiny_savedmodel)
    assert (built / ".zoo-build").read_text() == "build_version 3"
    assert [p.name for p in built.parent.iterdir()] == ["built"]  # no stale copy left


# --- issue 20: numbered schema migrations -----------------------------------------------------------

# The runs table as zoo created it before its migrations were numbered (user_version 0).
UNNUMBERED_SCHEMA = store.SCHEMA.replace(
    "data_fingerprint TEXT,", "data_fingerprint TEXT,\n    data TEXT,"
)


@pytest.mark.parametrize("schema", [UNNUMBERED_SCHEMA, store.SCHEMA], ids=["data", "first"])
def test_a_store_made_before_numbered_migrations_is_read_and_migrated(zoo_home, schema):
    zoo_home.mkdir(parents=True)
    row = record().to_row(zoo_home)
    with closing(sqlite3.connect(zoo_home / "runs.sqlite")) as connection, connection:
        connection.execute(schema)
        columns = [c for c in row if c in store._columns(connection)]
        marks = ", ".join("?" for _ in columns)
        connection.execute(
            f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks})", [row[c] for c in columns]
        )
    (old,) = list_runs()
    assert old.backbone == "tiny" and old.metrics["accuracy"] == 0.5
    assert save_run(record(data="/photos/food")) == 2
    assert list_runs(data="food")[0].id == 2
    with closing(sqlite3.connect(zoo_home / "runs.sqlite")) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION


def test_a_store_of_a_newer_schema_is_listed_but_not_written(zoo_home):
    save_run(record())
    with closing(sqlite3.connect(zoo_home / "runs.sqlite")) as connection:
        connection.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    valid_pending(zoo_home, "later.json")
    assert len(list_runs()) == 1  # read as it is; the pending record waits for a newer zoo
    assert (zoo_home / store.PENDING_FOLDER / "later.json").is_file()
    with pytest.raises(StoreError, match=f"newer zoo \\(schema {store.SCHEMA_VERSION + 1};"):
        save_run(record())


def test_a_table_zoo_did_not_make_is_not_called_a_newer_zoo(zoo_home):
    zoo_home.mkdir(parents=True)
    with closing(sqlite3.connect(zoo_home / "runs.sqlite")) as connection:
        connection.execute(store.SCHEMA.replace("reason TEXT", "reason TEXT, owner TEXT NOT NULL"))
    with pytest.raises(StoreError, match="not the one this zoo writes") as raised:
        save_run(record())
    assert "newer zoo" not in str(raised.value)


def test_item_9_pull_rebuild_builds_again_what_zoo_cannot_see_changed(
    tmp_path, tiny_savedmodel, zoo_home, capsys, monkeypatch
):
    source = tmp_path / "weights"  # what the build reads: replaced in place, source unchanged
    shutil.copytree(tiny_savedmodel, source)
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "empty.toml"))
    plugin = tmp_path / "builder.py"
    plugin.write_text(BUILDER.format(source=str(source), extra=""))
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    built = zoo_home / "converted" / "built"
    assert cli(["pull", "built"], capsys)[0] == 0
    shutil.rmtree(source)
    export_tiny_savedmodel(source, seed=1)
    assert cli(["pull", "built"], capsys)[0] == 0
    assert weights(built) == weights(tiny_savedmodel)  # no change zoo can see
    code, out, err = cli(["pull", "built", "--rebuild", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["location"] == str(built), err
    assert weights(built) == weights(source)


def test_a_record_set_aside_is_one_warning_line_on_the_command_line(zoo_home, tmp_path):
    import os
    import subprocess
    import sys

    save_run(record())
    (pending_folder(zoo_home) / "odd.json").write_text("[]")
    environment = {**os.environ, "ZOO_HOME": str(zoo_home)}
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "runs", "--json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "odd.json" in lines[0], lines
