"""Hardening (issue 15): each case a reliability pass found, reproduced, with zoo's answer.

docs/errors.md lists every case with what the user sees and the exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import unicodedata
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_FEATURES,
    TINY_INPUT,
    besides_near_copies,
    registry_text,
    serving_model,
    write_image_folders,
)
from PIL import Image
from test_bad_input import cli, one_line

from zoo.analysis.record import RunRecord
from zoo.catalog.preprocessing import Preprocessing
from zoo.data.decode import BadImage, load_pixels
from zoo.errors import RegistryError, ZooError
from zoo.runs import store
from zoo.runs.store import get_run, list_runs, save_run


def record(**changes) -> RunRecord:
    """A stored run's record, as the runner writes it (no TensorFlow needed)."""
    facts = {
        "created_at": "2026-01-01T00:00:00",
        "backbone": "tiny",
        "mode": "feature-extraction",
        "status": "ok",
        "reason": None,
        "settings": {"epochs": 1},
        "data_fingerprint": "0123456789abcdef",
        "metrics": {"accuracy": 0.5, "classes": ["a", "b"], "confusion_matrix": [[1, 1], [1, 1]]},
        "history": {"loss": [1.0]},
        "artifacts": {},
        "versions": {"zoo": "0.1.0"},
        **changes,
    }
    return RunRecord(**facts)


def run_cli(data: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return cli(
        ["run", "tiny", "--data", str(data), "--epochs", "2", "--lr", "0.05", *extra], capsys
    )


def warnings_in(err: str) -> list[str]:
    return besides_near_copies([line for line in err.splitlines() if line.startswith("warning:")])


# --- 1. the store write at the end of a run ----------------------------------------------------


def test_a_run_finished_while_the_store_is_locked_is_kept_and_stored_by_the_next_command(
    tiny_registry, tiny_images, zoo_home, capsys, monkeypatch
):
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.5, raising=False)
    zoo_home.mkdir(parents=True)
    locker = sqlite3.connect(zoo_home / "runs.sqlite", isolation_level=None)
    locker.execute("PRAGMA journal_mode=WAL")
    locker.execute(store.SCHEMA)
    locker.execute("BEGIN IMMEDIATE")  # another process's write transaction, held open
    try:
        code, out, err = run_cli(tiny_images, capsys)
    finally:
        locker.rollback()
        locker.close()
    assert code == 1 and "Traceback" not in err
    (line,) = warnings_in(err)
    assert "locked by another process" in line and "waited 0.5 s" in line
    assert "the next zoo command stores it" in line
    assert len(list((zoo_home / "pending-runs").glob("*.json"))) == 1
    (stored,) = list_runs()  # any later command imports the pending record first
    assert stored.status == "ok" and stored.metrics["accuracy"] > 0.5
    assert Path(serving_model(stored), "saved_model.pb").is_file()
    assert list((zoo_home / "pending-runs").glob("*.json")) == []


def test_a_store_from_a_newer_zoo_is_named_as_such(zoo_home):
    zoo_home.mkdir(parents=True)
    with sqlite3.connect(zoo_home / "runs.sqlite") as connection:
        connection.execute(
            store.SCHEMA.replace(
                "versions TEXT NOT NULL", "versions TEXT NOT NULL, owner TEXT NOT NULL"
            )
        )
        connection.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    with pytest.raises(ZooError, match="newer zoo") as raised:
        save_run(record())
    assert "damaged" not in str(raised.value)


def test_a_full_disk_is_named_as_such(zoo_home, monkeypatch):
    connect = sqlite3.connect

    def small_disk(*args, **kwargs):  # SQLite's own SQLITE_FULL, as on a full disk
        connection = connect(*args, **kwargs)
        connection.execute("PRAGMA max_page_count = 8")
        return connection

    monkeypatch.setattr(sqlite3, "connect", small_disk)
    with pytest.raises(ZooError, match="disk is full") as raised:
        save_run(record(metrics={"blob": "x" * 200_000}))
    assert "damaged" not in str(raised.value)


def test_a_read_only_store_is_named_as_such(zoo_home, monkeypatch):
    save_run(record())
    connect = sqlite3.connect
    monkeypatch.setattr(  # root ignores file modes: open the store read-only instead
        sqlite3, "connect", lambda path, **kw: connect(f"file:{path}?mode=ro", uri=True, **kw)
    )
    with pytest.raises(ZooError, match="not writable") as raised:
        save_run(record())
    assert "damaged" not in str(raised.value)


# --- 2. caches that poisoned every later run ---------------------------------------------------


def test_a_feature_shard_of_the_wrong_width_is_set_aside_and_rebuilt(
    tiny_registry, tiny_images, zoo_home, capsys
):
    assert run_cli(tiny_images, capsys, "--json")[0] == 0
    (shard,) = (zoo_home / "features").rglob("shard-*.npz")
    with np.load(shard) as stored:
        digests = stored["digests"]
    np.savez(
        shard, digests=digests, features=np.zeros((len(digests), TINY_FEATURES - 1), np.float32)
    )
    code, _, err = run_cli(tiny_images, capsys)
    assert code == 0, err
    (line,) = warnings_in(err)
    assert "feature cache" in line and f"{TINY_FEATURES - 1} wide, expected {TINY_FEATURES}" in line
    assert list_runs()[0].metrics["computed_features"] == len(digests)  # rebuilt
    code, _, err = run_cli(tiny_images, capsys)
    assert code == 0 and warnings_in(err) == []
    assert list_runs()[0].metrics["computed_features"] == 0


def test_a_serving_template_missing_its_graph_is_rebuilt(
    tiny_registry, tiny_images, zoo_home, capsys
):
    assert run_cli(tiny_images, capsys, "--json")[0] == 0
    serving_model(list_runs()[0])  # its first use exports the template
    (template,) = (zoo_home / "serving").iterdir()
    (template / "saved_model.pb").unlink()
    code, _, err = run_cli(tiny_images, capsys)
    assert code == 0, err
    newest = list_runs()[0]
    image = tiny_images / "test" / "red" / "red_0.png"
    # the newest run's model is written on this first use, from the template built afresh
    code, out, err = cli(["predict", str(image), "--run", str(newest.id)], capsys)
    assert code == 0 and out.startswith(str(image)), err
    (line,) = warnings_in(err)
    assert "serving template" in line and "saved_model.pb" in line
    assert Path(newest.artifacts["model"], "saved_model.pb").is_file()


# --- 3. paths are not patterns; outside values are not markup ---------------------------------


def test_a_home_and_classes_named_like_patterns_and_markup_work_end_to_end(
    tiny_registry, tmp_path, capsys, monkeypatch
):
    home = tmp_path / "home [1] *?{a,b} [red]"
    monkeypatch.setenv("ZOO_HOME", str(home))
    data = write_image_folders(tmp_path / "data", {"train": 10, "test": 5})
    for split in ("train", "test"):
        (data / split / "red").rename(data / split / "[red]alert")
        (data / split / "blue").rename(data / split / "[blue]")
    code, out, err = run_cli(data, capsys)
    assert code == 0, err
    assert "failed" not in out
    image = data / "test" / "[red]alert" / "red_0.png"
    code, out, err = cli(["predict", str(image), "--run", "1", "--top-k", "3"], capsys)
    assert code == 0, err
    assert out.startswith(f"{image}: ") and "[red]alert" in out and "[blue]" in out


def test_outside_values_with_markup_print_as_they_are(
    tmp_path, tiny_savedmodel, capsys, monkeypatch
):
    model = tmp_path / "[bold]models[/]"
    shutil.copytree(tiny_savedmodel, model)
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(model), description="[/]closing [red]alert", family="[i]fam[/i]")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    code, out, err = cli(["list"], capsys)  # its columns are for choosing: no handle there
    assert code == 0 and err == "" and "[i]fam[/i]" in out, err
    code, out, err = cli(["show", "tiny"], capsys)
    assert code == 0 and err == "", err
    assert "[bold]models[/]" in out.replace("\n", "") and "[i]fam[/i]" in out
    assert "[/]closing [red]alert" in out
    save_run(record(status="failed", reason="ValueError: [/red] and [bold]x"))
    for args in (["runs"], ["compare", "1"]):
        code, out, err = cli(args, capsys)
        assert code == 0 and err == "", err
        assert "[/red]" in out


# --- 4. registry text never leaves its folder --------------------------------------------------


@pytest.mark.parametrize("handle", ["zoo:../../../../tmp/x", "zoo:/tmp/x", "zoo:", "zoo:a/b"])
def test_a_zoo_handle_that_is_not_a_name_is_refused(handle):
    from zoo.catalog.registry import parse_registry

    fields = {
        "plugin": "resnet",
        "handle": handle,
        "input_size": [32, 32],
        "input_range": [0.0, 1.0],
        "feature_dim": 8,
    }
    with pytest.raises(RegistryError, match="field 'handle'.*zoo:NAME"):
        parse_registry({"backbones": {"tiny": fields}}, Path("r.toml"))


def test_no_built_folder_leaves_the_converted_folder(zoo_home):
    from zoo.errors import BackboneUnavailable
    from zoo.sources.hub import built_dir

    assert built_dir("zoo:efficientnet_lite0") == zoo_home / "converted" / "efficientnet_lite0"
    for handle in ("zoo:../../../../tmp/x", "zoo:/tmp/x", "zoo:.."):
        with pytest.raises(BackboneUnavailable, match="outside"):
            built_dir(handle)


# --- 6. small files, huge memory ---------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height gray pixels: all zero rows, compressed (tiny file)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    compressor, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(min(height, 64)):  # only the first rows: Pillow must refuse before reading on
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )
    return path


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    path = png_header_only(tmp_path / "huge.png", 20_000, 20_000)  # 400 M pixels, 25 KB
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        with pytest.raises(BadImage, match="over zoo's limit of 250 megapixels"):
            load_pixels(path, Preprocessing((TINY_INPUT, TINY_INPUT)))
    assert [str(w.message) for w in raised] == []  # no raw DecompressionBombWarning


def peak_mb(code: str) -> int:
    """Run `code` in a fresh process; its own peak resident memory (VmHWM) in MB."""
    probe = (
        "\nimport re\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code + probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def big_images(tmp_path_factory) -> Path:
    """A 6000x6000 16-bit gray PNG and a 6000x6000 RGBA PNG, each a small file."""
    folder = tmp_path_factory.mktemp("big")
    code = (
        "import numpy as np; from PIL import Image\n"
        "Image.fromarray(np.full((6000, 6000), 32896, np.uint16)).save('sixteen.png')\n"
        "Image.new('RGBA', (6000, 6000), (220, 30, 30, 128)).save('rgba.png')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=folder, check=True, timeout=120)
    return folder


@pytest.mark.parametrize("name, colour", [("sixteen.png", 128), ("rgba.png", (238, 142, 142))])
def test_big_images_decode_without_whole_copies(big_images, name, colour):
    # Decoded, they are 72 MB (16-bit) and 144 MB (RGBA; shrinking it premultiplies its alpha
    # once, another 144 MB). Whole float and composited copies peaked at 991 and 853 MB here.
    code = (
        "from pathlib import Path; import numpy as np; from zoo.data.decode import load_pixels\n"
        "from zoo.catalog.preprocessing import Preprocessing\n"
        f"pixels = load_pixels(Path({str(big_images / name)!r}), Preprocessing((32, 32)))\n"
        f"assert np.allclose(pixels.reshape(-1, 3).mean(axis=0), {colour!r}, atol=3), pixels.mean()\n"
    )
    assert peak_mb(code) < 400


def test_files_are_hashed_in_chunks(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(400 * 2**20)  # sparse: 400 MB of zeros, no disk used
    code = f"from pathlib import Path; from zoo.data.folders import file_digest\nfile_digest(Path({str(big)!r}))"
    assert peak_mb(code) < 200


def test_a_file_that_is_not_an_image_is_skipped_by_its_header(tmp_path, monkeypatch):
    from zoo.data.folders import load_dataset
    from zoo.reporting import Reporter
    from zoo.runs import runner

    data = write_image_folders(tmp_path / "data", {"train": 1, "test": 1})
    (data / "train" / "red" / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(4096))
    hashed = []
    digest = runner.file_digest
    monkeypatch.setattr(
        runner, "file_digest", lambda path: hashed.append(path.name) or digest(path)
    )
    dataset = load_dataset(data / "train", data / "test")
    digests = runner._digests([*dataset.train.paths, *dataset.test.paths], Reporter())
    assert "video.mp4" not in hashed and len(hashed) == 6
    assert digests[data / "train" / "red" / "video.mp4"].startswith("not-an-image")


# --- 7. zoo report ------------------------------------------------------------------------------


def test_report_on_a_failed_run_is_one_line_exit_2(capsys):
    save_run(record(status="failed", reason="BackboneUnavailable: gone", metrics={}))
    code, _, err = cli(["report", "1"], capsys)
    assert code == 2 and "run 1 failed (BackboneUnavailable: gone)" in one_line(err)


def test_report_on_many_classes_draws_top_confusions(tmp_path):
    from zoo.runs.report import write_report

    classes = [f"class {i}" for i in range(150)]
    rng = np.random.default_rng(0)
    matrix = np.diag(np.full(150, 20)) + rng.integers(0, 2, size=(150, 150))
    stored = record(
        id=7, metrics={"accuracy": 0.9, "classes": classes, "confusion_matrix": matrix.tolist()}
    )
    written = write_report(stored, tmp_path)
    assert sorted(p.name for p in written) == [
        "confusion_matrix.png",
        "curves.png",
        "top_confusions.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


# --- 8. usage errors found late ----------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_is_one_line_exit_2(tiny_registry, tiny_images, capsys, seed):
    code, _, err = run_cli(tiny_images, capsys, "--seed", seed)
    assert code == 2 and "--seed must be between 0 and 4294967295" in one_line(err)
    assert list_runs() == []


@pytest.mark.parametrize("which", ["missing", "failed"])
def test_head_from_a_missing_or_failed_run_is_one_line_exit_2(
    tiny_registry, tiny_images, capsys, which
):
    if which == "failed":
        save_run(record(status="failed", reason="boom"))
    code, _, err = run_cli(tiny_images, capsys, "--mode", "fine-tune", "--head-from", "1")
    assert code == 2
    line = one_line(err)
    assert ("no run with id 1" if which == "missing" else "--head-from 1: run 1 failed") in line
    assert len(list_runs()) == (1 if which == "failed" else 0)


def test_logdir_that_is_a_file_is_one_line_exit_2(tiny_registry, tiny_images, tmp_path, capsys):
    (tmp_path / "logs").write_text("")
    code, _, err = run_cli(tiny_images, capsys, "--logdir", str(tmp_path / "logs"))
    assert code == 2 and "--logdir" in one_line(err) and "is a file" in one_line(err)
    assert list_runs() == []


@pytest.mark.parametrize(
    "args, expected",
    [
        (["compare", str(2**70)], "no run with id"),
        (["report", str(2**63)], "no run with id"),
        (["predict", "x.png", "--run", str(2**64)], "no run with id"),
        (["runs", "--limit", str(2**70)], "--last must be between 1 and"),
        (["runs", "--limit", "0"], "--last must be between 1 and"),
    ],
)
def test_numbers_out_of_range_are_one_line_exit_2(capsys, args, expected):
    code, _, err = cli(args, capsys)
    assert code == 2 and expected in one_line(err)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("input_range", [float("-inf"), float("inf")], "finite"),
        ("input_range", [0.0, float("nan")], "finite"),
        ("params_m", float("nan"), "finite"),
        ("imagenet_top1", float("inf"), "finite"),
        ("input_size", [2**40, 2**40], "at most"),
        ("feature_dim", 2**70, "at most"),
    ],
)
def test_registry_numbers_out_of_range_are_refused(field, value, expected):
    from zoo.catalog.registry import parse_registry

    fields = {
        "plugin": "resnet",
        "handle": "/m",
        "input_size": [32, 32],
        "input_range": [0.0, 1.0],
        "feature_dim": 8,
        field: value,
    }
    with pytest.raises(RegistryError, match=f"field '{field}'.*{expected}"):
        parse_registry({"backbones": {"tiny": fields}}, Path("r.toml"))


def test_a_wrong_feature_dim_says_what_was_declared_and_what_the_model_gives(
    tmp_path, tiny_savedmodel, tiny_images, capsys, monkeypatch
):
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)).replace(
            f"feature_dim = {TINY_FEATURES}", "feature_dim = 5"
        )
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    code, _, err = run_cli(tiny_images, capsys, "--json")
    assert code == 1
    (stored,) = list_runs()
    assert stored.reason == (
        f"tiny: the registry declares feature_dim = 5, but the model gives {TINY_FEATURES} "
        f"features; set feature_dim = {TINY_FEATURES} in its registry entry"
    )


# --- 9. everything else --------------------------------------------------------------------------


def test_a_torn_store_page_is_one_line_exit_1(zoo_home, capsys):
    for _ in range(20):
        save_run(record(metrics={"blob": "x" * 3000}))
    path = zoo_home / "runs.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = os.urandom(200)  # a page in the middle, torn
    path.write_bytes(bytes(data))
    code, _, err = cli(["runs"], capsys)
    assert code == 1
    line = one_line(err)
    assert "runs.sqlite" in line and "damaged" in line and "move it aside" in line


def test_a_bad_json_cell_marks_its_run_damaged_and_the_rest_still_list(capsys):
    for _ in range(3):
        save_run(record())
    with sqlite3.connect(store.store_path()) as connection:
        connection.execute("UPDATE runs SET metrics = '{\"accuracy\": 0.' WHERE id = 2")
    code, out, err = cli(["runs", "--json"], capsys)
    assert code == 0, err
    runs = {run["id"]: run for run in json.loads(out)}
    assert [runs[i]["status"] for i in (1, 2, 3)] == ["ok", "damaged", "ok"]
    assert "metrics" in runs[2]["reason"]
    code, _, err = cli(["report", "2"], capsys)
    assert code == 2 and "run 2 failed" not in one_line(err) and "damaged" in one_line(err)


@pytest.fixture
def stored_run(tiny_registry, tiny_images, capsys) -> dict:
    code, _, err = run_cli(tiny_images, capsys, "--json")
    assert code == 0, err
    serving_model(list_runs()[0])  # its model, written on first use
    return list_runs()[0]


def test_a_model_folder_missing_its_variables_is_one_line_in_predict(
    stored_run, tiny_images, capsys
):
    shutil.rmtree(Path(stored_run.artifacts["model"]) / "variables")
    image = tiny_images / "test" / "red" / "red_0.png"
    code, _, err = cli(["predict", str(image), "--run", str(stored_run.id)], capsys)
    assert code == 1
    line = one_line(err)
    assert "saved model" in line and "cannot be loaded" in line


def test_a_copied_home_uses_its_own_files(
    stored_run, zoo_home, tmp_path, tiny_images, capsys, monkeypatch
):
    with sqlite3.connect(zoo_home / "runs.sqlite") as connection:
        (artifacts,) = connection.execute("SELECT artifacts FROM runs").fetchone()
    assert str(zoo_home) not in artifacts  # stored relative to the home
    copy = tmp_path / "copied-home"
    shutil.copytree(zoo_home, copy)
    shutil.rmtree(zoo_home)
    monkeypatch.setenv("ZOO_HOME", str(copy))
    moved = get_run(stored_run.id)
    assert Path(moved.artifacts["model"]).parent.parent == copy / "runs"
    image = tiny_images / "test" / "red" / "red_0.png"
    code, out, err = cli(["predict", str(image), "--run", str(moved.id)], capsys)
    assert code == 0, err


def test_old_absolute_artifact_paths_are_read_as_they_are(zoo_home):
    elsewhere = "/somewhere/else/runs/x/model"
    with store.connect() as connection:
        connection.execute(
            "INSERT INTO runs (created_at, backbone, mode, status, settings, metrics, history, "
            "artifacts, versions) VALUES ('t', 'b', 'm', 'ok', '{}', '{}', '{}', ?, '{}')",
            (json.dumps({"model": elsewhere}),),
        )
    assert get_run(1).artifacts["model"] == elsewhere


def test_a_run_folder_left_by_a_killed_run_is_cleaned_by_the_next_run(
    tiny_registry, tiny_images, zoo_home, capsys
):
    orphan = zoo_home / "runs" / "20260101-000000-tiny-dead00"
    (orphan / "checkpoint").mkdir(parents=True)
    (orphan / "checkpoint" / "best.index").write_bytes(b"x")
    (orphan / ".running").write_text(f"{socket.gethostname()} 999999999")  # no such process
    legacy = zoo_home / "runs" / "20250101-000000-tiny-old000"  # killed before markers existed
    legacy.mkdir()
    live = zoo_home / "runs" / "20260101-000001-tiny-live00"  # another process, still running
    live.mkdir()
    (live / ".running").write_text(f"{socket.gethostname()} {os.getpid()}")
    code, _, err = run_cli(tiny_images, capsys, "--json")
    assert code == 0, err
    assert not orphan.exists() and not legacy.exists() and live.is_dir()
    (stored,) = list_runs()
    assert Path(stored.artifacts["run_folder"]).is_dir()
    assert not (Path(stored.artifacts["run_folder"]) / ".running").exists()


def test_folders_of_stored_and_pending_runs_are_never_taken_for_orphans(zoo_home, monkeypatch):
    from zoo.runs.runner import _remove_orphan_run_folders

    runs = zoo_home / "runs"
    stored, pending, orphan = (runs / name for name in ("20260101-a-1", "20260101-b-2", "x-3"))
    for folder in (stored, pending, orphan):
        folder.mkdir(parents=True)
    save_run(record(artifacts={"run_folder": str(stored)}))
    store.keep_pending(record(artifacts={"run_folder": str(pending)}))
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    locker = sqlite3.connect(zoo_home / "runs.sqlite", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # the pending record cannot be imported: it stays pending
    try:
        _remove_orphan_run_folders()
    finally:
        locker.rollback()
        locker.close()
    assert stored.is_dir() and pending.is_dir() and not orphan.exists()


def test_class_names_that_differ_only_in_unicode_normalisation_match(tmp_path):
    from zoo.data.folders import load_dataset

    data = tmp_path / "data"
    for split, form in (("train", "NFC"), ("test", "NFD")):
        for name in (unicodedata.normalize(form, "café"), "tea"):
            (data / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(data / split / name / "x.png")
    dataset = load_dataset(data / "train", data / "test")
    assert dataset.classes == ["café", "tea"] and len(dataset.test) == 2


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.4])
def test_ctrl_c_in_the_first_fraction_of_a_second_is_one_line_exit_130(tmp_path, delay):
    # As the `zoo` console script does. The clock starts once Python is up; the first few
    # milliseconds after that, before zoo.launch has run, are still Python's own (docs/errors.md).
    launcher = (
        "import sys; print('up', flush=True)\n"
        "from zoo.launch import console_main; sys.exit(console_main())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ZOO_HOME": str(tmp_path / "home")},
    )
    assert process.stdout.readline() == "up\n"
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    if process.returncode != 0:  # it may have finished before the signal came
        assert process.returncode == 130, err
        assert err.strip().splitlines() == [
            "error: interrupted; runs and caches already stored are intact"
        ]
