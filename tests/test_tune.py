"""--tune: a seeded search over head settings on validation, then a refit; the record says what."""

import numpy as np
import pytest
from conftest import plant_demo_slice

import zoo
from zoo.cli import main
from zoo.runs.store import get_run
from zoo.training import tune
from zoo.training.models import classifier_head


def test_candidates_are_seeded_distinct_and_start_with_the_defaults():
    first = tune.candidates(3e-3, seed=42)
    assert first == tune.candidates(3e-3, seed=42)
    assert first != tune.candidates(3e-3, seed=7)
    assert len(first) == tune.CANDIDATES == len(set(first))
    assert first[0] == tune.HeadSettings(3e-3)  # the untuned head is always a contender


def test_head_settings_reach_the_layers():
    head = classifier_head(3, 8, dropout=0.5, l2=1e-3)
    assert [layer.name for layer in head.layers] == ["dropout", "output_layer"]
    head.get_layer("output_layer").set_weights([np.ones((8, 3)), np.zeros(3)])
    assert np.isclose(float(sum(head.losses)), 1e-3 * 24)
    plain = classifier_head(3, 8)
    assert [layer.name for layer in plain.layers] == ["output_layer"] and not plain.losses


def separable(rows: int, seed: int, features: int = 16, classes: int = 3):
    """Features whose class shows in a few noisy columns: (features, integer labels)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    features = rng.normal(0, 1, (rows, features)).astype(np.float32)
    features[np.arange(rows), labels] += 2.0
    return features, labels


def keras_steps(settings, batches, classes):
    """What `classifier_head` + `fit` do on these batches (no dropout): (head, its loss)."""
    import tensorflow as tf

    head = classifier_head(classes, batches[0][0].shape[1], l2=settings.l2)
    optimizer, cross_entropy = settings.keras_optimizer(), settings.keras_loss()  # as fit compiles

    def loss(features, labels):  # what Keras reports as loss and val_loss
        one_hot = np.eye(classes, dtype=np.float32)[labels]
        return cross_entropy(one_hot, head(features, training=True)) + sum(head.losses)

    for features, labels in batches:
        with tf.GradientTape() as tape:
            value = loss(features, labels)
        variables = head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
    return head, loss


def test_the_batched_heads_train_as_keras_trains_each_head():
    settings = [tune.HeadSettings(3e-3), tune.HeadSettings(1e-2, l2=0.05, label_smoothing=0.1)]
    features, labels = separable(96, seed=0)
    batches = [(features[i : i + 32], labels[i : i + 32]) for i in range(0, 96, 32)] * 15
    heads = tune.HeadBatch(settings, 16, 3)
    for batch in batches:  # 45 steps: far enough for L2 and smoothing to shape the weights
        heads.step(*batch, np.random.default_rng(0))
    watched, _, _ = heads.losses(features, labels)
    for c, setting in enumerate(settings):
        head, loss = keras_steps(setting, batches, 3)
        kernel, bias = (v.numpy() for v in head.trainable_variables)
        np.testing.assert_allclose(heads.kernel[c], kernel, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(heads.bias[c], bias, rtol=1e-3, atol=1e-5)
        assert np.isclose(watched[c], float(loss(features, labels)), rtol=1e-4)


def test_both_paths_read_the_one_recipe(monkeypatch):
    """Change Adam's constants in HeadRecipe alone: Keras and the NumPy heads still agree, and
    their weights moved (so neither path keeps constants of its own)."""
    from zoo.training.recipe import HeadRecipe

    setting = HeadRecipe(1e-2, l2=0.05, label_smoothing=0.1)
    features, labels = separable(64, seed=6)
    batches = [(features[i : i + 32], labels[i : i + 32]) for i in (0, 32)] * 5

    def numpy_kernel():
        heads = tune.HeadBatch([setting], 16, 3)
        for batch in batches:
            heads.step(*batch, np.random.default_rng(0))
        return heads.kernel[0]

    usual = numpy_kernel()
    monkeypatch.setattr(HeadRecipe, "BETA_1", 0.5)
    monkeypatch.setattr(HeadRecipe, "EPSILON", 1e-2)
    changed = numpy_kernel()
    head, _ = keras_steps(setting, batches, 3)
    np.testing.assert_allclose(changed, head.trainable_variables[0].numpy(), rtol=1e-3, atol=1e-5)
    assert not np.allclose(changed, usual, rtol=1e-3, atol=1e-5)


def test_dropout_drops_features_and_scales_the_rest_as_keras_does():
    features, labels = separable(32, seed=1)
    dropped = tune.HeadBatch([tune.HeadSettings(3e-3, dropout=0.5)], 16, 3)
    dropped.step(features, labels, np.random.default_rng(5))
    keep = np.random.default_rng(5).random((1, 32, 16), np.float32) < 0.5
    masked = tune.HeadBatch([tune.HeadSettings(3e-3)], 16, 3)  # the same mask, applied by hand
    masked.step(features * keep[0] / 0.5, labels, np.random.default_rng(0))
    assert 0 < keep.mean() < 1
    assert np.allclose(dropped.kernel, masked.kernel) and np.allclose(dropped.bias, masked.bias)


def test_each_trial_reports_its_best_epoch_as_a_head_trained_that_long_scores():
    train, validation = separable(120, seed=2), separable(45, seed=3)
    settings = tune.candidates(3e-3, seed=4)
    trials = tune.HeadBatch(settings, 16, 3).train(train, validation, 32, seed=9, max_epochs=12)
    assert [t.settings for t in trials] == settings
    for c, trial in enumerate(trials):
        assert 1 <= trial.epochs <= 12
        again = tune.HeadBatch(settings, 16, 3)
        again.train(train, validation, 32, seed=9, max_epochs=trial.epochs, patience=99)
        _, plain, accuracy = again.losses(*validation)
        assert np.isclose(plain[c], trial.val_loss) and np.isclose(accuracy[c], trial.val_accuracy)
    assert max(t.val_accuracy for t in trials) > 0.7  # chance is 1/3: the heads learned


def test_the_search_stops_each_candidate_after_patience_epochs():
    from zoo.training.fit import FitSettings

    train, validation = separable(120, seed=2), separable(45, seed=3)

    def epochs(patience):
        settings = FitSettings(5, 32, 3e-3, patience, seed=4)
        return [trial.epochs for trial in tune.search(train, validation, 3, settings)[1]]

    impatient, patient = epochs(1), epochs(30)
    assert all(a <= b for a, b in zip(impatient, patient)) and impatient != patient


def test_a_head_whose_loss_is_never_finite_is_the_last_choice():
    train, (features, labels) = separable(60, seed=5), separable(30, seed=6)
    features[0, 0] = np.nan  # every candidate's validation loss is NaN
    trials = tune.HeadBatch(tune.candidates(3e-3, seed=1), 16, 3).train(
        train, (features, labels), 32, seed=0, max_epochs=5
    )
    assert {(t.epochs, t.val_loss, t.val_accuracy) for t in trials} == {(1, float("inf"), 0.0)}


def test_tune_picks_the_best_validation_trial_refits_and_stores_it(tiny_registry, tiny_images):
    summary = zoo.run(["tiny"], data=tiny_images, tune=True, val_fraction=0.34, seed=3)
    (result,) = summary.results
    assert result.ok, result.reason
    chosen = result.tuned
    trials = chosen["trials"]
    assert len(trials) == tune.CANDIDATES
    best = max(trial["val_accuracy"] for trial in trials)
    assert chosen["val_accuracy"] == best
    assert 1 <= chosen["epochs"] <= tune.MAX_EPOCHS
    # The refit trains on train + validation for the chosen epochs: no validation curve.
    assert result.epochs_run == chosen["epochs"] and "val_loss" not in result.history
    record = get_run(result.run_id)
    assert record.settings["tune"] is True
    assert record.settings["tuned"] == chosen
    assert record.settings["lr"] == chosen["learning_rate"]


def run_main(args, capsys):
    """The real entry point, with its error handling: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--val-fraction", "0"], "--tune chooses on the validation split"),
        (["--mode", "fine-tune"], "--tune searches a frozen backbone's head"),
    ],
)
def test_tune_needs_a_validation_split_and_a_frozen_backbone(
    tiny_registry, tiny_images, capsys, extra, message
):
    code, _, err = run_main(["run", "tiny", "--data", str(tiny_images), "--tune", *extra], capsys)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tune_on_real_lite0_features_says_what_it_chose(zoo_home, lite0_built, capsys, monkeypatch):
    """The real path: EfficientNet-Lite0 features of a demo slice, tuned through the CLI."""
    monkeypatch.setenv("COLUMNS", "200")
    plant_demo_slice(zoo_home, train_per_class=6, test_per_class=2)
    code, out, err = run_main(
        ["run", "efficientnet_lite0", "--tune", "--val-fraction", "0.34"], capsys
    )
    assert code == 0, err
    assert "frozen, tuned" in out
    assert "tuned on validation: lr" in out and f"best of {tune.CANDIDATES}" in out
