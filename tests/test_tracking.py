"""Trackers: runs reach TensorBoard's HParams, and a tracker that fails never fails a run."""

from pathlib import Path

import pytest

import zoo
from zoo.reporting import Reporter
from zoo.runs.store import get_run, list_runs


class Warnings(Reporter):
    def __init__(self):
        self.texts = []

    def warning(self, text: str) -> None:
        self.texts.append(text)


def run_tiny(tiny_images, reporter=None, **settings):
    summary = zoo.run(
        ["tiny"],
        data=tiny_images,
        reporter=reporter,
        **{"epochs": 3, "patience": 5, "lr": 0.05, **settings},
    )
    (result,) = summary.results
    assert result.ok, result.reason
    return result


def hparams_sessions(log_dir: Path) -> list[tuple[dict, dict]]:
    """(hparams, final scalars) of each hparams session in a log folder, read from the event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    sessions = []
    for events in sorted(log_dir.glob("events.out.tfevents.*")):  # the top: not train/, validation/
        hparams, scalars = None, {}
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                    if data.HasField("session_start_info"):
                        hparams = {
                            key: _value(proto)
                            for key, proto in data.session_start_info.hparams.items()
                        }
                elif plugin.plugin_name == "scalars":
                    scalars[value.tag] = float(tensor_util.make_ndarray(value.tensor))
        if hparams is not None:
            sessions.append((hparams, scalars))
    return sessions


def _value(proto):
    kind = proto.WhichOneof("kind")
    return getattr(proto, kind)


def test_a_run_shows_up_in_tensorboard_hparams(tiny_registry, tiny_images, tmp_path):
    result = run_tiny(tiny_images, logdir=tmp_path / "tb", batch_size=8)
    record = get_run(result.run_id)
    assert Path(record.data) == tiny_images  # kept at run time, for `zoo runs`
    (session,) = hparams_sessions(Path(record.artifacts["tensorboard"]))
    hparams, scalars = session
    assert hparams["backbone"] == "tiny" and hparams["mode"] == "feature-extraction"
    assert hparams["lr"] == pytest.approx(0.05) and hparams["batch_size"] == 8
    assert hparams["run_id"] == result.run_id and hparams["data"] == "data"
    assert "logdir" not in hparams  # a place, not a choice
    assert scalars["test/accuracy"] == pytest.approx(record.metrics["accuracy"])
    assert scalars["test/macro_f1"] == pytest.approx(record.metrics["macro_f1"])
    assert scalars["run/images_per_second"] == pytest.approx(result.images_per_second, rel=1e-6)


BROKEN_TRACKER = """
import zoo

@zoo.hookimpl
def run_finished(run):
    raise ConnectionError("tracking server at 127.0.0.1:9 refused the connection")
"""


def test_a_tracker_that_raises_is_one_warning_and_the_run_is_stored(
    tiny_registry, tiny_images, tmp_path, monkeypatch
):
    plugin = tmp_path / "broken_tracker.py"
    plugin.write_text(BROKEN_TRACKER)
    monkeypatch.setenv("ZOO_PLUGINS", str(plugin))
    reporter = Warnings()
    result = run_tiny(tiny_images, reporter=reporter, logdir=tmp_path / "tb")
    (warning,) = [text for text in reporter.texts if "broken_tracker" in text]
    assert "refused the connection" in warning and "run_finished" in warning
    assert [run.id for run in list_runs()] == [result.run_id]
    assert get_run(result.run_id).status == "ok"
    # The other trackers still ran: the built-in HParams one wrote its session.
    assert hparams_sessions(Path(result.artifacts["tensorboard"]))
