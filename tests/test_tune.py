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
    assert record["settings"]["tune"] is True
    assert record["settings"]["tuned"] == chosen
    assert record["settings"]["lr"] == chosen["learning_rate"]


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


def test_tune_on_real_lite0_features_says_what_it_chose(zoo_home, capsys, monkeypatch):
    """The real path: EfficientNet-Lite0 features of a demo slice, tuned through the CLI."""
    monkeypatch.setenv("COLUMNS", "200")
    plant_demo_slice(zoo_home, train_per_class=6, test_per_class=2)
    code, out, err = run_main(
        ["run", "efficientnet_lite0", "--tune", "--val-fraction", "0.34"], capsys
    )
    assert code == 0, err
    assert "frozen, tuned" in out
    assert "tuned on validation: lr" in out and f"best of {tune.CANDIDATES}" in out
