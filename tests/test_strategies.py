"""tf.distribute for end-to-end training: one device, mirrored replicas, several workers.

The cluster tests start real TensorFlow worker processes on 127.0.0.1 (free ports), as a user
would on several machines, each with its own TF_CONFIG.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import registry_text

import zoo
from zoo.errors import UsageError
from zoo.runs.store import list_runs
from zoo.training import strategies

# The baseline CNN halves its input six times: 64 pixels is the smallest it takes.
SMALL_CNN = registry_text(
    "zoo:small_cnn",
    name="small_cnn",
    plugin="scratch",
    pretrained=False,
    feature_dim=8,
    input_size=[64, 64],
)
# Worker 1 of a cluster dies (os._exit) at the end of its first epoch.
DYING_WORKER_PLUGIN = """
import os

import zoo.runs.pipelines

fit = zoo.runs.pipelines.fit


def fit_then_die(*args, **options):
    return fit(*args, **{**options, "on_epoch": lambda epoch, logs: os._exit(9)})


zoo.runs.pipelines.fit = fit_then_die
"""


def tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def small_cnn_registry(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(SMALL_CNN)
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def start_workers(data: Path, homes: list[Path], extra_env: dict[int, dict] | None = None):
    """Two `zoo run` worker processes, worker i with ZOO_HOME homes[i]."""
    ports = free_ports(2)
    command = [sys.executable, "-m", "zoo", "run", "small_cnn", "--data", str(data)]
    command += ["--epochs", "2", "--seed", "3", "--strategy", "multi-worker", "--json"]
    workers = []
    for index in range(2):
        env = {**os.environ, "ZOO_HOME": str(homes[index]), "TF_CONFIG": tf_config(ports, index)}
        env.update((extra_env or {}).get(index, {}))
        workers.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    try:
        return [(w.wait(timeout=400), *w.communicate()) for w in workers]
    finally:
        for w in workers:
            w.kill()


def test_two_workers_store_one_run_equal_to_a_single_workers(
    small_cnn_registry, tiny_images, tmp_path, zoo_home
):
    cluster_home = tmp_path / "cluster-home"  # both workers on one machine share a home
    (chief_code, chief_out, chief_err), (worker_code, _, worker_err) = start_workers(
        tiny_images, [cluster_home, cluster_home]
    )
    assert (chief_code, worker_code) == (0, 0), (chief_err[-2000:], worker_err[-2000:])
    (stored,) = list_runs(path=cluster_home / "runs.sqlite")  # the chief's, and only the chief's
    assert stored.status == "ok" and stored.settings["strategy"] == "multi-worker"
    assert json.loads(chief_out)["runs"][0]["run_id"] == stored.id

    (alone,) = zoo.run(
        ["small_cnn"], data=tiny_images, epochs=2, seed=3, strategy="default"
    ).results
    assert alone.ok, alone.reason
    # The global batch is split across the workers and their gradients summed: the same steps.
    assert stored.metrics["accuracy"] == pytest.approx(alone.metrics["accuracy"], abs=1e-9)
    assert stored.metrics["loss"] == pytest.approx(alone.metrics["loss"], rel=1e-3)
    assert stored.history["loss"] == pytest.approx(alone.history["loss"], rel=1e-3)


def test_a_worker_that_dies_fails_the_run_in_one_line(small_cnn_registry, tiny_images, tmp_path):
    plugin = tmp_path / "dying_worker.py"
    plugin.write_text(DYING_WORKER_PLUGIN)
    home = tmp_path / "chief-home"  # as on two machines: the dead worker's leftovers are its own
    (chief_code, chief_out, chief_err), (worker_code, _, _) = start_workers(
        tiny_images, [home, tmp_path / "worker-home"], {1: {"ZOO_PLUGINS": str(plugin)}}
    )
    assert worker_code == 9
    assert chief_code == 1, chief_err[-2000:]
    (row,) = json.loads(chief_out)["runs"]
    assert row["status"] == "failed" and "\n" not in row["reason"]
    assert row["reason"].startswith("a worker of the cluster stopped or cannot be reached")
    assert "Traceback" not in chief_err
    (stored,) = list_runs(path=home / "runs.sqlite")
    assert stored.status == "failed" and "model" not in stored.artifacts
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run folder left behind


def test_auto_picks_multi_worker_from_tf_config_and_worker_zero_is_chief(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], index=1))
    assert strategies.resolve("auto") == "multi-worker" and not strategies.is_chief()
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], index=0))
    assert strategies.is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UsageError, match="TF_CONFIG is not valid JSON"):
        strategies.cluster_workers()
    monkeypatch.delenv("TF_CONFIG")
    assert strategies.is_chief() and strategies.resolve("default") == "default"
    with pytest.raises(UsageError, match="needs TF_CONFIG naming two or more workers"):
        strategies.make_strategy("multi-worker")


def test_unknown_strategy_is_a_usage_error():
    with pytest.raises(
        UsageError, match="--strategy must be one of auto, default, mirrored, multi-worker"
    ):
        zoo.run(["small_cnn"], strategy="ring")


MIRRORED_RUN = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import zoo

results = {}
for strategy in ("mirrored", "default"):
    (result,) = zoo.run(["small_cnn"], data=sys.argv[1], epochs=2, seed=3, strategy=strategy).results
    assert result.ok, result.reason
    results[strategy] = {"accuracy": result.metrics["accuracy"], "loss": result.metrics["loss"]}
print(json.dumps(results))
"""


def test_mirrored_over_two_logical_cpus_matches_one_device(small_cnn_registry, tiny_images):
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_RUN, str(tiny_images)],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    mirrored, default = results["mirrored"], results["default"]
    assert mirrored["accuracy"] == pytest.approx(default["accuracy"], abs=1e-9)
    assert mirrored["loss"] == pytest.approx(default["loss"], rel=1e-3)
