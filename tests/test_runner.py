"""The runner on tiny local backbones and tiny image sets."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_INPUT, registry_text, serving_model

import zoo
from zoo.data.folders import scan_folder, stratified_split
from zoo.extraction.engines.openvino_engine import OpenVinoEngine
from zoo.extraction.engines.tensorflow_engine import TensorFlowEngine
from zoo.runs import pipelines
from zoo.runs.store import get_run, list_runs


@pytest.fixture
def encoder_calls(monkeypatch):
    """Count the images each backbone forward pass sees, whichever engine computes it."""
    seen = []
    for engine in (TensorFlowEngine, OpenVinoEngine):

        def counted(self, pixels, compute=engine.__call__):
            seen.append(len(pixels))
            return compute(self, pixels)

        monkeypatch.setattr(engine, "__call__", counted)
    return seen


def run_tiny(tiny_images, **settings):
    return zoo.run(
        ["tiny"], data=tiny_images, **{"epochs": 3, "patience": 5, "lr": 0.05, **settings}
    )


def test_run_trains_evaluates_stores_and_writes_artifacts(tiny_registry, tiny_images, tmp_path):
    summary = run_tiny(tiny_images, logdir=tmp_path / "tb", epochs=15, batch_size=8)
    (result,) = summary.results
    assert result.ok, result.reason
    assert result.metrics["accuracy"] >= 0.8  # colours are trivially separable
    assert result.metrics["test_images"] == 15
    assert set(result.metrics["per_class_accuracy"]) == {"blue", "green", "red"}
    assert np.array(result.metrics["confusion_matrix"]).sum() == 15
    assert result.computed_features == 45 and result.images_per_second > 0
    assert Path(serving_model(result), "saved_model.pb").is_file()
    tensorboard = Path(result.artifacts["tensorboard"])
    assert tensorboard.parent == tmp_path / "tb" / "tiny"
    assert list(tensorboard.rglob("events.out.tfevents.*"))
    record = get_run(result.run_id)
    assert record.status == "ok" and record.backbone == "tiny"
    assert record.metrics["accuracy"] == result.metrics["accuracy"]
    assert len(record.history["val_loss"]) == result.epochs_run
    assert record.versions["tensorflow"] and record.data_fingerprint
    assert record.settings["lr"] == 0.05


def test_default_learning_rates():
    from zoo.runs.runner import RunSettings

    settings = RunSettings()
    assert settings.learning_rate_for("feature-extraction") == 3e-3
    assert settings.learning_rate_for("from-scratch") == 1e-3
    assert settings.learning_rate_for("fine-tune") == 1e-4


def test_second_run_reuses_cached_features(tiny_registry, tiny_images, encoder_calls):
    first = run_tiny(tiny_images).results[0]
    assert sum(encoder_calls) == 45 and first.computed_features == 45
    encoder_calls.clear()
    second = run_tiny(tiny_images, epochs=4, lr=0.01, batch_size=4).results[0]
    assert second.ok and second.computed_features == 0
    assert encoder_calls == []  # the backbone never ran again
    assert second.metrics["test_images"] == 15


def test_warm_run_saves_its_own_head_without_loading_the_backbone(
    tiny_registry, tiny_images, monkeypatch
):
    import tensorflow as tf

    from zoo import Preprocessing
    from zoo.data.decode import load_pixels
    from zoo.extraction import layers as models

    loads, load = [], models.feature_layer
    monkeypatch.setattr(models, "feature_layer", lambda *a, **k: loads.append(1) or load(*a, **k))
    first = run_tiny(tiny_images).results[0]
    serving_model(first)  # its first use exports the template
    loads.clear()
    second = run_tiny(tiny_images, lr=0.01, seed=7).results[0]
    serving_model(second)
    assert loads == []  # the model was saved from the template, the backbone never loaded
    pixels = np.stack(
        [
            load_pixels(path, Preprocessing((TINY_INPUT, TINY_INPUT)))
            for path in tiny_images.rglob("test/*/*.png")
        ]
    ).astype("float32")
    served = []
    for result in (first, second):
        serve = tf.saved_model.load(str(serving_model(result))).signatures["serving_default"]
        served.append(serve(pixels=tf.constant(pixels))["probabilities"].numpy())
        expected = zoo.create_model("tiny", num_classes=3)
        with np.load(result.artifacts["head"]) as head:
            expected.get_layer("output_layer").set_weights([head["kernel"], head["bias"]])
        np.testing.assert_allclose(served[-1], expected(pixels).numpy(), atol=1e-5)
    assert np.abs(served[0] - served[1]).max() > 1e-3  # two runs, two heads


def test_new_images_compute_only_what_is_missing(tiny_registry, tiny_images, encoder_calls):
    run_tiny(tiny_images)
    encoder_calls.clear()
    from PIL import Image

    Image.new("RGB", (TINY_INPUT, TINY_INPUT), (200, 20, 20)).save(tiny_images / "test/red/new.png")
    assert run_tiny(tiny_images).results[0].computed_features == 1
    assert sum(encoder_calls) == 1


def split_of(folder: Path, fraction: float, seed: int) -> tuple[set, set]:
    images = scan_folder(folder)
    names = [path.name for path in images.paths]
    train, validation = stratified_split(images.labels, names, fraction, seed)
    return {images.paths[i] for i in train}, {images.paths[i] for i in validation}


def test_validation_split_is_stratified_seeded_and_stable(tiny_images):
    train, validation = split_of(tiny_images / "train", 0.2, seed=3)
    assert validation and train.isdisjoint(validation) and len(train | validation) == 30
    assert sorted(Counter(path.parent.name for path in validation).values()) == [2, 2, 2]
    assert split_of(tiny_images / "train", 0.2, seed=3)[1] == validation  # seeded
    assert split_of(tiny_images / "train", 0.2, seed=4)[1] != validation
    (tiny_images / "train/red/broken.jpg").write_bytes(b"not really a jpeg")
    after = split_of(tiny_images / "train", 0.2, seed=3)[1]
    assert len(validation - after) <= 1  # a new file takes at most one place


def test_a_class_with_one_image_keeps_it_for_training():
    labels, names = np.array([0, 1, 1, 1]), ["a.png", "b.png", "c.png", "d.png"]
    train, validation = stratified_split(labels, names, fraction=0.6, seed=1)
    assert list(train[labels[train] == 0]) == [0]  # the lone image is not carved away
    assert len(validation) == 2 and set(labels[validation]) == {1}


def test_validation_is_carved_from_decoded_train_images_never_from_test(tiny_images):
    from zoo.data.folders import load_dataset
    from zoo.runs.runner import RunSettings

    dataset, settings = load_dataset(tiny_images / "train", tiny_images / "test"), RunSettings()

    def carve(train_good: np.ndarray) -> pipelines.Splits:
        train = (train_good[:, None], train_good)  # each row's input is its image index
        test = (np.arange(15)[:, None], np.arange(15))
        return pipelines._decoded_splits(train, test, dataset, settings)

    splits = carve(np.arange(30))
    train_rows, validation_rows = splits.train[0][:, 0], splits.validation[0][:, 0]
    assert len(validation_rows) == 3 and set(train_rows).isdisjoint(validation_rows)
    assert len(train_rows) + len(validation_rows) == 30
    assert len(splits.test[0]) == 15  # every test image stays in test, none is validation
    # An unreadable training image takes no place: the validation split stays as it was.
    unreadable = train_rows[0]
    again = carve(np.array([i for i in range(30) if i != unreadable]))
    assert np.array_equal(again.validation[0][:, 0], validation_rows)


def test_failed_backbone_is_a_row_and_the_rest_still_run(
    tmp_path, tiny_savedmodel, tiny_images, monkeypatch
):
    registry = tmp_path / "two.toml"
    registry.write_text(
        registry_text(str(tiny_savedmodel)) + registry_text("/nowhere/model", name="ghost")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    summary = zoo.run(all_backbones=True, data=tiny_images, epochs=1)
    by_name = {r.backbone: r for r in summary.results}
    assert by_name["tiny"].ok
    assert by_name["ghost"].status == "failed" and "/nowhere/model" in by_name["ghost"].reason
    assert summary.exit_code == 1
    assert {r.status for r in list_runs()} == {"ok", "failed"}


def test_cli_run_prints_table_and_json(tiny_registry, tiny_images, capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", "tiny", "--data", str(tiny_images), "--epochs", "1", "--json"])
    assert exited.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"][0]["status"] == "ok" and report["skipped"] == []
    with pytest.raises(SystemExit):
        main(["run", "tiny", "--data", str(tiny_images), "--epochs", "1"])
    output = capsys.readouterr().out
    assert "test acc" in output and "tiny" in output


def test_saved_model_predicts_without_the_backbone_cache(tmp_path, tiny_images, monkeypatch):
    import shutil

    from conftest import export_tiny_savedmodel

    from zoo.runs.predict import predict

    handle = export_tiny_savedmodel(tmp_path / "borrowed")
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(handle)))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    result = run_tiny(tiny_images, epochs=15, batch_size=8).results[0]
    serving_model(result)  # written on first use, which needs the backbone (test_lazy_export.py)
    shutil.rmtree(handle)  # the backbone is gone; the saved run model must stand alone
    predictions = predict(get_run(result.run_id), [tiny_images / "test/blue/blue_0.png"], top_k=2)
    top = predictions[0]["top"]
    assert len(top) == 2 and top[0]["class"] == "blue"
    assert 0.0 <= top[1]["probability"] <= top[0]["probability"] <= 1.0


def test_report_writes_curves_and_confusion_matrix(tiny_registry, tiny_images, tmp_path, capsys):
    from zoo.cli import main

    run_id = run_tiny(tiny_images).results[0].run_id
    with pytest.raises(SystemExit) as exited:
        main(["report", str(run_id), "--out", str(tmp_path / "plots")])
        raise SystemExit(0)
    assert exited.value.code == 0
    for name in ("curves.png", "confusion_matrix.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_fine_tune_mode_trains_the_backbone(tiny_registry, tiny_images):
    result = run_tiny(tiny_images, mode="fine-tune", epochs=1, lr=None).results[0]
    assert result.ok and result.mode == "fine-tune"
    assert get_run(result.run_id).settings["lr"] == 1e-4


def test_fine_tune_can_start_from_a_feature_extraction_head(tiny_registry, tiny_images):
    head_run = run_tiny(tiny_images, epochs=10, batch_size=8).results[0]
    tuned = run_tiny(
        tiny_images, mode="fine-tune", epochs=1, lr=1e-5, head_from=head_run.run_id
    ).results[0]
    assert tuned.ok and tuned.metrics["accuracy"] >= 0.8


def test_create_model_api_matches_the_classic_recipe(tiny_registry):
    model = zoo.create_model("tiny", num_classes=4)
    assert model.output_shape == (None, 4)
    assert not model.get_layer("feature_extraction_layer").trainable
    assert model.optimizer is None  # uncompiled, as the recipe returns it


def test_a_new_head_starts_at_zero_only_on_pretrained_features(tiny_registry):
    from zoo.training.models import classifier_head

    kernel = zoo.create_model("tiny", num_classes=4).get_layer("output_layer").get_weights()[0]
    assert kernel.shape[1] == 4 and not kernel.any()
    from_scratch = classifier_head(4, feature_dim=8, pretrained=False)
    assert from_scratch.get_layer("output_layer").get_weights()[0].any()


def test_list_backbones_api(tiny_registry):
    (facts,) = zoo.list_backbones()
    assert facts["name"] == "tiny" and facts["ready"] is True


def test_fine_tune_real_hub_backbone_from_its_head(zoo_home, lite0_built):
    """EfficientNet-Lite0 with its hub layer trainable: BatchNorm in training mode, checkpoints."""
    from conftest import plant_demo_slice

    demo = plant_demo_slice(zoo_home, train_per_class=3, test_per_class=1)
    head = zoo.run(["efficientnet_lite0"], data=demo, epochs=2, val_fraction=0.34).results[0]
    assert head.ok, head.reason
    tuned = zoo.run(
        ["efficientnet_lite0"],
        data=demo,
        mode="fine-tune",
        epochs=1,
        val_fraction=0.34,
        head_from=head.run_id,
    ).results[0]
    assert tuned.ok, tuned.reason
    assert list(Path(tuned.artifacts["run_folder"], "checkpoint").glob("best.index"))


@pytest.mark.parametrize("source", ["memory", "large memory", "disk"])
def test_training_batches_hold_every_row_once_with_its_label(source, tmp_path, monkeypatch):
    from zoo.data.decoded import DecodedImages
    from zoo.training import fit as training

    pixels = (np.arange(20 * 2 * 2 * 3) % 251).astype(np.uint8).reshape(20, 2, 2, 3)
    pixels[:, 0, 0, 0] = np.arange(20)  # each image's first value is its index
    labels = np.arange(20) % 3
    inputs = pixels.astype(np.float32)
    if source == "large memory":  # read by positions, as from disk, not copied into TensorFlow
        monkeypatch.setattr(training, "COPIED_MATRIX_BYTES", inputs.nbytes - 1)
    if source == "disk":  # the path images take: decoded to a file, read a batch at a time
        stored = np.random.default_rng(5).permutation(20)  # file row r holds image stored[r]
        (tmp_path / "rows.u8").write_bytes(pixels[stored].tobytes())
        inputs = DecodedImages(tmp_path / "rows.u8", (2, 2, 3), np.argsort(stored))
    batches = list(training.batches(inputs, labels, 3, batch_size=6, shuffle_seed=1))
    seen = np.concatenate([rows.numpy() for rows, _ in batches])
    one_hot = np.concatenate([targets.numpy() for _, targets in batches])
    assert [len(rows) for rows, _ in batches] == [6, 6, 6, 2]
    order = seen[:, 0, 0, 0].astype(int)
    assert sorted(order) == list(range(20)) and (order != np.arange(20)).any()
    np.testing.assert_array_equal(seen, pixels[order])
    np.testing.assert_array_equal(one_hot.argmax(1), labels[order])


def test_a_large_matrix_is_shuffled_in_the_order_a_small_one_is(monkeypatch):
    """Past COPIED_MATRIX_BYTES rows are read by positions: the same batches, so the same run."""
    from zoo.training import fit as training

    rows = np.arange(40, dtype=np.float32).reshape(20, 2)
    labels = np.arange(20) % 4

    def order():
        batches = training.batches(rows, labels, 4, batch_size=6, shuffle_seed=3)
        return np.concatenate([batch.numpy() for batch, _ in batches])

    small = order()
    monkeypatch.setattr(training, "COPIED_MATRIX_BYTES", 0)
    np.testing.assert_array_equal(order(), small)


def test_streamed_training_reports_progress_per_step(tiny_registry, tiny_images):
    """An epoch of images streamed from disk can take minutes: the bar moves every step."""
    import contextlib

    from zoo.reporting import Reporter

    class Recording(Reporter):
        def __init__(self):
            self.tasks: dict[str, list[int]] = {}

        @contextlib.contextmanager
        def task(self, description, total):
            done = self.tasks.setdefault(description, [total, 0])
            yield lambda n: done.__setitem__(1, done[1] + n)

    reporter = Recording()
    zoo.run(["tiny"], data=tiny_images, mode="fine-tune", epochs=2, batch_size=8, reporter=reporter)

    # 30 training images less 3 for validation: 27 in batches of 8, 4 steps an epoch.
    assert reporter.tasks["training (4 steps an epoch)"] == [8, 8]
    assert "training" not in reporter.tasks


def test_each_kind_of_run_has_its_pipeline():
    from zoo.api import get_backbone
    from zoo.catalog.combination import Combination
    from zoo.runs.settings import RunSettings

    tiny = get_backbone("efficientnet_lite0")
    plain, staged = RunSettings(), RunSettings(unfreeze="all")
    assert pipelines.way(tiny, "feature-extraction", plain) == "feature-extraction"
    assert pipelines.way(tiny, "fine-tune", plain) == "fine-tune"
    assert pipelines.way(tiny, "fine-tune", staged) == "staged-fine-tune"
    assert pipelines.way(tiny, "from-scratch", plain) == "from-scratch"
    pair = Combination((tiny, tiny))
    assert pipelines.way(pair, "feature-extraction", plain) == "combined"
    assert set(pipelines.PIPELINES) == {
        "feature-extraction",
        "combined",
        "staged-fine-tune",
        "fine-tune",
        "from-scratch",
    }


def test_views_join_the_training_split_once():
    splits = pipelines.Splits(
        train=(np.zeros((4, 2)), np.zeros(4)),
        validation=(np.zeros((1, 2)), np.zeros(1)),
        test=(np.zeros((2, 2)), np.zeros(2)),
        views=(np.ones((8, 2)), np.ones(8)),
    )
    joined = splits.with_views()
    assert len(joined.train[1]) == 12 and joined.views is None
    assert joined.with_views() is joined and len(splits.train[1]) == 4  # the original kept
