"""`zoo run A+B`: one head on several frozen backbones' features, concatenated."""

from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TINY_FEATURES,
    export_tiny_savedmodel,
    plant_demo_slice,
    registry_text,
    run_main,
)

import zoo
from zoo.catalog.combination import Combination
from zoo.catalog.plugins import load_catalog
from zoo.runs.ensemble import ensemble
from zoo.runs.store import get_run

OTHER_WIDTH = 5


@pytest.fixture
def two_tiny(tmp_path, tiny_savedmodel, monkeypatch) -> Path:
    """`tiny` (8 features) and `tiny2` (5 features, other weights), made the active registry."""
    other = export_tiny_savedmodel(tmp_path / "other", feature_dim=OTHER_WIDTH, seed=1)
    path = tmp_path / "registry.toml"
    path.write_text(
        registry_text(str(tiny_savedmodel))
        + registry_text(str(other), name="tiny2", feature_dim=OTHER_WIDTH, params_m=0.5)
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def test_a_combined_run_trains_one_head_on_both_caches(two_tiny, tiny_images):
    first = zoo.run(["tiny+tiny2"], data=tiny_images, epochs=2).results[0]
    assert first.ok, first.reason
    assert (first.backbone, first.mode) == ("tiny+tiny2", "feature-extraction")
    assert first.computed_features == 2 * 45  # each member's 30 train + 15 test images, once
    with np.load(first.artifacts["head"]) as head:
        assert head["kernel"].shape == (TINY_FEATURES + OTHER_WIDTH, 3)  # the widths, summed
    record = get_run(first.run_id)
    members = record.settings["combination"]
    assert [m["backbone"] for m in members] == ["tiny", "tiny2"]  # the name's order
    assert all(m["engine"] for m in members) and record.mode == "feature-extraction"
    assert "model" not in record.artifacts and Path(record.artifacts["test_probabilities"])
    # Each member read its own cache: the same run again, or a member alone, computes nothing.
    again = zoo.run(["tiny+tiny2"], data=tiny_images, epochs=2).results[0]
    alone = zoo.run(["tiny2"], data=tiny_images, epochs=2).results[0]
    assert (again.computed_features, alone.computed_features) == (0, 0)
    assert again.metrics["accuracy"] == first.metrics["accuracy"]  # same seed, same features
    ensembled = ensemble([first.run_id, alone.run_id])
    assert ensembled.metrics["test_images"] == 15


def test_the_order_of_the_name_is_the_order_of_the_features(two_tiny, tiny_images):
    result = zoo.run(["tiny2+tiny"], data=tiny_images, epochs=1).results[0]
    members = get_run(result.run_id).settings["combination"]
    assert [m["feature_dim"] for m in members] == [OTHER_WIDTH, TINY_FEATURES]


def test_the_table_shows_the_combined_row_and_its_members(
    two_tiny, tiny_images, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_main(
        ["run", "tiny", "tiny+tiny2", "--data", str(tiny_images), "--epochs", "1"], capsys
    )
    assert code == 0, err
    assert "tiny+tiny2" in out and "joins features: tiny 8 + tiny2 5 = 13 per image" in out
    code, out, _ = run_main(["runs"], capsys)
    assert code == 0 and "tiny+tiny2" in out


def test_export_and_predict_of_a_combined_run_say_why_not(two_tiny, tiny_images, capsys):
    run_id = zoo.run(["tiny+tiny2"], data=tiny_images, epochs=1).results[0].run_id
    image = next((tiny_images / "test" / "red").iterdir())
    for args in (["export", str(run_id)], ["predict", str(image), "--run", str(run_id)]):
        code, _, err = run_main(args, capsys)
        assert code == 2 and "no single model" in err and "zoo ensemble" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tune_works_on_combined_features(two_tiny, tiny_images):
    result = zoo.run(["tiny+tiny2"], data=tiny_images, tune=True, val_fraction=0.34).results[0]
    assert result.ok and result.tuned and get_run(result.run_id).settings["tuned"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("tiny+", "join two or more backbone names with '+'"),
        ("+tiny", "join two or more backbone names with '+'"),
        ("tiny+tiny", "names tiny twice"),
        ("tiny+tiny3", "unknown backbone 'tiny3'; did you mean"),
    ],
)
def test_bad_combined_names_are_one_line_exit_2(two_tiny, tiny_images, capsys, name, message):
    code, _, err = run_main(["run", name, "--data", str(tiny_images)], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "efficientnet_lite0+scratch_cnn"], "scratch_cnn has no pretrained weights"),
        (
            ["run", "efficientnet_lite0+efficientnet_lite1", "--mode", "fine-tune"],
            "trains one head on frozen features: drop --mode fine-tune",
        ),
        (["pull", "efficientnet_lite0+efficientnet_lite1"], "only `zoo run` combines"),
    ],
)
def test_combinations_only_of_frozen_backbones_and_only_for_run(capsys, args, message):
    code, _, err = run_main(args, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_all_never_adds_combinations():
    selected = load_catalog().select([], True, combine=True)
    assert selected and not any(isinstance(b, Combination) for b in selected)


def test_real_lite0_features_joined_with_another_backbone(
    zoo_home, lite0_built, tmp_path, monkeypatch
):
    """The real path: EfficientNet-Lite0 (converted offline) beside a tiny backbone, on a demo
    slice; Lite1 would be the natural partner, but its conversion doubles the test's time."""
    shipped = (Path(__file__).parents[1] / "registry.toml").read_text()
    lite0 = shipped[shipped.index("[backbones.efficientnet_lite0]") :]
    lite0 = lite0[: lite0.index("\n[backbones.", 1)]
    tiny = export_tiny_savedmodel(tmp_path / "tiny")
    registry = tmp_path / "registry.toml"
    registry.write_text(lite0 + "\n" + registry_text(str(tiny)))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    demo = plant_demo_slice(zoo_home, train_per_class=3, test_per_class=1)
    result = zoo.run(["efficientnet_lite0+tiny"], data=demo, epochs=2).results[0]
    assert result.ok, result.reason
    with np.load(result.artifacts["head"]) as head:
        assert head["kernel"].shape == (1280 + TINY_FEATURES, 10)
    assert result.computed_features == 2 * 40
    lite0_alone = zoo.run(["efficientnet_lite0"], data=demo, epochs=2).results[0]
    assert lite0_alone.ok and lite0_alone.computed_features == 0  # the combined run cached it
