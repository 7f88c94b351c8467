"""The MLflow tracker (`zoo[mlflow]`), read back with MLflow's own client."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import serving_model
from test_tracking import Warnings, run_tiny

from zoo.runs.store import get_run, list_runs

mlflow = pytest.importorskip("mlflow")


def only_run(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("zoo")
    (found,) = client.search_runs([experiment.experiment_id])
    return client, found


def test_a_run_is_logged_to_an_mlflow_file_store(tiny_registry, tiny_images, tmp_path, monkeypatch):
    store = (tmp_path / "tracking").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    reporter = Warnings()
    result = run_tiny(tiny_images, reporter=reporter, epochs=4, batch_size=8)
    assert reporter.texts == []
    record = get_run(result.run_id)
    client, found = only_run(store)
    assert found.info.status == "FINISHED" and found.info.run_name == f"zoo-{result.run_id}-tiny"
    assert found.data.tags["zoo.run_id"] == str(result.run_id)
    params = found.data.params
    assert params["backbone"] == "tiny" and params["mode"] == "feature-extraction"
    assert float(params["settings.lr"]) == 0.05 and params["settings.batch_size"] == "8"
    assert params["data_fingerprint"] == record.data_fingerprint
    assert Path(params["data"]).name == "data"
    val_loss = client.get_metric_history(found.info.run_id, "val_loss")
    assert [m.step for m in val_loss] == list(range(result.epochs_run))
    assert [m.value for m in val_loss] == pytest.approx(record.history["val_loss"])
    metrics = found.data.metrics
    assert metrics["test_accuracy"] == pytest.approx(record.metrics["accuracy"])
    assert metrics["test_class_accuracy/red"] == pytest.approx(
        record.metrics["per_class_accuracy"]["red"]
    )
    downloaded = Path(
        mlflow.artifacts.download_artifacts(
            run_id=found.info.run_id, tracking_uri=store, dst_path=str(tmp_path / "back")
        )
    )
    confusion = json.loads((downloaded / "confusion_matrix.json").read_text())
    assert confusion["rows_true_columns_predicted"] == record.metrics["confusion_matrix"]
    assert confusion["classes"] == ["blue", "green", "red"]
    # a frozen run's SavedModel is written on first use, after the run is logged: tagged so
    assert not (downloaded / "model").exists()
    assert found.data.tags["zoo.model"] == "written on first `zoo export` or `zoo predict`"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tracking_server_that_is_down_is_one_warning(tiny_registry, tiny_images, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody listens
    reporter = Warnings()
    result = run_tiny(tiny_images, reporter=reporter)
    (warning,) = reporter.texts
    print(warning)
    assert "mlflow_tracker" in warning and "run_finished" in warning
    (stored,) = list_runs()
    assert stored.id == result.run_id and stored.status == "ok"
    assert Path(serving_model(stored), "saved_model.pb").is_file()


@pytest.mark.skipif(
    not os.environ.get("ZOO_TEST_MLFLOW_SERVER"),
    reason="starting `mlflow server` takes 15-20 s here; set ZOO_TEST_MLFLOW_SERVER=1 to run it",
)
def test_a_run_reaches_an_mlflow_server(tiny_registry, tiny_images, tmp_path, monkeypatch):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", (tmp_path / "server-store").as_uri(),
            "--artifacts-destination", (tmp_path / "server-artifacts").as_uri(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers go with it when the group is stopped
    )  # fmt: skip
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_until_up(f"{uri}/health", server)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        reporter = Warnings()
        result = run_tiny(tiny_images, reporter=reporter)
        assert reporter.texts == []
        client, found = only_run(uri)
        assert found.data.tags["zoo.run_id"] == str(result.run_id)
        assert {a.path for a in client.list_artifacts(found.info.run_id)} == {
            "confusion_matrix.json",
            "model",
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"mlflow server not up after {seconds} s")
