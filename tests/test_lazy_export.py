"""A feature-extraction run's SavedModel is written on first use (zoo/runs/artifacts.py), then kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import export_tiny_savedmodel, registry_text, run_main, write_image_folders

import zoo
from zoo.runs import artifacts
from zoo.runs.store import get_run

IMAGE = Path("test", "red", "red_0.png")


@pytest.fixture
def own_tiny(tmp_path, tiny_savedmodel, monkeypatch) -> Path:
    """The tiny backbone from a folder of this test's own, which it may remove or replace."""
    folder = shutil.copytree(tiny_savedmodel, tmp_path / "own-tiny")
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(folder)))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    return folder


def fresh_run(data: Path) -> dict:
    (result,) = zoo.run(["tiny"], data=data, epochs=2, lr=0.05).results
    assert result.ok, result.reason
    record = get_run(result.run_id)
    run_folder = Path(record.artifacts["run_folder"])
    assert not Path(record.artifacts["model"]).exists()  # not written at the run's end
    assert (run_folder / "head.npz").is_file() and (run_folder / "test_probabilities.npz").is_file()
    assert json.loads((run_folder / artifacts.SERVING_RECIPE).read_text())["num_classes"] == 3
    return record


def test_zoo_export_writes_the_model_on_first_use_and_keeps_it(
    own_tiny, tiny_images, tmp_path, capsys
):
    record = fresh_run(tiny_images)
    code, out, err = run_main(
        ["export", str(record.id), "--out", str(tmp_path / "sm"), "--json"], capsys
    )
    assert code == 0, err
    assert (tmp_path / "sm" / "saved_model" / "saved_model.pb").is_file()
    kept = Path(record.artifacts["model"])
    assert (kept / "saved_model.pb").is_file() and not list(kept.parent.glob(".tmp-*"))
    written = (kept / "variables" / "variables.index").stat().st_mtime_ns
    code, _, err = run_main(["export", str(record.id), "--out", str(tmp_path / "again")], capsys)
    assert code == 0, err
    assert (kept / "variables" / "variables.index").stat().st_mtime_ns == written  # kept


def test_zoo_predict_writes_it_under_a_home_named_like_a_pattern(
    own_tiny, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home [1] *?{a,b}"))
    data = write_image_folders(tmp_path / "data", {"train": 10, "test": 5})
    record = fresh_run(data)
    image = data / IMAGE
    code, out, err = run_main(["predict", str(image), "--run", str(record.id)], capsys)
    assert code == 0, err
    assert out.startswith(f"{image}: ")
    assert Path(record.artifacts["model"], "saved_model.pb").is_file()


def test_a_backbone_gone_since_the_run_is_one_line_naming_it(own_tiny, tiny_images, capsys):
    record = fresh_run(tiny_images)
    shutil.rmtree(own_tiny)
    code, _, err = run_main(["predict", str(tiny_images / IMAGE), "--run", str(record.id)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "from its head and backbone tiny, which is not here: tiny: cannot load" in err
    assert "zoo pull tiny" in err and err.count("zoo pull") == 1
    assert not Path(record.artifacts["model"]).exists()


def test_a_backbone_changed_since_the_run_is_refused(own_tiny, tiny_images, capsys):
    record = fresh_run(tiny_images)
    shutil.rmtree(own_tiny)
    export_tiny_savedmodel(own_tiny, seed=1)  # same name and shape, other weights
    code, _, err = run_main(["export", str(record.id)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "which has changed since" in err and "zoo run tiny" in err


def test_an_interrupted_first_export_leaves_no_model_that_reads_as_whole(
    own_tiny, tiny_images, monkeypatch
):
    record = fresh_run(tiny_images)
    model = Path(record.artifacts["model"])
    original = artifacts.save_with_head

    def half_then_interrupt(backbone_id, num_classes, build_model, head, folder, warn):
        (folder / "saved_model.pb").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "save_with_head", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        artifacts.saved_model_folder(record, "export")
    assert not model.exists() and not list(model.parent.glob(".tmp-*"))
    monkeypatch.setattr(artifacts, "save_with_head", original)
    assert (artifacts.saved_model_folder(record, "export") / "saved_model.pb").is_file()


def test_the_written_model_holds_only_what_its_signature_reads(tmp_path, tiny_images, monkeypatch):
    """A hub model keeps functions serving never calls (its training-mode call, a fit step):
    each one costs every later load, and the TFLite converter loads the folder twice."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    folder = export_tiny_savedmodel(tmp_path / "tiny")
    loaded = tf.saved_model.load(str(folder))
    loaded.never_served = tf.function(lambda x: tf.linalg.inv(x) * 2.0).get_concrete_function(
        tf.TensorSpec([3, 3], tf.float32)
    )
    tf.saved_model.save(loaded, str(tmp_path / "with-extra"))
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(tmp_path / "with-extra")))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))

    model_dir = artifacts.saved_model_folder(fresh_run(tiny_images), "export")
    graph = saved_model_pb2.SavedModel.FromString((model_dir / "saved_model.pb").read_bytes())
    ops = {node.op for f in graph.meta_graphs[0].graph_def.library.function for node in f.node_def}
    assert "MatMul" in ops and "MatrixInverse" not in ops
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    probabilities = serve(pixels=tf.zeros([2, 32, 32, 3]))["probabilities"].numpy()
    assert probabilities.shape == (2, 3)
