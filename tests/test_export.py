"""`zoo export`: a run as a SavedModel or a TFLite file with labels, checked against the original."""

import json

import numpy as np
import pytest
from test_tune import run_main

import zoo
from zoo.runs.export import export_run
from zoo.runs.store import get_run


@pytest.fixture
def tiny_run(tiny_registry, tiny_images) -> dict:
    (result,) = zoo.run(["tiny"], data=tiny_images, epochs=5, lr=0.05).results
    assert result.ok, result.reason
    return get_run(result.run_id)


@pytest.mark.parametrize("quantize", ["none", "float16", "int8"])
def test_tflite_export_agrees_with_the_saved_model(tiny_run, tmp_path, quantize):
    import tensorflow as tf

    report = export_run(tiny_run, tmp_path / "out", "tflite", quantize)
    assert report.model.name == "model.tflite" and report.size_bytes == report.model.stat().st_size
    assert report.labels.read_text().split() == ["blue", "green", "red"]
    assert report.checked == 15  # every test image
    assert report.agreement >= (0.99 if quantize != "int8" else 0.9)
    interpreter = tf.lite.Interpreter(model_path=str(report.model))
    (source,) = interpreter.get_input_details()
    assert source["dtype"] == np.float32  # raw 0..255 pixels, as the SavedModel takes
    if quantize == "int8":  # activations really are quantized
        kinds = {detail["dtype"] for detail in interpreter.get_tensor_details()}
        assert np.int8 in kinds


def test_export_cli_savedmodel_and_bad_options(tiny_run, tmp_path, capsys):
    out = tmp_path / "sm"
    code, stdout, err = run_main(["export", str(tiny_run.id), "--out", str(out), "--json"], capsys)
    assert code == 0, err
    facts = json.loads(stdout)
    assert (out / "saved_model" / "saved_model.pb").is_file() and facts["size_bytes"] > 0
    assert facts["top1_agreement"] is None  # nothing to compare a copy with
    for args, message in (
        (["--out", str(out)], "already exists"),
        (["--format", "onnx"], "--format must be one of savedmodel, tflite"),
        (["--quantize", "int4", "--format", "tflite"], "--quantize must be one of"),
        (["--quantize", "int8"], "--quantize applies to --format tflite"),
    ):
        code, _, err = run_main(["export", str(tiny_run.id), *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(["export", "999"], capsys)
    assert code == 2 and "no run with id 999" in err


def test_real_lite0_runs_ensembled_and_exported_to_tflite(
    zoo_home, lite0_built, capsys, monkeypatch
):
    """The real path: two EfficientNet-Lite0 runs on a demo slice, their ensemble through the
    CLI, and one run as float16 TFLite checked by the interpreter on its test images."""
    from conftest import plant_demo_slice

    monkeypatch.setenv("COLUMNS", "200")
    plant_demo_slice(zoo_home, train_per_class=6, test_per_class=2)
    ids = []
    for seed in (1, 2):
        code, _, err = run_main(["run", "efficientnet_lite0", "--seed", str(seed)], capsys)
        assert code == 0, err
        ids.append(str(len(ids) + 1))
    code, out, err = run_main(["ensemble", *ids], capsys)
    assert code == 0, err
    ensemble = get_run(3)
    assert ensemble.mode == "ensemble" and ensemble.metrics["test_images"] == 20
    out_dir = zoo_home / "deploy"
    args = ["export", "1", "--format", "tflite", "--quantize", "float16", "--out", str(out_dir)]
    code, stdout, err = run_main([*args, "--json"], capsys)
    assert code == 0, err
    facts = json.loads(stdout)
    assert facts["test_images_checked"] == 20 and facts["top1_agreement"] >= 0.95
    assert (out_dir / "model.tflite").stat().st_size == facts["size_bytes"] > 1_000_000
    assert len((out_dir / "labels.txt").read_text().split("\n")) >= 10
