"""The layouts users hold, read into one `Dataset`.

- `DIR/train/` + `DIR/test/`: the splits as given.
- `DIR/train/` + `DIR/val/` (or `valid/`, `validation/`) + `DIR/test/`: the given validation split
  replaces the one `--val-fraction` would carve from train.
- `DIR/<class>/*` (no split at all) or `DIR/train/` alone: the test split is carved, class by
  class, by each image's content digest (see `split_by_digest`).
- `--manifest FILE.csv`: rows `path,label[,split]`, paths relative to the CSV.

Scanning finds the files (`find_layout`); once their digests are known, `build_dataset` makes the
splits. Which split each image landed in is part of the data fingerprint.
"""

from __future__ import annotations

import csv
import hashlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.data.folders import Dataset, ImageSet, find_splits, scan_folder
from zoo.errors import DataError

VALIDATION_FOLDERS = ("val", "valid", "validation")
SPLIT_FOLDERS = ("train", "test", *VALIDATION_FOLDERS)
# The carved test split does not follow --seed: runs that vary the training seed keep one test set.
SPLIT_SEED = 0
MANIFEST_SPLITS = {"train": "train", "test": "test", **dict.fromkeys(VALIDATION_FOLDERS, "val")}


@dataclass
class Layout:
    """The images as found: the splits that were given, nothing carved yet."""

    kind: str  # train+test, train+val+test, class folders, train only, manifest
    root: Path  # the data folder (the manifest's folder): what `zoo runs` shows
    train: ImageSet
    test: ImageSet | None = None  # None: carved from train
    validation: ImageSet | None = None  # None: carved from train by --val-fraction
    # What finds these images again (`zoo export`, `--deploy`): the given split folders (train,
    # test), and `root` or `manifest` where the test split is carved or listed.
    folders: dict[str, str] = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        sets = (self.train, self.validation, self.test)
        return [path for images in sets if images is not None for path in images.paths]


def find_layout(
    data: Path | None,
    train: Path | None = None,
    test: Path | None = None,
    manifest: Path | None = None,
) -> Layout:
    """Scan the images given by --data DIR, --train/--test or --manifest, with one-line errors."""
    # Absolute: the records keep these folders, read later from whatever folder (zoo export).
    data, train, test, manifest = (
        path.absolute() if path is not None else None for path in (data, train, test, manifest)
    )
    if manifest is not None:
        if data or train or test:
            raise DataError("give either --manifest FILE.csv or --data/--train/--test, not both")
        return read_manifest(manifest)
    if data is None or train is not None or test is not None:
        train, test = find_splits(data, train, test)
        return _given(train.parent, "train+test", train, test, None)
    if not data.is_dir():
        find_splits(data, None, None)  # its one-line error
    given = {name: data / name for name in SPLIT_FOLDERS if (data / name).is_dir()}
    validation_names = [name for name in VALIDATION_FOLDERS if name in given]
    if len(validation_names) > 1:
        raise DataError(
            f"{data} has {' and '.join(n + '/' for n in validation_names)}; keep one validation folder"
        )
    validation = given[validation_names[0]] if validation_names else None
    if "train" not in given:
        if "test" in given or validation is not None:
            raise DataError(
                f"{data} has no train/ folder; lay it out as {data}/train/<class>/*.jpg"
            )
        return Layout(
            "class folders",
            data,
            scan_folder(data),
            folders={"train": str(data), "root": str(data)},
        )
    kind = "train+val+test" if validation and "test" in given else "train+test"
    if "test" not in given:
        kind = "train+val" if validation else "train only"
    return _given(data, kind, given["train"], given.get("test"), validation)


def _given(
    root: Path, kind: str, train_dir: Path, test_dir: Path | None, validation_dir: Path | None
) -> Layout:
    train = scan_folder(train_dir)
    test = scan_folder(test_dir, classes=train.classes) if test_dir else None
    validation = scan_folder(validation_dir, classes=train.classes) if validation_dir else None
    folders = {"train": str(train_dir)}
    if test_dir:
        folders["test"] = str(test_dir)
    else:  # carved from train: the layout is read again from its root
        folders["root"] = str(root)
    return Layout(kind, root, train, test, validation, folders)


def read_manifest(manifest: Path) -> Layout:
    """A CSV of `path,label[,split]` (a header row of those names is optional); paths are
    relative to the CSV's folder. A bad row is one line naming it."""
    if not manifest.is_file():
        raise DataError(f"manifest {manifest} does not exist; give a CSV of path,label[,split]")
    root = manifest.parent
    rows: dict[str, list[tuple[Path, str]]] = {"train": [], "val": [], "test": []}
    has_split = None
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if number == 1 and [c.lower() for c in cells[:3]] in (
                ["path", "label"],
                ["path", "label", "split"],
            ):
                continue
            where = f"{manifest} row {number}"
            if len(cells) not in (2, 3):
                raise DataError(f"{where} has {len(cells)} columns; write path,label[,split]")
            if has_split is None:
                has_split = len(cells) == 3
            path, label = root / cells[0], unicodedata.normalize("NFC", cells[1])
            if not cells[0] or not path.is_file():
                raise DataError(
                    f"{where}: file {path} does not exist; fix the path or drop the row"
                )
            if not label:
                raise DataError(f"{where}: the label is empty; give each image its class")
            split = MANIFEST_SPLITS.get(cells[2].lower()) if len(cells) == 3 else "train"
            if split is None:
                raise DataError(
                    f"{where}: unknown split {cells[2]!r}; use train, val (valid, validation) or test"
                )
            rows[split].append((path, label))
    if not rows["train"]:
        raise DataError(f"{manifest} has no training rows; give path,label[,train] rows")
    classes = sorted({label for part in rows.values() for _, label in part})
    sets = {split: _image_set(part, classes) for split, part in rows.items() if part}
    missing = sorted(set(classes) - {classes[i] for i in sets["train"].labels})
    if missing:
        raise DataError(
            f"{manifest}: class {missing[0]!r} has no training row; add some or drop its rows"
        )
    kind = "manifest" + (" with splits" if has_split else "")
    folders = {"manifest": str(manifest)}
    return Layout(kind, root, sets["train"], sets.get("test"), sets.get("val"), folders)


def recorded_layout(folders: dict[str, str]) -> Layout | None:
    """The layout a run recorded (`Layout.folders`), scanned again; None where the run recorded
    given split folders only (or none)."""
    if "manifest" in folders:
        return read_manifest(Path(folders["manifest"]))
    if "root" in folders:
        return find_layout(Path(folders["root"]))
    return None


def _image_set(rows: list[tuple[Path, str]], classes: list[str]) -> ImageSet:
    index = {name: label for label, name in enumerate(classes)}
    paths = [path for path, _ in rows]
    labels = np.array([index[label] for _, label in rows], dtype=np.int64)
    return ImageSet(paths, labels, classes)


def build_dataset(layout: Layout, digests: dict[Path, str], test_fraction: float) -> Dataset:
    """The splits: the given ones, the test split carved by digest where none was given."""
    split = {"layout": layout.kind, "validation": "given" if layout.validation else "carved"}
    train, test = layout.train, layout.test
    if test is None:
        keep, carved = split_by_digest(
            train.labels, [digests[p] for p in train.paths], test_fraction, SPLIT_SEED
        )
        if not len(carved):
            raise DataError(
                f"{layout.root} ({layout.kind}) has too few images to hold out a test split "
                "(a class needs 2 or more); add images or give a test/ folder"
            )
        train, test = _subset(layout.train, keep), _subset(layout.train, carved)
        split.update(test="carved by content digest", test_fraction=test_fraction)
        split["split_seed"] = SPLIT_SEED
    given_validation = None
    if layout.validation is not None:
        given_validation = np.r_[np.zeros(len(train), bool), np.ones(len(layout.validation), bool)]
        train = ImageSet(
            train.paths + layout.validation.paths,
            np.concatenate([train.labels, layout.validation.labels]),
            train.classes,
        )
    return Dataset(train, test, given_validation=given_validation, split=split)


def _subset(images: ImageSet, positions: np.ndarray) -> ImageSet:
    return ImageSet([images.paths[i] for i in positions], images.labels[positions], images.classes)


def split_by_digest(
    labels: np.ndarray, digests: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, test): each image goes to test when a seeded hash of its content digest
    falls under `fraction`, so adding images never moves an existing one (nor do renames).

    Identical files share a digest, hence a split. A class with no image under the threshold
    gives its lowest-ranked one to test; a class with every image under it keeps its highest in
    train (only these edge images can move when the class grows).
    """
    ranks = np.array([_rank(digest, seed) for digest in digests])
    chosen = ranks < fraction
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2 or fraction <= 0:
            chosen[members] = False
            continue
        if not chosen[members].any():
            chosen[members[np.argmin(ranks[members])]] = True
        if chosen[members].all():
            chosen[members[np.argmax(ranks[members])]] = False
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def _rank(digest: str, seed: int) -> float:
    """A digest's place in [0, 1), seeded: the first 8 bytes of sha256(seed/digest)."""
    value = hashlib.sha256(f"{seed}/{digest}".encode()).digest()[:8]
    return int.from_bytes(value, "big") / 2**64
