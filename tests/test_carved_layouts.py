"""Runs on layouts whose test split is carved or listed (class folders, train/ alone, a
manifest): `zoo export` finds their test images again without --data, and the screen reads
every layout."""

import json
import shutil

import pytest
from conftest import run_main, write_image_folders

from zoo.runs.store import get_run


def make_layout(tmp_path, kind):
    """(the `zoo run` arguments for this layout, the folder that holds its images)."""
    if kind == "class folders":
        root = write_image_folders(tmp_path / "flowers", {".": 8})
        return ["--data", str(root)], root
    if kind == "train only":
        root = write_image_folders(tmp_path / "kaggle", {"train": 8})
        return ["--data", str(root)], root
    images = write_image_folders(tmp_path / "shipped", {"all": 8})
    lines = ["path,label"] + [
        f"{image.relative_to(tmp_path)},{image.parent.name}"
        for image in sorted(images.rglob("*.png"))
    ]
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return ["--manifest", str(manifest)], images


@pytest.mark.parametrize("kind", ["class folders", "train only", "manifest"])
def test_export_finds_a_carved_test_split_without_data(tiny_registry, tmp_path, capsys, kind):
    data, _ = make_layout(tmp_path, kind)
    code, _, err = run_main(["run", "tiny", *data, "--epochs", "1"], capsys)
    assert code == 0, err
    record = get_run(1)
    assert record.settings["split"]["layout"] == kind
    out = tmp_path / "export"
    args = ["export", "1", "--format", "tflite", "--out", str(out), "--json"]
    code, stdout, err = run_main(args, capsys)
    assert code == 0, err
    facts = json.loads(stdout)
    # The same test images the run held out, found again by content digest.
    assert facts["test_images_checked"] == record.metrics["test_images"] > 0
    assert facts["top1_agreement"] >= 0.99


def test_export_of_a_moved_class_folder_names_it_and_takes_data(tiny_registry, tmp_path, capsys):
    data, root = make_layout(tmp_path, "class folders")
    code, _, err = run_main(["run", "tiny", *data, "--epochs", "1"], capsys)
    assert code == 0, err
    moved = shutil.move(root, tmp_path / "elsewhere")
    code, _, err = run_main(
        ["export", "1", "--format", "tflite", "--out", str(tmp_path / "a")], capsys
    )
    assert code == 2 and str(root) in err and "--data DIR" in err
    assert len(err.strip().splitlines()) == 1
    args = ["export", "1", "--format", "tflite", "--out", str(tmp_path / "b"), "--json"]
    code, stdout, err = run_main([*args, "--data", str(moved)], capsys)
    assert code == 0, err
    assert json.loads(stdout)["test_images_checked"] == get_run(1).metrics["test_images"]


@pytest.mark.parametrize("kind", ["class folders", "manifest"])
def test_screen_only_reads_any_layout_and_finds_the_run_on_its_split(
    tiny_registry, tmp_path, capsys, kind
):
    data, _ = make_layout(tmp_path, kind)
    screen = ["run", "tiny", *data, "--screen-only", "--screen-fraction", "0.5", "--json"]
    code, out, err = run_main(screen, capsys)
    assert code == 0, err
    facts = json.loads(out)
    (row,) = facts["ranking"]
    assert row["backbone"] == "tiny" and row["trained_run"] is None
    code, _, err = run_main(["run", "tiny", *data, "--epochs", "1"], capsys)
    assert code == 0, err
    trained = get_run(1)
    code, out, err = run_main(screen, capsys)
    assert code == 0, err
    (row,) = json.loads(out)["ranking"]
    # The screen split the data as the run did: same fingerprint, so the run is found.
    assert row["trained_run"] == 1 and row["trained_accuracy"] == trained.metrics["accuracy"]
    assert row["computed_features"] == 0  # the run cached every training image's vector
    train_images = 24 - trained.metrics["test_images"]
    assert facts["images"] <= train_images  # screened from the training split only


def test_deploy_measures_a_carved_test_split(tiny_registry, tmp_path, capsys):
    data, _ = make_layout(tmp_path, "class folders")
    args = ["run", "tiny", *data, "--epochs", "1", "--deploy", "tflite-float16", "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    (run,) = json.loads(out)["runs"]
    figures = run["metrics"]["deploy"]["tflite-float16"]
    assert "error" not in figures, figures
    # Every test image the run held out, and only those: the deployed model is judged on them.
    assert figures["test_images"] == run["metrics"]["test_images"] > 0
