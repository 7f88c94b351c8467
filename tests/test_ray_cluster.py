"""Feature extraction on a real two-node Ray cluster, every node and all its traffic on 127.0.0.1.

`ray.cluster_utils.Cluster` starts a head and a second node as separate raylet processes on this
machine; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set in conftest) keeps them on 127.0.0.1 (`ray start`
would advertise the machine's network address). The pytest process is the driver.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from conftest import run_main, write_image_folders

import zoo
from zoo.catalog.plugins import load_catalog
from zoo.extraction.engines import ResolvedBackbone
from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine
from zoo.extraction.extract import local_compute


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    # The nodes' processes inherit this environment (conftest keeps them on 127.0.0.1), with a
    # zoo home of their own for OpenVINO's IR: never the user's.
    os.environ["ZOO_HOME"] = str(tmp_path_factory.mktemp("ray-node-home"))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def tiny_backbone() -> ResolvedBackbone:
    backbone = load_catalog().get("tiny")
    return ResolvedBackbone(backbone, Path(backbone.handle))


def in_order(batches, count: int) -> tuple[np.ndarray, list[int]]:
    """Reassemble batches that may come in any order; also every index seen, repeats included."""
    seen, rows = [], {}
    for indices, vectors, failures in batches:
        assert not failures
        seen += indices
        rows.update(zip(indices, vectors))
    return np.stack([rows[i] for i in range(count)]), seen


def in_process_features(resolved: ResolvedBackbone, paths: list[Path]) -> np.ndarray:
    engine = TensorFlowEngine(resolved)
    engine.load()
    compute = local_compute(resolved.backbone.preprocessing, engine, batch_size=8)
    return in_order(compute(paths, [str(p) for p in paths]), len(paths))[0]


def test_the_cluster_is_two_nodes_on_loopback(ray_cluster):
    nodes = [node for node in ray.nodes() if node["Alive"]]
    assert len(nodes) == 2
    assert {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}
    assert ray_cluster.address.startswith("127.0.0.1:")


def test_cluster_features_equal_in_process_ones(ray_cluster, tiny_registry, tiny_images):
    from zoo.extraction.cluster import ClusterCompute

    resolved = tiny_backbone()
    paths = sorted(tiny_images.rglob("*.png"))
    with ClusterCompute(resolved, "tensorflow", "fp32", 4, print) as pool:
        assert len(pool.workers) == 2
        cluster, seen = in_order(pool.compute(paths, [str(p) for p in paths]), len(paths))
    assert sorted(seen) == list(range(len(paths)))
    assert np.abs(cluster - in_process_features(resolved, paths)).max() <= 1e-5


def unpacked_copies(resolved: ResolvedBackbone) -> list[Path]:
    """The workers' unpacked copies of this model in the nodes' temp folder (this machine's)."""
    import hashlib
    import tempfile

    from zoo.extraction.cluster import UNPACKED_PREFIX, _archive

    digest = hashlib.sha256(_archive(resolved.folder)).hexdigest()[:24]
    return list(Path(tempfile.gettempdir()).glob(f"{UNPACKED_PREFIX}{digest}*"))


def test_a_killed_worker_has_its_batches_retried(ray_cluster, tiny_registry, tmp_path):
    from zoo.extraction.cluster import ClusterCompute

    data = write_image_folders(tmp_path / "data", {"train": 20})
    resolved = tiny_backbone()
    paths = sorted(data.rglob("*.png"))
    with ClusterCompute(resolved, "tensorflow", "fp32", 2, print) as pool:
        assert unpacked_copies(resolved) == []  # each removed once its engine started
        victim = pool.worker_pids()[0]
        batches = pool.compute(paths, [str(p) for p in paths])
        first = next(batches)
        time.sleep(1)  # lets Ray delete anything the driver no longer references
        os.kill(victim, signal.SIGKILL)  # mid-run: batches are in flight on both workers
        cluster, seen = in_order([first, *batches], len(paths))
        assert victim not in pool.worker_pids()  # Ray restarted the worker
    assert sorted(seen) == list(range(len(paths)))  # no row missing, none twice
    assert unpacked_copies(resolved) == []  # the restarted worker's copy too
    assert np.abs(cluster - in_process_features(resolved, paths)).max() <= 1e-5


def test_zoo_run_on_the_cluster_shares_the_feature_cache(ray_cluster, tiny_registry, tiny_images):
    options = dict(data=tiny_images, epochs=1, engine="tensorflow")
    (on_cluster,) = zoo.run(["tiny"], ray=ray_cluster.address, **options).results
    assert on_cluster.ok, on_cluster.reason
    assert on_cluster.engine.endswith("on ray (2 workers)")
    assert on_cluster.computed_features == 45

    (local,) = zoo.run(["tiny"], **options).results
    assert local.computed_features == 0  # the cluster's vectors are the in-process ones


def test_an_unreachable_cluster_is_one_line_within_seconds(tiny_registry, tiny_images):
    # A port nothing listens on (the discard port); a subprocess, so no connection is shared.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "run", "tiny", "--data", str(tiny_images)]
        + ["--ray", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in lines[0], lines
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60  # TensorFlow's import is most of it


@pytest.mark.parametrize("address", ["nonsense", "10.0.0.5", "host:port", "127.0.0.1:70000"])
def test_ray_addresses_that_are_not_host_port_are_one_line(address, tiny_registry, capsys):
    code, _, stderr = run_main(["run", "tiny", "--ray", address], capsys)
    assert code == 2
    assert stderr.strip() == (
        f"error: --ray {address}: give the head's HOST:PORT (e.g. 10.0.0.5:6379) or auto"
    )


def test_ray_usage_errors_are_one_line(tiny_registry, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    code, _, stderr = run_main(["run", "tiny", "--ray", "auto"], capsys)
    assert code == 2
    assert stderr.strip() == (
        "error: --ray needs Ray, which is not installed: pip install 'zoo[ray]' on this "
        "machine and on every node of the cluster"
    )
