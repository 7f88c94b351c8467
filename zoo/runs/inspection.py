"""`zoo inspect`: the data scan (zoo.data.inspect) plus near-duplicates across splits from the
feature vectors already in the cache; nothing is extracted here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.analysis.duplicates import NEAR_DUPLICATE_COSINE, near_duplicates
from zoo.data.folders import Dataset
from zoo.data.inspect import describe, scan_files, split_names
from zoo.data.layouts import Layout, find_layout
from zoo.extraction.cache import FeatureCache
from zoo.home import features_dir
from zoo.reporting import Reporter

DEFAULT_BACKBONE = "efficientnet_lite0"  # the quickstart's backbone: the cache most likely held


def inspect_data(
    data: Path | None,
    manifest: Path | None = None,
    test_fraction: float = 0.2,
    backbone: str = DEFAULT_BACKBONE,
    threshold: float = NEAR_DUPLICATE_COSINE,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Everything `zoo inspect` shows, JSON-ready."""
    reporter = reporter or Reporter()
    layout = find_layout(data, manifest=manifest)
    paths = layout.paths
    with reporter.task("reading image headers", len(paths)) as advance:
        scan = scan_files(paths, advance)
    dataset, facts = describe(layout, scan, test_fraction)
    splits = split_names(dataset)
    training = [p for split, ps in splits.items() if split != "test" for p in ps]
    facts["near_duplicates"] = cached_near_duplicates(
        splits["test"], training, scan.digests, backbone, threshold
    )
    return facts


def inspect_command(layout: Layout, test_fraction: float) -> str:
    """The `zoo inspect` command that splits this layout as `zoo run` did."""
    manifest = layout.folders.get("manifest")
    command = f"zoo inspect --manifest {manifest}" if manifest else f"zoo inspect {layout.root}"
    return command + (f" --test-fraction {test_fraction:g}" if layout.test is None else "")


def near_copies_warning(
    dataset: Dataset,
    digests: dict[Path, str],
    backbones: list[str],
    inspect_command: str,
    threshold: float = NEAR_DUPLICATE_COSINE,
) -> str | None:
    """The line `zoo run` warns with when cached features show test images that are near-copies
    of training images (exact copies are warned about apart); None when there are none or no
    cache of `backbones` (then the default backbone) holds these images. Computes no feature."""
    for backbone in dict.fromkeys([*backbones, DEFAULT_BACKBONE]):
        near = cached_near_duplicates(
            dataset.test.paths, dataset.train.paths, digests, backbone, threshold
        )
        if near["status"] == "ok":
            break
    else:
        return None
    count = len(near["pairs"])
    if not count:
        return None
    if backbone != DEFAULT_BACKBONE:
        inspect_command += f" --backbone {backbone}"
    copies = (
        "s are near-copies of training images"
        if count != 1
        else " is a near-copy of a training image"
    )
    return (
        f"{count} test image{copies} (cosine >= {threshold:g}, {backbone} features): "
        f"`{inspect_command}` lists them"
    )


def cached_near_duplicates(
    test: list[Path],
    train: list[Path],
    digests: dict[Path, str],
    backbone: str,
    threshold: float,
) -> dict[str, Any]:
    """Test images whose cached vector is within `threshold` cosine of a training image's, from
    the cache of `backbone` holding most of these images; `status` says when none could be used."""
    facts: dict[str, Any] = {"backbone": backbone, "threshold": threshold, "pairs": []}
    cache = _fullest_cache(backbone, {digests[p] for p in test + train})
    if cache is None:
        facts["status"] = (
            f"no cached {backbone} features of these images; `zoo run {backbone}` on them "
            "caches them, then near-duplicates can be found"
        )
        return facts
    test = [p for p in test if digests[p] in cache]
    train = [p for p in train if digests[p] in cache]
    facts.update(status="ok", compared={"test": len(test), "train": len(train)})
    found = near_duplicates(
        cache.gather([digests[p] for p in test]),
        cache.gather([digests[p] for p in train]),
        threshold,
    )
    identical = {digests[p] for p in train}
    facts["pairs"] = [
        {"test": str(test[i]), "train": str(train[j]), "cosine": round(score, 4)}
        for i, j, score in found
        if digests[test[i]] not in identical  # exact copies are listed as such already
    ]
    return facts


def _fullest_cache(backbone: str, wanted: set[str]) -> FeatureCache | None:
    """The feature cache of `backbone` (any engine) holding most of `wanted`, or None."""
    best, covered = None, 0
    root = features_dir()
    folders = sorted(root.glob(f"{backbone}-*")) if root.is_dir() else []
    for folder in folders:
        if "-aug-" in folder.name:  # augmented views, not the images themselves
            continue
        cache = FeatureCache(folder.name, removes=False)  # a run reports what it removes
        count = sum(1 for digest in wanted if digest in cache)
        if count > covered:
            best, covered = cache, count
    return best
