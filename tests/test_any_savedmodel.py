"""Any SavedModel that hub.KerasLayer loads runs end to end, and a trained run is never lost.

The plain tf.Module here has a variable and a `__call__` and nothing else: no `variables`,
`trainable_variables` or `regularization_losses` attributes (not the Reusable SavedModel API).
"""

from pathlib import Path

import pytest
from conftest import TINY_FEATURES, registry_text
from hub_server import HubServer, hub_archive

from zoo.cli import main

PATH = "/plain/module/1"


def export_plain_module(folder: Path) -> Path:
    import tensorflow as tf

    class Plain(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal([48, TINY_FEATURES], seed=[3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            thumbnails = tf.reshape(tf.image.resize(images, [4, 4]), [-1, 48])
            return tf.matmul(thumbnails, self.kernel)

    tf.saved_model.save(Plain(), str(folder))
    return folder


@pytest.fixture(scope="module")
def plain_archive(tmp_path_factory) -> bytes:
    return hub_archive(export_plain_module(tmp_path_factory.mktemp("plain") / "model"))


def test_plain_module_from_a_loopback_hub_runs_and_predicts(
    plain_archive, tmp_path, tiny_images, capsys
):
    hub = HubServer()
    try:
        hub.serve(PATH, plain_archive)
        registry = tmp_path / "registry.toml"
        registry.write_text(registry_text(hub.url(PATH), name="plain"))
        args = ["--registry", str(registry)]
        data = ["--data", str(tiny_images)]
        with pytest.raises(SystemExit) as done:
            main([*args, "run", "plain", *data, "--epochs", "2", "--lr", "0.05", "--json"])
        assert done.value.code == 0, capsys.readouterr().err
    finally:
        hub.stop()
    capsys.readouterr()
    image = next((tiny_images / "test" / "red").iterdir())
    with pytest.raises(SystemExit) as done:
        main([*args, "predict", str(image), "--run", "1", "--json"])
    out = capsys.readouterr().out
    assert done.value.code in (0, None)
    assert '"class": "red"' in out


def test_a_failed_model_write_leaves_the_stored_run_as_it_was(
    tiny_registry, tiny_images, monkeypatch, capsys, tmp_path
):
    """A frozen run's model is written on its first export: a failure there is one line, the
    run stays stored as it was, no half-written model is kept, and the next export writes it."""
    from zoo.runs import artifacts
    from zoo.runs.store import get_run

    with pytest.raises(SystemExit) as done:
        main(["run", "tiny", "--data", str(tiny_images), "--epochs", "1"])
    assert done.value.code == 0
    before = get_run(1)
    save_with_head = artifacts.save_with_head

    def explode(*args, **kwargs):
        raise RuntimeError("disk says no\nsecond line")

    monkeypatch.setattr(artifacts, "save_with_head", explode)
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["export", "1", "--out", str(tmp_path / "first")])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: run 1's model could not be written (RuntimeError: disk says no)"
    ), err
    assert get_run(1) == before and not Path(before.artifacts["model"]).exists()
    monkeypatch.setattr(artifacts, "save_with_head", save_with_head)
    with pytest.raises(SystemExit) as done:
        main(["export", "1", "--out", str(tmp_path / "again")])
    assert done.value.code in (0, None)
    assert Path(before.artifacts["model"], "saved_model.pb").is_file()
