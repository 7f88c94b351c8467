"""Classes of different sizes: balanced accuracy beside accuracy, --class-weight balanced in the
Keras head and the NumPy --tune heads alike, and a warning when a class is under 10% of another."""

import numpy as np
import pytest
from conftest import run_main, write_image_folders

from zoo.analysis.evaluation import evaluate
from zoo.data.checks import class_imbalance
from zoo.data.folders import ImageSet
from zoo.runs.store import get_run
from zoo.training import tune
from zoo.training.fit import FitSettings, class_weights, fit
from zoo.training.models import classifier_head


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_accuracy_is_scikit_learns(seed):
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=200, p=[0.7, 0.2, 0.1, 0.0])  # class 3 absent from test
    probabilities = rng.dirichlet(np.ones(4), size=200)
    probabilities[np.arange(200), labels] += rng.random(200)  # better than chance, not perfect
    predicted = probabilities.argmax(axis=1)
    metrics = evaluate(probabilities, labels, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning):  # scikit-learn: y_pred holds a class y_true lacks
        expected = balanced_accuracy_score(labels, predicted)
    assert metrics["balanced_accuracy"] == pytest.approx(expected)
    assert metrics["balanced_accuracy"] != pytest.approx(metrics["accuracy"])


def test_balanced_weights_are_inverse_frequency():
    weights = class_weights(np.array([0] * 6 + [1] * 2 + [2]), 4, "balanced")
    assert weights == pytest.approx([9 / (3 * 6), 9 / (3 * 2), 9 / 3, 1.0])
    assert class_weights(np.array([0, 1]), 2, "none") is None


def test_keras_fit_and_the_numpy_heads_weight_classes_alike():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(40, int), np.ones(8, int), np.full(4, 2)]
    features = rng.normal(size=(52, 16)).astype(np.float32)
    features[np.arange(52), labels] += 1.5
    settings = FitSettings(epochs=5, batch_size=52, learning_rate=0.01, patience=9, seed=0)
    weighted = FitSettings(**{**settings.__dict__, "class_weight": "balanced"})
    kernels = {}
    for fit_settings in (settings, weighted):
        head = classifier_head(3, 16)
        nothing = (features[:0], labels[:0])
        fit(head, (features, labels), nothing, 3, fit_settings, checkpoint=None, log_dir=None)
        kernels[fit_settings.class_weight] = head.get_layer("output_layer").get_weights()[0]
    # One batch an epoch: the shuffled order does not change the step, so NumPy can follow it.
    heads = tune.HeadBatch([tune.HeadSettings(0.01)], 16, 3)
    heads.class_weights = class_weights(labels, 3, "balanced")
    for _ in range(5):
        heads.step(features, labels, np.random.default_rng(0))
    # Adam divides each step by the gradient's size: a tiny gradient's float noise shows.
    np.testing.assert_allclose(heads.kernel[0], kernels["balanced"], atol=2e-4)
    assert np.abs(kernels["none"] - kernels["balanced"]).max() > 5e-3  # the weights mattered


def test_a_small_class_is_found():
    labels = np.array([0] * 30 + [1] * 2 + [2] * 10)
    images = ImageSet([None] * len(labels), labels, ["big", "tiny", "mid"])
    assert class_imbalance(images) == (("tiny", 2), ("big", 30))
    even = ImageSet([None] * 6, np.array([0, 0, 0, 1, 1, 1]), ["a", "b"])
    assert class_imbalance(even) is None


def test_a_weighted_run_warns_of_the_small_class_and_records_balanced_accuracy(
    tiny_registry, tmp_path, capsys
):
    data = write_image_folders(tmp_path / "data", {"train": 1, "test": 3})
    write_image_folders(tmp_path / "more", {"train": 12}, seed=4)
    for image in (tmp_path / "more" / "train" / "red").iterdir():
        image.rename(data / "train" / "red" / f"more_{image.name}")
    args = ["run", "tiny", "--data", str(data), "--epochs", "1", "--class-weight", "balanced"]
    code, out, err = run_main([*args, "--val-fraction", "0"], capsys)
    assert code == 0, err
    assert "class 'blue' has 1 training image, under 10% of 'red''s 13" in err
    record = get_run(1)
    assert record.settings["class_weight"] == "balanced"
    assert 0 <= record.metrics["balanced_accuracy"] <= 1 and "bal acc" in out
    code, _, err = run_main(["run", "tiny", "--class-weight", "inverse"], capsys)
    assert code == 2 and "--class-weight must be one of none, balanced" in err
