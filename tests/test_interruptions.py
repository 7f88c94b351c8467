"""Interruptions and faults: Ctrl-C or SIGTERM at any stage loses nothing already stored.

After each interruption the store opens and holds every earlier run, every feature shard on disk
is whole (temp files are never read as shards), and the next run completes, reusing the shards
that were finished.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_FEATURES, registry_text, serving_model

import zoo
import zoo.extraction.extract
from zoo.analysis.record import RunRecord
from zoo.extraction.cache import FeatureCache
from zoo.runs import pipelines, store
from zoo.runs.store import get_run, list_runs, save_run

# tiny_images: 10 train images a class (1 carved out for validation), 5 test images a class.
TRAIN, VALIDATION, TEST = 27, 3, 15
ALL = TRAIN + VALIDATION + TEST
# The tests extract in batches of 16 and write a shard after every batch (set_small_shards).
FIRST_SHARD = 16


def set_small_shards(patch) -> None:
    patch.setattr(pipelines, "INFERENCE_BATCH", FIRST_SHARD)
    patch.setattr(zoo.extraction.extract, "SHARD_SIZE", 1)


def run_tiny(data: Path, names=("tiny",), **settings):
    return zoo.run(list(names), data=data, **{"epochs": 2, "lr": 0.05, **settings})


def store_earlier_run() -> RunRecord:
    """A run from before the interruption, which must come through intact."""
    record = {
        "created_at": "2024-01-01T00:00:00",
        "backbone": "earlier",
        "mode": "feature-extraction",
        "status": "ok",
        "reason": None,
        "settings": {"epochs": 5},
        "data_fingerprint": "0123456789abcdef",
        "metrics": {"accuracy": 0.75},
        "history": {"loss": [1.0, 0.5]},
        "artifacts": {},
        "versions": {"zoo": "0.1.0"},
    }
    return get_run(save_run(RunRecord(**record)))


def assert_store_intact(*expected: RunRecord) -> None:
    with sqlite3.connect(store.store_path()) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert list_runs() == sorted(expected, key=lambda run: -run.id)


def cached_vectors(home: Path) -> int:
    """How many vectors the shards on disk hold; each shard must load whole."""
    total = 0
    for shard in sorted((home / "features").rglob("shard-*.npz")):
        with np.load(shard) as stored:
            assert len(stored["digests"]) == len(stored["features"]) > 0
            total += len(stored["digests"])
    return total


def assert_no_leftovers(home: Path) -> None:
    """No temp file or folder, and no run folder without its stored row."""
    assert [p for p in home.rglob(".tmp-*")] == []
    runs = home / "runs"
    stored = {Path(r.artifacts["run_folder"]) for r in list_runs() if r.artifacts}
    assert set(runs.iterdir() if runs.exists() else []) <= stored


# --- in-process: KeyboardInterrupt raised at chosen moments -----------------------------------


def test_interrupt_after_the_first_shard_keeps_it_for_the_next_run(
    tiny_registry, tiny_images, zoo_home, monkeypatch
):
    earlier = store_earlier_run()
    written = []
    add = FeatureCache.add

    def add_then_interrupt(self, digests, vectors):
        if written:
            raise KeyboardInterrupt  # Ctrl-C while the second batch's features are computed
        add(self, digests, vectors)
        written.append(len(digests))

    with monkeypatch.context() as patch:
        set_small_shards(patch)
        patch.setattr(FeatureCache, "add", add_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_tiny(tiny_images)
    assert written == [FIRST_SHARD] and cached_vectors(zoo_home) == FIRST_SHARD
    assert_store_intact(earlier)
    assert_no_leftovers(zoo_home)

    result = run_tiny(tiny_images).results[0]
    assert result.ok and result.computed_features == ALL - FIRST_SHARD
    assert_store_intact(earlier, get_run(result.run_id))


class _OsInterruptedBeforeRename:
    """The `os` module as zoo.home sees it, except that Ctrl-C lands just before a rename."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(source, destination):
        raise KeyboardInterrupt


def test_interrupt_inside_a_shard_write_leaves_no_shard_and_no_temp_file(
    tiny_registry, tiny_images, zoo_home, monkeypatch
):
    from zoo import home

    with monkeypatch.context() as patch:
        patch.setattr(home, "os", _OsInterruptedBeforeRename())
        with pytest.raises(KeyboardInterrupt):
            run_tiny(tiny_images)
    assert cached_vectors(zoo_home) == 0
    assert_no_leftovers(zoo_home)
    assert list_runs() == []
    assert run_tiny(tiny_images).results[0].computed_features == TRAIN + VALIDATION + TEST


def test_cache_reads_only_whole_shards(tmp_path):
    cache = FeatureCache("tiny-key", root=tmp_path)
    cache.add(["a", "b"], np.ones((2, 4)))
    (whole,) = cache.folder.glob("shard-*.npz")
    # What a writer killed mid-write leaves: a temp file (here even holding a whole shard's
    # bytes), which is never read; and shards damaged by a disk fault, which count as absent.
    other = FeatureCache("other-key", root=tmp_path)
    other.add(["c"], np.zeros((1, 4)))
    (other_shard,) = other.folder.glob("shard-*.npz")
    (cache.folder / f".tmp-shard-{'0' * 32}.npz-k2j4").write_bytes(other_shard.read_bytes())
    (cache.folder / "shard-torn.npz").write_bytes(whole.read_bytes()[:60])
    (cache.folder / "shard-empty.npz").write_bytes(b"")
    (cache.folder / "shard-junk.npz").write_bytes(b"PK\x03\x04" + bytes(100))

    reread = FeatureCache("tiny-key", root=tmp_path)
    assert len(reread) == 2 and "a" in reread and "b" in reread
    assert reread.gather(["b", "a"]).tolist() == [[1.0] * 4] * 2
    assert sorted(p.name for p in cache.folder.glob("shard-*.npz")) == [whole.name]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_serving_template_is_built_afresh(tiny_registry, tiny_images, zoo_home, damage):
    serving_model(run_tiny(tiny_images).results[0])  # its first use exports the template
    (template,) = (zoo_home / "serving").iterdir()
    data = next(template.glob("variables/variables.data-*"))
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:40])
    else:
        data.unlink()
    result = run_tiny(tiny_images).results[0]
    assert result.ok, result.reason
    assert Path(serving_model(result), "variables", "variables.index").is_file()
    assert next(template.glob("variables/variables.data-*")).stat().st_size > 40


def test_a_head_of_the_wrong_shape_is_refused_and_the_template_kept(
    tiny_registry, tiny_images, zoo_home, tmp_path
):
    from zoo.runs.artifacts import save_with_head

    serving_model(run_tiny(tiny_images).results[0])  # its first use exports the template
    (template,) = (zoo_home / "serving").iterdir()
    backbone_id = template.name.rsplit("-3classes-", 1)[0]
    wrong_head = (np.zeros((TINY_FEATURES + 1, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        save_with_head(backbone_id, 3, lambda: pytest.fail("rebuilt"), wrong_head, tmp_path / "m")
    assert template.is_dir()  # a fault in writing the run's model is not damage to the template


def test_interrupt_during_training_keeps_earlier_runs_and_all_features(
    tmp_path, tiny_savedmodel, tiny_images, zoo_home, monkeypatch
):
    registry = tmp_path / "two.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel), name="first")
        + registry_text(str(tiny_savedmodel), name="second")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    earlier = store_earlier_run()
    fit, fits = pipelines.fit, []

    def fit_interrupted_in_second_backbone(*args, on_epoch, **options):
        fits.append(1)

        def epoch_done(epoch, logs):
            on_epoch(epoch, logs)
            if len(fits) == 2:
                raise KeyboardInterrupt  # inside Keras's fit loop, after one epoch's checkpoint

        return fit(*args, on_epoch=epoch_done, **options)

    with monkeypatch.context() as patch:
        patch.setattr(pipelines, "fit", fit_interrupted_in_second_backbone)
        with pytest.raises(KeyboardInterrupt):
            run_tiny(tiny_images, all_backbones=True, names=())
    (first,) = [run for run in list_runs() if run.backbone == "first"]
    assert first.status == "ok"
    assert_store_intact(earlier, first)
    assert_no_leftovers(zoo_home)
    assert cached_vectors(zoo_home) == 2 * (TRAIN + VALIDATION + TEST)

    again = run_tiny(tiny_images, all_backbones=True, names=())
    assert [(r.backbone, r.ok, r.computed_features) for r in again.results] == [
        ("first", True, 0),
        ("second", True, 0),
    ]


class _InterruptedInsert:
    """A store connection where Ctrl-C lands after the INSERT, before the commit."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __getattr__(self, name):
        return getattr(self.connection, name)

    def __enter__(self):
        self.connection.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.connection.__exit__(*exc_info)

    def execute(self, sql, *parameters):
        cursor = self.connection.execute(sql, *parameters)
        if sql.startswith("INSERT"):
            raise KeyboardInterrupt
        return cursor


def test_interrupt_during_the_store_write_leaves_no_row_and_no_orphan_artifacts(
    tiny_registry, tiny_images, zoo_home, monkeypatch, capsys
):
    from zoo.cli import main

    earlier = store_earlier_run()
    connect = store.connect
    with monkeypatch.context() as patch:
        patch.setattr(store, "connect", lambda path=None: _InterruptedInsert(connect(path)))
        with pytest.raises(SystemExit) as exited:
            main(["run", "tiny", "--data", str(tiny_images), "--epochs", "2", "--json"])
    assert exited.value.code == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "error: interrupted; runs and caches already stored are intact\n"
    assert_store_intact(earlier)
    assert_no_leftovers(zoo_home)
    assert not list((zoo_home / "runs").iterdir())  # the model saved for the lost row is gone

    result = run_tiny(tiny_images).results[0]
    assert result.ok and result.computed_features == 0 and result.run_id == earlier.id + 1
    assert_store_intact(earlier, get_run(result.run_id))


# --- real processes: SIGTERM through the CLI, and two runs at once ----------------------------

# Loaded through ZOO_PLUGINS (an ordinary local plugin file), it holds `zoo run` still at one
# stage and leaves a marker file, so that the signal lands exactly there.
PAUSE_PLUGIN = '''
"""Test plugin: pause `zoo run` at stage {stage!r} and say so in {marker}."""
import time
from pathlib import Path

import zoo.extraction.cache
import zoo.extraction.extract
import zoo.runs.pipelines


def pause():
    Path({marker!r}).write_text("paused")
    time.sleep(120)


if not hasattr(zoo.extraction.cache, "paused_by_test"):  # the plugin file may be loaded twice
    zoo.extraction.cache.paused_by_test = True
    zoo.extraction.extract.SHARD_SIZE, zoo.runs.pipelines.INFERENCE_BATCH = 1, {FIRST_SHARD}  # a shard a batch
    add, fit = zoo.extraction.cache.FeatureCache.add, zoo.runs.pipelines.fit

    def add_then_pause(self, digests, vectors):
        add(self, digests, vectors)
        if {stage!r} == "features":
            pause()  # the first shard is on disk; the other batches' are not

    def fit_then_pause(*args, on_epoch=lambda epoch, logs: None, **options):

        def epoch_done(epoch, logs):
            on_epoch(epoch, logs)
            if {stage!r} == "training":
                pause()  # one epoch trained and checkpointed

        return fit(*args, on_epoch=epoch_done, **options)

    zoo.extraction.cache.FeatureCache.add = add_then_pause
    zoo.runs.pipelines.fit = fit_then_pause
'''


def zoo_process(args: list[str], registry: Path, home: Path, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "ZOO_HOME": str(home), "ZOO_REGISTRY": str(registry), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"zoo exited ({process.returncode}) early: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("zoo never reached the pause")
        time.sleep(0.05)


@pytest.mark.parametrize(
    "stage, computed_after", [("features", ALL - FIRST_SHARD), ("training", 0)]
)
def test_sigterm_is_one_line_exit_130_and_the_next_run_reuses_what_finished(
    tiny_registry, tiny_images, zoo_home, tmp_path, stage, computed_after
):
    earlier = store_earlier_run()
    marker = tmp_path / "paused"
    plugin = tmp_path / "pause_here.py"
    plugin.write_text(PAUSE_PLUGIN.format(stage=stage, marker=str(marker), FIRST_SHARD=FIRST_SHARD))
    args = ["run", "tiny", "--data", str(tiny_images), "--epochs", "3", "--json"]
    process = zoo_process(args, tiny_registry, zoo_home, ZOO_PLUGINS=str(plugin))
    wait_for(marker, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)

    assert process.returncode == 130
    assert out == ""
    assert err.strip() == "error: interrupted; runs and caches already stored are intact"
    assert_store_intact(earlier)
    assert_no_leftovers(zoo_home)
    assert not list((zoo_home / "runs").glob("*"))  # the interrupted run's folder is gone

    result = run_tiny(tiny_images).results[0]
    assert result.ok and result.computed_features == computed_after


def test_atomic_dir_yields_to_a_folder_another_process_just_finished(tmp_path, monkeypatch):
    from zoo import home

    final, replace = tmp_path / "template", os.replace

    def another_process_renames_first(source, destination):
        final.mkdir()
        (final / "theirs").write_text("complete")
        replace(source, destination)

    monkeypatch.setattr(home.os, "replace", another_process_renames_first)
    with home.atomic_dir(final) as scratch:
        (scratch / "mine").write_text("complete")
    assert [path.name for path in final.iterdir()] == ["theirs"]
    assert list(tmp_path.iterdir()) == [final]  # our scratch copy is gone


def test_two_runs_at_once_on_one_home_both_complete(tiny_registry, tiny_images, zoo_home):
    args = ["run", "tiny", "--data", str(tiny_images), "--epochs", "2", "--json"]
    processes = [zoo_process(args, tiny_registry, zoo_home) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    run_ids = sorted(json.loads(out)["runs"][0]["run_id"] for out, _ in outputs)
    assert run_ids == [1, 2]
    assert [(r.id, r.status) for r in list_runs()] == [(2, "ok"), (1, "ok")]
    assert cached_vectors(zoo_home) >= TRAIN + VALIDATION + TEST  # both may have written shards
    assert_no_leftovers(zoo_home)
    assert run_tiny(tiny_images).results[0].computed_features == 0
