"""A look at the data before training: what `zoo inspect` reports, computed here, shown by the CLI.

One pass over the files: each is hashed (its content digest, as `zoo run` computes it) and its
header read with Pillow (size and mode, no pixels decoded). Only tallies and one digest a file
are kept, so memory grows with the file count, not with the images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from zoo.data.checks import imbalance_ratio
from zoo.data.decode import PIXEL_LIMIT  # and Pillow's own pixel check off, as for `zoo run`
from zoo.data.folders import Dataset, file_digest
from zoo.data.layouts import Layout, build_dataset

SHOWN_SIZES = 10  # the most common image sizes listed
# How `zoo run` keys a file it cannot hash as an image (with its path: never a duplicate).
NOT_AN_IMAGE, UNREADABLE = "not-an-image-", "unreadable-"


@dataclass
class Scan:
    """Each file's digest, the header tallies and the files Pillow cannot open."""

    digests: dict[Path, str] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)  # "WxH" -> files
    modes: Counter = field(default_factory=Counter)  # "RGB", "L", "CMYK" ... -> files
    formats: Counter = field(default_factory=Counter)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def scan_files(paths: list[Path], advance: Callable[[int], None] = lambda n: None) -> Scan:
    """Hash every file and read its image header."""
    scan = Scan()
    for path in paths:
        scan.digests[path] = _scan_one(path, scan)
        advance(1)
    return scan


def _scan_one(path: Path, scan: Scan) -> str:
    """One file's tallies; its digest keyed as `zoo run` keys it (runner._digests), so that a
    carved split puts every file, unreadable ones too, where the run puts it."""
    try:
        with Image.open(path) as image:  # lazy: the header only
            width, height, mode, kind = image.width, image.height, image.mode, image.format
    except Exception as error:  # Pillow raises many types for what it cannot identify
        reason = str(error).split(" '", 1)[0] if str(error) else type(error).__name__
        scan.unreadable.append((path, reason))
        return f"{NOT_AN_IMAGE}{path}"
    try:
        digest = file_digest(path)
    except OSError as error:
        scan.unreadable.append((path, error.strerror or str(error)))
        return f"{UNREADABLE}{error.errno}-{path}"
    if width * height > PIXEL_LIMIT:  # `zoo run` skips it before decoding a pixel
        scan.unreadable.append(
            (
                path,
                f"{width}x{height} pixels is over zoo's limit of {PIXEL_LIMIT // 10**6} megapixels",
            )
        )
    else:
        scan.sizes[f"{width}x{height}"] += 1
        scan.modes[mode] += 1
        scan.formats[kind or "?"] += 1
    return digest


def split_names(dataset: Dataset) -> dict[str, list[Path]]:
    """Each split's files: train, validation (when given), test."""
    given = dataset.given_validation
    train = dataset.train.paths
    if given is None:
        return {"train": train, "test": dataset.test.paths}
    return {
        "train": [p for p, g in zip(train, given) if not g],
        "validation": [p for p, g in zip(train, given) if g],
        "test": dataset.test.paths,
    }


def exact_duplicates(splits: dict[str, list[Path]], digests: dict[Path, str]) -> dict[str, list]:
    """Files of identical content: groups within one split, and test files also in train or
    validation (`across`, each with the training copies)."""
    where: dict[str, list[tuple[str, Path]]] = {}
    for split, paths in splits.items():
        for path in paths:
            if not digests[path].startswith((NOT_AN_IMAGE, UNREADABLE)):
                where.setdefault(digests[path], []).append((split, path))
    within, across = [], []
    for places in where.values():
        if len(places) < 2:
            continue
        for split in splits:
            copies = [str(p) for s, p in places if s == split]
            if len(copies) > 1:
                within.append({"split": split, "paths": copies})
        tests = [str(p) for s, p in places if s == "test"]
        training = [str(p) for s, p in places if s != "test"]
        if tests and training:
            across.extend({"test": test, "train": training} for test in tests)
    return {"within": within, "across": across}


def describe(layout: Layout, scan: Scan, test_fraction: float) -> tuple[Dataset, dict[str, Any]]:
    """The dataset as `zoo run` would split it, and the report's facts (JSON-ready)."""
    dataset = build_dataset(layout, scan.digests, test_fraction)
    splits = split_names(dataset)
    labels = dict(zip(dataset.train.paths + dataset.test.paths, _labels(dataset)))
    counts = {}
    for split, paths in splits.items():
        tally = Counter(dataset.classes[labels[p]] for p in paths)
        counts[split] = {name: tally.get(name, 0) for name in dataset.classes}
    duplicates = exact_duplicates(splits, scan.digests)
    facts = {
        "data": str(layout.root),
        "layout": layout.kind,
        "split": dataset.split,
        "images": len(scan.digests),
        "classes": dataset.classes,
        "counts": counts,
        "imbalance_ratio": {split: imbalance_ratio(c) for split, c in counts.items()},
        "sizes": dict(scan.sizes.most_common(SHOWN_SIZES)),
        "distinct_sizes": len(scan.sizes),
        "modes": dict(scan.modes.most_common()),
        "formats": dict(scan.formats.most_common()),
        "unreadable": [{"path": str(p), "reason": r} for p, r in scan.unreadable],
        "duplicates": duplicates,
        "leaks": len(duplicates["across"]),
    }
    return dataset, facts


def _labels(dataset: Dataset) -> list[int]:
    return [*dataset.train.labels.tolist(), *dataset.test.labels.tolist()]
