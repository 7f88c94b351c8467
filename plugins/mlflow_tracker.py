"""MLflow tracking: each stored zoo run becomes an MLflow run (the `zoo[mlflow]` extra).

Params (settings, backbone, data), per-epoch metrics, test metrics, the confusion matrix and the
run's SavedModel where the run wrote one (a feature-extraction run writes its model on first
`zoo export`/`zoo predict`: the tag `zoo.model` says so) go to $MLFLOW_TRACKING_URI, or by default to ZOO_HOME/mlflow.db with artifacts
under ZOO_HOME/mlruns/ (MLflow's own default would write both into the current folder). Runs
logged to a SQLite store take turns (a lock file beside it): three zoo processes creating the
store at once lost two runs to its migrations racing. Without MLflow installed this plugin implements no hook: it
costs nothing and says nothing (`zoo plugins` shows it with no hooks).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zoo
from zoo.home import zoo_home

try:
    import fcntl
except ImportError:  # Windows: no lock; concurrent first runs there may still race
    fcntl = None

EXPERIMENT = "zoo"  # unless $MLFLOW_EXPERIMENT_NAME says otherwise
# MLflow retries a refused connection 7 times with exponential backoff (minutes of waiting after
# every backbone when the server is down). A tracker should fail fast; the user's values win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# MLflow allows these characters in metric and param names; class names may hold any other.
UNSAFE_NAME = re.compile(r"[^\w\-. :/]")


def _safe(name: str) -> str:
    return UNSAFE_NAME.sub("_", name)


def params_of(run: dict[str, Any]) -> dict[str, str]:
    """What the run was: its settings, backbone, mode, data and versions, as MLflow params."""
    params = {f"settings.{key}": value for key, value in run["settings"].items()}
    params.update(
        backbone=run["backbone"],
        mode=run["mode"],
        data=run.get("data"),
        data_fingerprint=run.get("data_fingerprint"),
        **{f"versions.{key}": value for key, value in run["versions"].items()},
    )
    return {_safe(key): str(value)[:6000] for key, value in params.items() if value is not None}


def final_metrics(run: dict[str, Any]) -> dict[str, float]:
    """Test metrics, timings and per-class accuracy: every number the run ended with."""
    metrics = run["metrics"]
    numbers = {
        f"test_{key}" if key in ("accuracy", "loss", "macro_f1") else key: value
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    for name, accuracy in metrics.get("per_class_accuracy", {}).items():
        numbers[_safe(f"test_class_accuracy/{name}")] = accuracy
    return numbers


def log_run(run: dict[str, Any], client: Any = None) -> str:
    """Log one zoo run record to MLflow; returns the MLflow run id."""
    from mlflow.tracking import MlflowClient

    for variable, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    for chatty in ("mlflow.store.db.utils", "alembic"):  # INFO lines as the store is created
        logging.getLogger(chatty).setLevel(logging.WARNING)
    uri = tracking_uri()
    with _one_at_a_time(uri):
        return _log_run(run, client or MlflowClient(tracking_uri=uri))


def verdict_tags(verdict: dict[str, Any]) -> dict[int, dict[str, str]]:
    """{zoo run id: tags}: best, recommended, tied or worse, with the adjusted p against the best."""
    p_values = {pair["run"]: pair["p_adjusted"] for pair in verdict["pairs"]}
    tags = {}
    for run in verdict["tied"] + verdict["worse"]:
        place = "worse" if run in verdict["worse"] else "tied"
        place = "best" if run == verdict["best"] else place
        tags[run] = {
            "zoo.verdict": "recommended" if run == verdict["recommended"] else place,
            "zoo.verdict_vs": str(verdict["best"]),
            "zoo.verdict_p_adjusted": str(p_values.get(run, 1.0)),
        }
    return tags


def tag_verdict(verdict: dict[str, Any], client: Any = None) -> None:
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    with _one_at_a_time(uri):
        client = client or MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(
            os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        )
        if experiment is None:
            return
        for run, tags in verdict_tags(verdict).items():
            found = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`zoo.run_id` = '{int(run)}'"
            )
            for logged in found:
                for key, value in tags.items():
                    client.set_tag(logged.info.run_id, key, value)


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, or a SQLite store in ZOO_HOME (never the current folder)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{zoo_home() / 'mlflow.db'}"


@contextlib.contextmanager
def _one_at_a_time(uri: str) -> Iterator[None]:
    """Hold a lock while logging to a local SQLite store; servers and file stores need none."""
    if not uri.startswith("sqlite:") or fcntl is None:
        yield
        return
    zoo_home().mkdir(parents=True, exist_ok=True)
    with open(zoo_home() / "mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _artifact_location() -> str | None:
    """Where a new experiment keeps its files: under ZOO_HOME unless the user chose a store."""
    return None if os.environ.get("MLFLOW_TRACKING_URI") else (zoo_home() / "mlruns").as_uri()


def _log_run(run: dict[str, Any], client: Any) -> str:
    from mlflow.entities import Metric, Param

    experiment_id = _experiment_id(client, os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    tags = {"zoo.run_id": str(run["id"]), "zoo.status": run["status"]}
    if run.get("reason"):
        tags["zoo.reason"] = run["reason"][:5000]
    mlflow_run = client.create_run(
        experiment_id, run_name=f"zoo-{run['id']}-{run['backbone']}", tags=tags
    )
    run_id = mlflow_run.info.run_id
    try:
        now = int(time.time() * 1000)
        epochs = [
            Metric(_safe(key), float(value), now, step)
            for key, values in run["history"].items()
            for step, value in enumerate(values)
        ]
        finals = [Metric(key, float(v), now, 0) for key, v in final_metrics(run).items()]
        params = [Param(key, value) for key, value in params_of(run).items()]
        metrics = epochs + finals
        for start in range(0, max(len(metrics), len(params), 1), 100):  # MLflow's batch limit
            client.log_batch(
                run_id, metrics=metrics[start : start + 100], params=params[start : start + 100]
            )
        _log_artifacts(client, run_id, run)
    except BaseException:
        _close_quietly(client, run_id)
        raise
    client.set_terminated(run_id, "FINISHED" if run["status"] == "ok" else "FAILED")
    return run_id


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location())
    except MlflowException:  # another zoo process created it a moment ago
        return client.get_experiment_by_name(name).experiment_id


def _log_artifacts(client: Any, run_id: str, run: dict[str, Any]) -> None:
    metrics = run["metrics"]
    if "confusion_matrix" in metrics:
        client.log_dict(
            run_id,
            {
                "classes": metrics["classes"],
                "rows_true_columns_predicted": metrics["confusion_matrix"],
            },
            "confusion_matrix.json",
        )
    model = run["artifacts"].get("model")
    if model and Path(model).is_dir():
        client.log_artifacts(run_id, model, "model")
    elif model:  # a frozen run's model is written on first use, not here (zoo/runs/artifacts.py)
        client.set_tag(run_id, "zoo.model", "written on first `zoo export` or `zoo predict`")


def _close_quietly(client: Any, run_id: str) -> None:
    """Mark a half-logged run FAILED, if the tracking server still answers."""
    # The server that failed the logging is likely down: the caller reports the first error.
    with contextlib.suppress(Exception):
        client.set_terminated(run_id, "FAILED")


# find_spec imports nothing: `zoo list` stays fast with MLflow installed.
if importlib.util.find_spec("mlflow") is not None:

    @zoo.hookimpl
    def run_finished(run):
        """Log the stored run to MLflow."""
        log_run(run)

    @zoo.hookimpl
    def verdict_reached(verdict):
        """Tag each compared run in MLflow with its place in the verdict."""
        tag_verdict(verdict)
