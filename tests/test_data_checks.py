"""Leaks and look-alikes: test images that are training images are warned about, dropped on
request and listed by `zoo inspect`; near-copies are found from cached features."""

import json
import shutil

import numpy as np
from conftest import export_tiny_savedmodel, registry_text, run_main, write_image_folders
from PIL import Image

from zoo.analysis.duplicates import near_duplicates
from zoo.runs.store import get_run


def plant_copies(data, count):
    """Copy `count` test images into train under new names: the same content in both splits."""
    tests = sorted((data / "test").rglob("*.png"))[:count]
    for image in tests:
        shutil.copy(image, data / "train" / image.parent.name / f"copy_{image.name}")
    return tests


def test_ten_test_images_in_train_are_warned_about_dropped_and_listed(
    tiny_registry, tiny_images, capsys
):
    planted = plant_copies(tiny_images, 10)
    code, out, err = run_main(["run", "tiny", "--data", str(tiny_images), "--epochs", "1"], capsys)
    assert code == 0, err
    assert "10 test images are also in train" in err and f"zoo inspect {tiny_images}" in err
    assert get_run(1).metrics["test_images"] == 15

    code, _, err = run_main(
        ["run", "tiny", "--data", str(tiny_images), "--epochs", "1", "--drop-leaks"], capsys
    )
    assert code == 0 and "dropped from test (--drop-leaks)" in err
    dropped = get_run(2)
    assert dropped.metrics["test_images"] == 5
    assert dropped.settings["split"]["dropped_leaks"] == 10
    assert dropped.data_fingerprint != get_run(1).data_fingerprint  # another test set

    code, out, _ = run_main(["inspect", str(tiny_images), "--json"], capsys)
    facts = json.loads(out)
    assert code == 0 and facts["leaks"] == 10
    assert sorted(row["test"] for row in facts["duplicates"]["across"]) == sorted(map(str, planted))
    assert facts["counts"]["train"] == {"blue": 15, "green": 15, "red": 10}
    assert facts["modes"] == {"RGB": 55} and facts["sizes"] == {"32x32": 55}
    code, out, _ = run_main(["inspect", str(tiny_images)], capsys)
    assert "10 test images also in train" in out and "copy_" in out


def test_inspect_reports_unreadable_files_duplicates_within_a_split_and_modes(tmp_path, capsys):
    data = write_image_folders(tmp_path / "data", {"train": 3, "test": 2})
    (data / "train" / "red" / "notes.png").write_text("not an image")
    Image.new("L", (40, 20)).save(data / "train" / "blue" / "gray.png")
    shutil.copy(data / "train" / "green" / "green_0.png", data / "train" / "green" / "again.png")
    code, out, _ = run_main(["inspect", str(data), "--json"], capsys)
    facts = json.loads(out)
    assert code == 0
    assert [row["path"] for row in facts["unreadable"]] == [str(data / "train/red/notes.png")]
    assert facts["modes"] == {"RGB": 16, "L": 1} and facts["sizes"]["40x20"] == 1
    assert facts["duplicates"]["within"] == [
        {
            "split": "train",
            "paths": [str(data / "train/green/again.png"), str(data / "train/green/green_0.png")],
        }
    ]
    assert facts["near_duplicates"]["status"].startswith("no cached efficientnet_lite0 features")


def test_near_duplicates_are_the_pairs_above_the_threshold():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 64)).astype(np.float32)
    test = rng.normal(size=(600, 64)).astype(np.float32)  # more than one block of rows
    test[7] = 3 * train[42] + rng.normal(scale=0.05, size=64)  # scaled, slightly changed copy
    test[400] = train[5]
    found = near_duplicates(test, train, threshold=0.98)
    assert [(i, j) for i, j, _ in found] == [(400, 5), (7, 42)]
    assert found[0][2] > found[1][2] >= 0.98
    assert near_duplicates(test[:0], train) == []


def blocky_images(root, per_class, seed=0):
    """Black-and-white 4x4 block patterns, tinted by class: two different patterns are at most
    ~0.97 cosine apart (15 of 16 blocks shared), a copy of one is ~1."""
    rng = np.random.default_rng(seed)
    tints = {"red": (1.0, 0.4, 0.4), "green": (0.4, 1.0, 0.4)}
    for split, count in per_class.items():
        for name, tint in tints.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                blocks = rng.integers(0, 2, size=(4, 4, 1)) * 255 * np.array(tint)
                pixels = np.kron(blocks, np.ones((8, 8, 1))).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{name}_{index}.png")
    return root


def test_a_resized_recompressed_copy_is_found_from_cached_features(tmp_path, capsys, monkeypatch):
    # 256 features of the 48 thumbnail values: the projection keeps the images' angles.
    model = export_tiny_savedmodel(tmp_path / "wide", feature_dim=256)
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(model), feature_dim=256))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    data = blocky_images(tmp_path / "data", {"train": 8, "test": 4})
    original = data / "test" / "red" / "red_2.png"
    with Image.open(original) as image:
        image.resize((48, 48), Image.BILINEAR).save(
            data / "train" / "red" / "resized.jpg", quality=85
        )
    code, out, _ = run_main(["inspect", str(data), "--backbone", "tiny", "--json"], capsys)
    assert json.loads(out)["near_duplicates"]["status"].startswith("no cached tiny features")
    code, _, err = run_main(["run", "tiny", "--data", str(data), "--epochs", "1"], capsys)
    assert code == 0, err
    code, out, _ = run_main(["inspect", str(data), "--backbone", "tiny", "--json"], capsys)
    near = json.loads(out)["near_duplicates"]
    assert near["status"] == "ok" and near["compared"] == {"test": 8, "train": 17}
    assert [(p["test"], p["train"]) for p in near["pairs"]] == [
        (str(original), str(data / "train" / "red" / "resized.jpg"))
    ]
    assert json.loads(out)["leaks"] == 0  # not the same bytes: only the features tell
