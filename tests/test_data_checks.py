"""Leaks and look-alikes: test images that are training images are warned about, dropped on
request and listed by `zoo inspect`; near-copies are found from cached features."""

import json
import shutil

import numpy as np
import pytest
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


def plant_exact_and_near_copies(tmp_path, monkeypatch):
    """Blocky images under a 256-feature tiny backbone, with one test image copied into train
    byte for byte and another resized and recompressed as JPEG into train."""
    model = export_tiny_savedmodel(tmp_path / "wide", feature_dim=256)
    registry = tmp_path / "registry.toml"
    registry.write_text(registry_text(str(model), feature_dim=256))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    data = blocky_images(tmp_path / "data", {"train": 8, "test": 4})
    exact = data / "test" / "green" / "green_1.png"
    shutil.copy(exact, data / "train" / "green" / "copy.png")
    near = data / "test" / "red" / "red_2.png"
    with Image.open(near) as image:
        image.resize((48, 48), Image.BILINEAR).save(
            data / "train" / "red" / "resized.jpg", quality=85
        )
    return (
        data,
        (exact, data / "train" / "green" / "copy.png"),
        (near, data / "train/red/resized.jpg"),
    )


def test_zoo_run_warns_of_near_copies_once_the_features_are_cached(tmp_path, capsys, monkeypatch):
    data, _, _ = plant_exact_and_near_copies(tmp_path, monkeypatch)
    args = ["run", "tiny", "--data", str(data), "--epochs", "1"]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert "1 test image is also in train" in err
    assert "near-cop" not in err  # nothing cached yet, and the warning computes no feature
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert (
        "1 test image is a near-copy of a training image (cosine >= 0.98, tiny features): "
        f"`zoo inspect {data} --backbone tiny` lists them"
    ) in err
    assert get_run(2).metrics["computed_features"] == 0  # all from the cache


def test_inspect_report_puts_exact_and_near_pairs_on_the_contact_sheet(
    tmp_path, capsys, monkeypatch
):
    data, exact, near = plant_exact_and_near_copies(tmp_path, monkeypatch)
    code, _, err = run_main(["run", "tiny", "--data", str(data), "--epochs", "1"], capsys)
    assert code == 0, err
    page = tmp_path / "look" / "data.html"
    args = ["inspect", str(data), "--backbone", "tiny", "--report", str(page), "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert json.loads(out)["report"] == str(page)
    text = page.read_text()

    def sheet(name):
        body = text.split(f'<div class="sheet" id="{name}">', 1)[1].split("</div>\n", 1)[0]
        return body.split('<div class="pair">')[1:]

    (exact_pair,) = sheet("exact")
    assert str(exact[0]) in exact_pair and str(exact[1]) in exact_pair
    assert "same content" in exact_pair
    (near_pair,) = sheet("near")
    assert str(near[0]) in near_pair and str(near[1]) in near_pair
    cosine = float(near_pair.split("cosine ")[1].split("<")[0])
    assert 0.98 <= cosine <= 1
    for pair in (exact_pair, near_pair):  # both thumbnails inlined, nothing linked
        assert pair.count('src="data:image/png;base64,') == 2
    assert "http" not in text.replace("http-equiv", "")
    assert "<td>red</td><td>9</td><td>4</td>" in text  # the class counts, train and test

    code, _, err = run_main(["inspect", str(data), "--report", str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in err and len(err.strip().splitlines()) == 1


def test_the_inspect_hint_names_the_manifest_and_the_carved_fraction(tmp_path):
    from zoo.data.layouts import find_layout
    from zoo.runs.inspection import inspect_command

    images = write_image_folders(tmp_path / "images", {"all": 2})
    manifest = tmp_path / "labels.csv"
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(images.rglob("*.png"))]
    manifest.write_text("\n".join(rows) + "\n")
    layout = find_layout(None, manifest=manifest)
    assert inspect_command(layout, 0.3) == f"zoo inspect --manifest {manifest} --test-fraction 0.3"
    given = find_layout(write_image_folders(tmp_path / "split", {"train": 2, "test": 1}))
    assert inspect_command(given, 0.3) == f"zoo inspect {tmp_path / 'split'}"


def png_header_only(path, width, height):
    """A small file whose PNG header declares width x height (no real pixel data)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_inspect_keys_every_file_as_zoo_run_does_and_survives_a_huge_header(tmp_path):
    """A carved split puts an unreadable file where the run puts it only if both key it alike;
    a header of 400 megapixels is listed, not a crash (Pillow's own check raises past 179)."""
    from zoo.data.inspect import scan_files
    from zoo.reporting import Reporter
    from zoo.runs.runner import _digests

    data = write_image_folders(tmp_path / "flowers", {".": 3})
    (data / "red" / "notes.png").write_text("not an image")
    png_header_only(data / "green" / "huge.png", 20000, 20000)
    paths = sorted(data.rglob("*.png"))
    scan = scan_files(paths)
    assert scan.digests == _digests(paths, Reporter())
    reasons = {path.name: reason for path, reason in scan.unreadable}
    assert set(reasons) == {"notes.png", "huge.png"}
    assert reasons["huge.png"] == "20000x20000 pixels is over zoo's limit of 250 megapixels"
    assert scan.sizes == {"32x32": 9}
    # A process of its own: where nothing else has imported zoo's decoder first.
    import os
    import subprocess
    import sys

    env = {**os.environ, "ZOO_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "zoo", "inspect", str(data), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["unreadable"]) == 2


def brute_force_near_duplicates(test, train, threshold):
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(test) @ unit(train).T
    best = similarity.argmax(axis=1)
    scores = similarity[np.arange(len(test)), best]
    return {(i, int(best[i])) for i in np.flatnonzero(scores >= threshold)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bounded_search_finds_what_comparing_every_pair_finds(seed):
    """Features like a CNN's (non-negative, a shared mean direction, so every pair is fairly
    alike) with copies planted on both sides of the threshold, in more than one block of rows."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.5, 1.5, size=256)
    train = (np.abs(rng.normal(size=(700, 256))) * mean).astype(np.float32)
    test = (np.abs(rng.normal(size=(600, 256))) * mean).astype(np.float32)
    for row in range(0, 600, 7):  # noisy copies: cosines from about 0.95 to 1
        noise = rng.normal(scale=rng.uniform(0.0, 0.4), size=256) * mean
        test[row] = np.abs(train[(row * 3) % 700] + noise)
    found = near_duplicates(test, train, threshold=0.98)
    expected = brute_force_near_duplicates(test, train, 0.98)
    assert 10 < len(expected) < 86  # some copies fall short of the threshold, some reach it
    assert {(i, j) for i, j, _ in found} == expected


def test_a_crowd_of_look_alikes_is_compared_in_full_with_the_same_answer():
    rng = np.random.default_rng(3)
    base = np.abs(rng.normal(size=128)) + 1
    train = (base + rng.normal(scale=0.05, size=(300, 128))).astype(np.float32)
    test = (base + rng.normal(scale=0.05, size=(50, 128))).astype(np.float32)
    found = near_duplicates(test, train, threshold=0.98)
    assert len(found) == 50  # every pair is alike: the bound prunes nothing
    assert {(i, j) for i, j, _ in found} == brute_force_near_duplicates(test, train, 0.98)
