"""The layouts users hold: train/+test/, train/+val/+test/, class folders, train/ alone, a CSV
manifest; the carved test split is stable as images are added; the split is in the fingerprint."""

import hashlib
import shutil

import numpy as np
import pytest
from conftest import run_main, write_image_folders

import zoo
from zoo.data.layouts import build_dataset, find_layout, split_by_digest
from zoo.reporting import Reporter
from zoo.runs.store import get_run


class Lines(Reporter):
    def __init__(self):
        self.lines = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


def run_tiny(reporter=None, **options):
    reporter = reporter or Lines()
    (result,) = zoo.run(["tiny"], epochs=1, reporter=reporter, **options).results
    assert result.ok, result.reason
    return result, get_run(result.run_id), reporter.lines


def test_given_validation_replaces_the_carved_one_and_says_so(tiny_registry, tmp_path):
    data = write_image_folders(tmp_path / "data", {"train": 6, "validation": 3, "test": 2})
    result, record, lines = run_tiny(data=data)
    assert record.settings["split"]["layout"] == "train+val+test"
    assert record.settings["split"]["validation"] == "given"
    assert any("given validation split (9 images)" in line for line in lines)
    assert result.metrics["test_images"] == 6
    # The given split is part of the fingerprint: the same images with val/ moved into train/
    # are another dataset.
    for image in (data / "validation").rglob("*.png"):
        shutil.move(image, data / "train" / image.parent.name / image.name)
    (data / "validation").rename(tmp_path / "gone")
    _, merged, _ = run_tiny(data=data)
    assert merged.settings["split"]["validation"] == "carved"
    assert merged.data_fingerprint != record.data_fingerprint


@pytest.mark.parametrize("layout", ["class folders", "train only"])
def test_a_folder_without_test_gets_a_carved_test_split(tiny_registry, tmp_path, layout):
    root = tmp_path / "photos"
    split = "train" if layout == "train only" else "."
    write_image_folders(root, {split: 10})
    result, record, lines = run_tiny(data=root)
    facts = record.settings["split"]
    assert facts["layout"] == layout and facts["test_fraction"] == 0.2
    assert 3 <= result.metrics["test_images"] <= 12  # ~20% of each of 3 classes of 10
    assert any("no test split given" in line for line in lines)
    _, other, _ = run_tiny(data=root, test_fraction=0.4)
    assert other.data_fingerprint != record.data_fingerprint  # another test set
    assert other.metrics["test_images"] > result.metrics["test_images"]


def test_class_folders_end_to_end_from_the_cli(tiny_registry, tmp_path, capsys):
    root = write_image_folders(tmp_path / "flowers", {".": 8})
    code, out, err = run_main(["run", "tiny", "--data", str(root), "--epochs", "1"], capsys)
    assert code == 0, err
    assert "no test split given" in err and "bal acc" in out


def write_manifest(tmp_path, rows):
    images = write_image_folders(tmp_path / "images", {"all": 6})
    lines = ["path,label,split"]
    for image, split in rows(images):
        lines.append(f"{image.relative_to(tmp_path)},{image.parent.name},{split}")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_a_manifest_runs_with_its_splits(tiny_registry, tmp_path):
    def rows(images):
        files = sorted(images.rglob("*.png"))
        return [
            (f, ("train", "train", "val", "test", "train", "test")[i % 6])
            for i, f in enumerate(files)
        ]

    manifest = write_manifest(tmp_path, rows)
    result, record, _ = run_tiny(manifest=manifest)
    assert record.settings["split"] == {
        "layout": "manifest with splits",
        "validation": "given",
        "leaks": 0,
    }
    assert result.metrics["test_images"] == 6 and record.data == str(tmp_path)


@pytest.mark.parametrize(
    "bad_row, expected",
    [
        ("images/all/red/nothere.png,red,train", "row 3: file"),
        ("images/all/red/red_0.png,red,holdout", "row 3: unknown split 'holdout'"),
        ("images/all/red/red_0.png,,train", "row 3: the label is empty"),
    ],
)
def test_a_bad_manifest_row_is_one_line_naming_it(
    tiny_registry, tmp_path, capsys, bad_row, expected
):
    write_image_folders(tmp_path / "images", {"all": 2})
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"path,label,split\nimages/all/red/red_1.png,red,train\n{bad_row}\n")
    code, _, err = run_main(["run", "tiny", "--manifest", str(manifest)], capsys)
    assert code == 2
    assert expected in err and str(manifest) in err and len(err.strip().splitlines()) == 1


def test_the_digest_split_keeps_every_image_in_place_when_ten_percent_more_arrive():
    def digests(count, start=0):
        return [
            hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(start, start + count)
        ]

    labels = np.arange(300) % 3
    before = digests(300)
    kept, test = split_by_digest(labels, before, 0.2, seed=0)
    assert 0.15 < len(test) / 300 < 0.25
    assert all(10 <= np.sum(labels[test] == c) <= 30 for c in range(3))  # each class ~20 of 100
    # 30 new images, shuffled in among the old ones: no old image changes split.
    grown = before + digests(30, start=300)
    grown_labels = np.r_[labels, np.arange(30) % 3]
    order = np.random.default_rng(1).permutation(330)
    _, grown_test = split_by_digest(grown_labels[order], [grown[i] for i in order], 0.2, seed=0)
    in_test_after = {grown[order[i]] for i in grown_test}
    assert {before[i] for i in test} == in_test_after & set(before)


def test_the_digest_split_on_real_folders_is_stable(tmp_path):
    from zoo.runs.runner import _digests

    root = write_image_folders(tmp_path / "photos", {".": 20})
    first = _carved(root, _digests)
    write_image_folders(tmp_path / "more", {"x": 2}, seed=9)  # 10% more images
    for image in (tmp_path / "more").rglob("*.png"):
        shutil.copy(image, root / image.parent.name / f"new_{image.name}")
    second = _carved(root, _digests)
    assert len(second) == 66
    assert all(second[path] == split for path, split in first.items())


def _carved(root, digests_of):
    layout = find_layout(root)
    dataset = build_dataset(layout, digests_of(layout.paths, Reporter()), 0.2)
    return {
        **dict.fromkeys(dataset.train.paths, "train"),
        **dict.fromkeys(dataset.test.paths, "test"),
    }


def test_two_validation_folders_are_refused(tiny_registry, tmp_path, capsys):
    data = write_image_folders(tmp_path / "data", {"train": 2, "val": 1, "valid": 1, "test": 1})
    code, _, err = run_main(["run", "tiny", "--data", str(data)], capsys)
    assert code == 2 and "keep one validation folder" in err
