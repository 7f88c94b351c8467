"""Each frozen backbone's engine in a short-lived child process (zoo.extraction.process).

The rest of the suite extracts in the test's own process (conftest sets ZOO_EXTRACT_HERE=1:
a child starts a fresh Python and TensorFlow, seconds a run); these tests take the child path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal

import numpy as np
import pytest
from conftest import TINY_FEATURES, registry_text

import zoo
from zoo import child as child_processes
from zoo.catalog.plugins import load_catalog, load_plugins
from zoo.errors import BackboneUnavailable
from zoo.extraction import process
from zoo.extraction.cache import FeatureCache
from zoo.extraction.engines import load_engines
from zoo.reporting import Reporter
from zoo.runs import pipelines
from zoo.runs.settings import RunSettings
from zoo.runs.store import list_runs

ALL = 45  # tiny_images: 30 train + 15 test


@pytest.fixture
def in_child(monkeypatch) -> list[process.ChildEngine]:
    """Extraction in a child, and every child started, to check they are all gone."""
    monkeypatch.delenv(process.IN_PROCESS_VARIABLE, raising=False)
    started: list[process.ChildEngine] = []
    original = process.ChildEngine.__init__

    def recorded(self, *args, **kwargs):
        started.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(process.ChildEngine, "__init__", recorded)
    return started


def assert_all_ended(children: list[process.ChildEngine]) -> None:
    assert children, "no child was started"
    for child in children:
        assert child._process.poll() is not None, f"child {child.pid} still runs"


def tiny_features(images, reporter=None) -> tuple[np.ndarray, np.ndarray, int]:
    backbone = load_catalog().get("tiny")
    paths = sorted(images.rglob("*.png"))
    digests = [f"{i:064x}" for i in range(len(paths))]
    return pipelines.frozen_features(
        backbone,
        paths,
        digests,
        RunSettings(),
        reporter or Reporter(),
        load_engines(load_plugins()),
    )


def test_child_vectors_equal_in_process_ones_and_progress_advances(
    tiny_registry, tiny_images, zoo_home, in_child, monkeypatch
):
    advanced = []

    class Counting(Reporter):
        @contextlib.contextmanager
        def task(self, description, total):
            yield advanced.append

    child_vectors, child_good, computed = tiny_features(tiny_images, Counting())
    assert computed == ALL and child_vectors.shape == (ALL, TINY_FEATURES)
    assert sum(advanced) == ALL and len(advanced) >= 3  # the cached 0, then batch by batch
    assert_all_ended(in_child)

    shutil.rmtree(zoo_home / "features")
    monkeypatch.setenv(process.IN_PROCESS_VARIABLE, "1")
    here_vectors, here_good, computed = tiny_features(tiny_images)
    assert computed == ALL and len(in_child) == 1  # no second child
    np.testing.assert_array_equal(child_good, here_good)
    np.testing.assert_allclose(child_vectors, here_vectors, rtol=1e-6, atol=1e-6)


def test_a_run_in_a_child_records_the_engine_and_reuses_the_cache(
    tiny_registry, tiny_images, in_child, capfd
):
    first = zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.05).results[0]
    assert first.ok, first.reason
    assert first.engine.startswith("openvino ") and first.computed_features == ALL
    # The child imported TensorFlow to convert the backbone: none of its start-up lines
    # (absl's notice, a failed cuInit, oneDNN's note) reach the terminal.
    printed = capfd.readouterr().err
    assert not any(line in printed for line in ("absl::", "cuInit", "oneDNN")), printed
    second = zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.05).results[0]
    assert second.ok and second.computed_features == 0
    assert len(in_child) == 1  # all cached: no child for the second run
    assert_all_ended(in_child)


def test_a_backbone_whose_child_fails_is_a_failed_row_naming_it(
    tmp_path, tiny_savedmodel, tiny_images, in_child, monkeypatch
):
    broken = shutil.copytree(tiny_savedmodel, tmp_path / "broken")
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    registry = tmp_path / "registry.toml"
    registry.write_text(
        registry_text(str(broken), name="broken") + registry_text(str(tiny_savedmodel))
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    summary = zoo.run(["broken", "tiny"], data=tiny_images, epochs=2, lr=0.05)
    failed, ok = summary.results
    assert failed.status == "failed" and ok.ok
    assert "\n" not in failed.reason and failed.reason  # one line, from the child
    print(failed.reason)
    assert_all_ended(in_child)


def test_a_child_that_dies_is_a_failed_row_not_a_hang(tiny_registry, tiny_images, in_child):
    class KillsTheChild(Reporter):
        @contextlib.contextmanager
        def task(self, description, total):
            if in_child:  # started, and waiting for its first images: the OOM killer strikes
                os.kill(in_child[0].pid, signal.SIGKILL)
                in_child[0]._process.wait()
            yield lambda steps: None

    (result,) = zoo.run(
        ["tiny"], data=tiny_images, epochs=2, lr=0.05, reporter=KillsTheChild()
    ).results
    assert result.status == "failed"
    assert result.reason.startswith("tiny: its extraction process stopped (killed by SIGKILL")
    assert_all_ended(in_child)
    assert list_runs()[0].status == "failed"


def test_ctrl_c_during_extraction_ends_the_child_and_keeps_only_whole_shards(
    tiny_registry, tiny_images, zoo_home, in_child, monkeypatch
):
    monkeypatch.setattr(pipelines, "INFERENCE_BATCH", 16)
    monkeypatch.setattr(zoo.extraction.extract, "SHARD_SIZE", 1)

    class Interrupts(Reporter):
        @contextlib.contextmanager
        def task(self, description, total):
            def advance(steps):
                # Ctrl-C once the first computed batch is in (and its shard written)
                if steps and description == "features":
                    raise KeyboardInterrupt

            yield advance

    with pytest.raises(KeyboardInterrupt):
        zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.05, reporter=Interrupts())
    assert_all_ended(in_child)
    assert list_runs() == []
    (folder,) = (zoo_home / "features").iterdir()
    cache = FeatureCache(folder.name, width=TINY_FEATURES)
    assert cache.discarded == [] and len(cache) == 16  # the first batch's whole shard
    assert not list(zoo_home.rglob(".tmp-*"))

    result = zoo.run(["tiny"], data=tiny_images, epochs=2, lr=0.05).results[0]
    assert result.ok and result.computed_features == ALL - 16


def test_an_error_in_the_child_comes_back_as_itself():
    error = child_processes.rebuilt(
        child_processes.pickled(BackboneUnavailable("tiny: gone")), "tiny: gone", "Traceback ..."
    )
    assert isinstance(error, BackboneUnavailable) and str(error) == "tiny: gone"
    other = child_processes.rebuilt(
        child_processes.pickled(ValueError("x")), "ValueError: x", "Traceback"
    )
    assert isinstance(other, child_processes.ChildFailed) and str(other) == "ValueError: x"


def test_engines_the_child_cannot_rebuild_stay_in_this_process(tiny_registry, monkeypatch):
    monkeypatch.delenv(process.IN_PROCESS_VARIABLE, raising=False)
    backbone = load_catalog().get("tiny")
    engines = load_engines(load_plugins())
    assert process.wanted(engines, backbone)
    engines.factories = {**engines.factories, "mine": lambda resolved, precision: None}
    assert not process.wanted(engines, backbone)
    monkeypatch.setenv(process.IN_PROCESS_VARIABLE, "1")
    assert not process.wanted(load_engines(load_plugins()), backbone)
