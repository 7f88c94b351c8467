"""Image folders in, labelled file lists out: the splits, their digests and fingerprint.

A dataset is `train/<class>/*` and `test/<class>/*`; class names are the sub-folder names. Nothing
is decoded here (zoo.data.decode does that); files that cannot be decoded are skipped and reported
(`check_readable`, `describe_skipped`), never a crash mid-epoch.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.errors import DataError

SHOWN_BAD_FILES = 3


@dataclass
class ImageSet:
    """Files with integer labels; `classes[label]` is the class name."""

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class Dataset:
    """The training images and the test images, as scanned: nothing decoded yet.

    The validation split is carved from the training images only after they are decoded, so
    that an unreadable file takes no one's place in it. A validation split given as a folder
    (`val/`) is held in `train` too, marked by `given_validation`, and replaces the carved one.
    `split` says how the splits were made (zoo.data.layouts), for the run's record.
    """

    train: ImageSet
    test: ImageSet
    given_validation: np.ndarray | None = None  # bool per train image: a given validation one
    split: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def find_splits(data: Path | None, train: Path | None, test: Path | None) -> tuple[Path, Path]:
    """Resolve --data DIR or --train/--test into the two folders, with one-line errors."""
    if data is not None and (train or test):
        raise DataError("give either --data DIR or --train DIR --test DIR, not both")
    if data is not None:
        if not data.is_dir():
            state = "is a file, not a folder" if data.exists() else "does not exist"
            raise DataError(f"data folder {data} {state}; give a folder holding train/ and test/")
        train, test = data / "train", data / "test"
        for split in (train, test):
            if not split.is_dir():
                raise DataError(
                    f"{data} has no {split.name}/ folder; lay it out as {data}/{split.name}/<class>/*.jpg"
                )
    if train is None or test is None:
        raise DataError("give both --train DIR and --test DIR (or --data DIR)")
    for split in (train, test):
        if not split.is_dir():
            raise DataError(
                f"folder {split} does not exist; give a folder of class folders, {split}/<class>/*.jpg"
            )
    return train, test


def scan_folder(folder: Path, classes: list[str] | None = None) -> ImageSet:
    """Every file under `folder/<class>/`, labelled by class, in a stable order.

    Class names are the folder names in Unicode NFC form: macOS writes 'café' decomposed (NFD),
    most other systems composed, and both spell one class.
    """
    folders = _class_folders(folder)
    found = sorted(folders)
    if not found:
        raise DataError(f"{folder} has no class folders; put images in {folder}/<class>/")
    if classes is not None and found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise DataError(
            f"the classes of {folder} differ from train's (missing: {', '.join(missing) or '-'}; "
            f"extra: {', '.join(extra) or '-'}); use the same class folders in train/ and test/"
        )
    paths, labels = [], []
    for label, name in enumerate(found):
        files = sorted(
            p for p in folders[name].rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise DataError(
                f"class folder {folders[name]} is empty; add images or remove the folder"
            )
        paths += files
        labels += [label] * len(files)
    return ImageSet(paths, np.array(labels, dtype=np.int64), found)


def _class_folders(folder: Path) -> dict[str, Path]:
    """Class name (NFC) -> its folder; two folders that spell one name are refused."""
    folders: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        name = unicodedata.normalize("NFC", path.name)
        check_class_name(name, path)
        if name in folders:
            raise DataError(
                f"{folders[name]} and {path} spell the same class {name!r} in two Unicode forms; "
                "merge them into one folder"
            )
        folders[name] = path
    return folders


def control_characters(name: str) -> list[str]:
    """The characters of `name` that break a line or steer a terminal (newline, ESC, U+2028...)."""
    return [c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")]


def check_class_name(name: str, folder: Path) -> None:
    """Refuse a class folder whose name holds a control character: one class per line in
    labels.txt, and in every table, depends on it."""
    found = control_characters(name)
    if found:
        shown = ", ".join(sorted({repr(c)[1:-1] for c in found}))
        raise DataError(
            f"class folder {name!r} in {folder.parent} has a control character ({shown}) "
            "in its name; rename the folder"
        )


def stratified_split(
    labels: np.ndarray, names: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) carving the same fraction of every class, seeded.

    Each class's images are ranked by a seeded hash of their own file name, so whether an image
    goes to validation does not depend on the others: adding photos (or broken files) to a folder
    leaves the rest of the split, the cached features and the results as they were.
    """
    validation = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(len(members) * fraction))
        if fraction > 0 and len(members) > 1:
            count = max(count, 1)
        count = min(count, len(members) - 1)  # every class keeps a training image
        ranked = sorted(members, key=lambda i: _split_rank(names[i], seed))
        validation += ranked[:count]
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[validation] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def _split_rank(name: str, seed: int) -> str:
    # os.fsencode: a name that is not UTF-8 (`bad_\xff.png`) hashes as its bytes on disk; a
    # UTF-8 name gives the bytes .encode() gave, so no split moves.
    return hashlib.sha256(os.fsencode(f"{seed}/{name}")).hexdigest()


def load_dataset(train_dir: Path, test_dir: Path) -> Dataset:
    train = scan_folder(train_dir)
    return Dataset(train, scan_folder(test_dir, classes=train.classes))


HASH_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """Content hash of one file: the feature cache's key for the image. Read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()[:32]


def fingerprint(dataset: Dataset, digests: dict[Path, str]) -> str:
    """One hash of the whole dataset: which images, in which split, of which class."""
    hasher = hashlib.sha256()
    given = dataset.given_validation
    for split_name, images in (("train", dataset.train), ("test", dataset.test)):
        for index, (path, label) in enumerate(zip(images.paths, images.labels)):
            name = (
                "validation"
                if split_name == "train" and given is not None and given[index]
                else split_name
            )
            hasher.update(os.fsencode(f"{name}|{images.classes[label]}|{digests[path]}\n"))
    return hasher.hexdigest()[:16]


def check_readable(skipped: list[tuple[Path, str]], max_bad: int, readable: dict[str, int]) -> None:
    """Refuse the data before any training when too many files, or a whole split, cannot be read.

    `readable` counts the images that decoded in each split that must not be empty.
    """
    if len(skipped) > max_bad:
        raise DataError(
            f"too many unreadable files ({len(skipped)} > --max-bad {max_bad}); "
            f"{describe_skipped(skipped)}; fix or remove them, or raise --max-bad"
        )
    for split, count in readable.items():
        if count == 0:
            raise DataError(
                f"no {split} image could be read ({describe_skipped(skipped)}); "
                "replace them with JPEG, PNG or other images Pillow can open"
            )


def describe_skipped(skipped: list[tuple[Path, str]]) -> str:
    """'3 unreadable files skipped: a.jpg, b.txt, c.png' (first few names)."""
    names = ", ".join(path.name for path, _ in skipped[:SHOWN_BAD_FILES])
    more = f" and {len(skipped) - SHOWN_BAD_FILES} more" if len(skipped) > SHOWN_BAD_FILES else ""
    return (
        f"{len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''} skipped: {names}{more}"
    )
