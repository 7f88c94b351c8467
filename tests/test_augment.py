"""`--augment K`: cached, deterministic augmented views of the training split's images only."""

import numpy as np
import pytest
from conftest import plant_demo_slice, run_main

import zoo
from zoo.data.augment import OPERATIONS, Augmentation
from zoo.data.folders import file_digest, load_dataset, stratified_split
from zoo.extraction.cache import FeatureCache
from zoo.home import features_dir
from zoo.runs.store import get_run


def pixels(count=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_a_view_depends_only_on_the_image_the_view_index_and_the_settings():
    augmentation = Augmentation.parse(2, "flip,crop,color")
    images, digests = pixels(), ["a", "b", "c"]
    first = augmentation.apply(images, digests, view=0)
    assert first.shape == images.shape and first.dtype == np.uint8
    assert np.array_equal(first, augmentation.apply(images, digests, view=0))  # reruns hit
    assert not np.array_equal(first, augmentation.apply(images, digests, view=1))
    assert not np.array_equal(first[0], augmentation.apply(images[:1], ["z"], view=0)[0])
    assert not np.array_equal(first, images)


def test_flip_alone_mirrors_or_keeps_each_image():
    flip = Augmentation.parse(1, "flip")
    images = pixels(8)
    views = flip.apply(images, [str(i) for i in range(8)], view=0)
    mirrored = [np.array_equal(v, i[:, ::-1]) for v, i in zip(views, images)]
    kept = [np.array_equal(v, i) for v, i in zip(views, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored)


def test_the_cache_key_has_the_settings_and_the_view_but_not_the_count():
    two, three = Augmentation.parse(2, "crop,color"), Augmentation.parse(3, "color,crop")
    assert two.key(1) == three.key(1) and two.key(0) != two.key(1)
    assert two.key(0) != Augmentation.parse(2, "crop").key(0)
    assert Augmentation.parse(1, "color,flip").ops == ("flip", "color")  # OPERATIONS order


@pytest.mark.parametrize(
    "args, message",
    [
        (["--augment", "99"], "--augment must be between 0 and 16"),
        (["--augment", "2", "--augment-ops", "flip,rotate"], "--augment-ops takes"),
        (["--augment", "2", "--augment-ops", ","], "--augment-ops takes"),
        (["--augment", "2", "--mode", "fine-tune"], "--augment caches views through a frozen"),
    ],
)
def test_bad_augment_options_are_one_line_exit_2(tiny_registry, tiny_images, capsys, args, message):
    code, _, err = run_main(["run", "tiny", "--data", str(tiny_images), *args], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def split_digests(data, val_fraction, seed=42):
    """The digests of the images the head fits on and of the validation images."""
    dataset = load_dataset(data / "train", data / "test")
    names = [path.name for path in dataset.train.paths]
    fit, validation = stratified_split(dataset.train.labels, names, val_fraction, seed)
    digest = [file_digest(path) for path in dataset.train.paths]
    test = {file_digest(path) for path in dataset.test.paths}
    return {digest[i] for i in fit}, {digest[i] for i in validation}, test


def caches():
    """Every feature cache folder: name -> the digests it holds."""
    return {
        folder.name: set(FeatureCache(folder.name).rows)
        for folder in sorted(features_dir().iterdir())
    }


def test_views_of_the_fit_images_only_are_cached_and_reused(tiny_registry, tiny_images):
    settings = {"data": tiny_images, "epochs": 2, "val_fraction": 0.34}
    fit, validation, test = split_digests(tiny_images, 0.34)
    first = zoo.run(["tiny"], augment=2, **settings).results[0]
    assert first.ok, first.reason
    assert first.computed_features == 45 + 2 * len(fit)  # originals, then two views of 21
    stored = caches()
    views = {name: rows for name, rows in stored.items() if "-aug-" in name}
    (originals,) = (rows for name, rows in stored.items() if "-aug-" not in name)
    assert sorted(name[-5:] for name in views) == ["view0", "view1"]
    for rows in views.values():
        assert rows == fit and not rows & validation and not rows & test
    assert len(originals) == 45  # views never mix with the originals
    record = get_run(first.run_id)
    assert record.settings["augmentation"]["views"] == 2
    assert record.settings["augmentation"]["ops"] == list(OPERATIONS)
    assert zoo.run(["tiny"], augment=2, **settings).results[0].computed_features == 0
    assert zoo.run(["tiny"], augment=3, **settings).results[0].computed_features == len(fit)
    plain = zoo.run(["tiny"], **settings).results[0]
    assert plain.computed_features == 0 and "augmentation" not in get_run(plain.run_id).settings
    assert get_run(plain.run_id).settings["augment"] == 0


def test_another_set_of_operations_is_cached_apart(tiny_registry, tiny_images):
    settings = {"data": tiny_images, "epochs": 1, "val_fraction": 0.34}
    fit, _, _ = split_digests(tiny_images, 0.34)
    zoo.run(["tiny"], augment=1, augment_ops="crop,color", **settings)
    other = zoo.run(["tiny"], augment=1, augment_ops="crop", **settings).results[0]
    assert other.computed_features == len(fit)


def test_combined_runs_get_each_members_views(tiny_registry, tiny_images, tmp_path, monkeypatch):
    from conftest import export_tiny_savedmodel, registry_text

    other = export_tiny_savedmodel(tmp_path / "other", feature_dim=5, seed=1)
    tiny_registry.write_text(
        tiny_registry.read_text() + registry_text(str(other), name="tiny2", feature_dim=5)
    )
    fit, _, _ = split_digests(tiny_images, 0.34)
    result = zoo.run(["tiny+tiny2"], data=tiny_images, epochs=1, augment=1, val_fraction=0.34)
    assert result.results[0].computed_features == 2 * (45 + len(fit))


def test_the_table_says_the_augmentation(tiny_registry, tiny_images, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    args = ["run", "tiny", "--data", str(tiny_images), "--epochs", "1", "--augment", "2"]
    code, out, err = run_main([*args, "--augment-ops", "crop,color"], capsys)
    assert code == 0, err
    assert "frozen, 2 views" in out
    assert "2 cached views of each training image (crop 0.7-1 of the area, color)" in out


def test_real_lite0_with_augmented_views(zoo_home, lite0_built, capsys, monkeypatch):
    """The real path: EfficientNet-Lite0 features of a demo slice and one view of its fit images."""
    monkeypatch.setenv("COLUMNS", "200")
    demo = plant_demo_slice(zoo_home, train_per_class=4, test_per_class=1)
    fit, _, _ = split_digests(demo, 0.25)
    args = ["run", "efficientnet_lite0", "--val-fraction", "0.25", "--epochs", "2", "--json"]
    code, out, err = run_main([*args, "--augment", "1", "--augment-ops", "crop,color"], capsys)
    assert code == 0, err
    import json

    (row,) = json.loads(out)["runs"]
    assert row["status"] == "ok" and row["metrics"]["computed_features"] == 50 + len(fit)
    assert row["settings"]["augmentation"]["ops"] == ["crop", "color"]


def test_tune_also_chooses_whether_the_views_help(tiny_registry, tiny_images, capsys, monkeypatch):
    from zoo.training import tune

    monkeypatch.setenv("COLUMNS", "200")
    refits, train_head = [], tune.train_head
    monkeypatch.setattr(
        tune,
        "train_head",
        lambda settings, train, *a, **k: (
            refits.append(len(train[1])) or train_head(settings, train, *a, **k)
        ),
    )
    args = ["run", "tiny", "--data", str(tiny_images), "--tune", "--augment", "1"]
    code, out, err = run_main([*args, "--val-fraction", "0.34"], capsys)
    assert code == 0, err
    chosen = get_run(1).settings["tuned"]
    trials = chosen["trials"]
    assert [trial["augmented"] for trial in trials] == [False] * 8 + [True] * 8
    assert chosen["val_accuracy"] == max(trial["val_accuracy"] for trial in trials)
    # The refit trains on what won: train (+ its views if they won) + validation.
    fit, validation, _ = split_digests(tiny_images, 0.34)
    assert refits == [len(fit) + len(validation) + (len(fit) if chosen["augmented"] else 0)]
    label = "frozen, tuned, 1 view" + ("" if chosen["augmented"] else " unused")
    views = "with the augmented views" if chosen["augmented"] else "without the augmented views"
    assert label in out and views in out
