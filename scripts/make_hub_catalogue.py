"""Turn a checkout of github.com/tensorflow/tfhub.dev into zoo's TF Hub catalogue.

    python scripts/make_hub_catalogue.py TFHUB_DEV_CHECKOUT [--out zoo/catalog/hub_catalogue.toml]
        [--report skipped.txt]
    python scripts/make_hub_catalogue.py TFHUB_DEV_CHECKOUT --check [--catalogue FILE]

Every fact comes from a model's documentation page, `assets/docs/<publisher>/models/<path>/<version>.md`:
its metadata lines (`<!-- format: saved_model_2 -->`, `<!-- task: image-feature-vector -->`, ...) and
the sentences that state the input size, the feature size and the value range. A model whose page
does not state one of them is skipped with the reason, never guessed. Parameters and ImageNet top-1
are filled only where the page's own table states them for this very checkpoint.

The output is deterministic: the same docs give the same bytes. `--check` re-reads the page each
committed entry names and reports every entry whose input size or feature size differs from it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "zoo" / "catalog" / "hub_catalogue.toml"
HAND_KEPT = REPO_ROOT / "zoo" / "catalog" / "registry.toml"
DOCS = Path("assets") / "docs"
TASK = "image-feature-vector"
TF2_FORMAT = "saved_model_2"

# The metadata value of `dataset:` -> the pretraining data zoo shows (`--pretrained-on`).
DATASETS = {
    "imagenet-ilsvrc-2012-cls": "imagenet-1k",
    "imagenet-21k": "imagenet-21k",
    "inaturalist-inat-2017": "inaturalist-2017",
}

_SIZE_PATTERNS = (
    # "the size of the input images is fixed to `height` x `width` = 224 x 224 pixels", and the
    # flexible-size pages' "best to match the model training input, which is `height` x `width` = ..."
    re.compile(r"`?height`?\s*x\s*`?width`?\s*=\s*(\d+)\s*x\s*(\d+)"),
    # "Expects a float input tensor of shape [batch size, 224, 224, 3]."
    re.compile(r"input tensor of shape \[batch[ _]size,\s*(\d+),\s*(\d+),\s*3\]"),
)
_FEATURE_PATTERNS = (
    re.compile(r"`num_features`\s*=\s*(\d+)"),
    # "`image_feature_vector`: A float tensor of shape [batch size, 1280]."
    re.compile(r"`image_feature_vector`: A float tensor of shape \[batch[ _]size,\s*(\d+)\]"),
)
_RANGE_PATTERNS = (
    re.compile(r"color values in the range \[(\d+(?:\.\d+)?),\s*(\d+(?:\.\d+)?)\]"),
    re.compile(r"RGB color images scaled to \[(\d+(?:\.\d+)?),\s*(\d+(?:\.\d+)?)\]"),
)
_METADATA = re.compile(r"^<!--\s*([a-z0-9-]+)\s*:\s*(.*?)\s*-->\s*$", re.MULTILINE)
_BUILD_SHAPE = re.compile(r"\.build\(\[None, (\d+), (\d+), 3\]\)")
_CHECKPOINT = re.compile(r"The checkpoint exported into this model was `([^`]+)`")
_MOBILENET_V3 = re.compile(r"as a (large|small) network with a depth multiplier of (\d+(?:\.\d+)?)")
_ARXIV_LINK = re.compile(r"\[(\"?)([^\]\"]+?)\"?\]\(https://arxiv\.org/abs/[0-9.]+(?:v\d+)?\)")


@dataclass
class Page:
    """One model version's documentation page."""

    path: Path  # relative to the checkout
    publisher: str
    model: str  # the model's path under its publisher, e.g. imagenet/mobilenet_v2_100_224/feature_vector
    version: int
    metadata: dict[str, str]
    text: str  # the page with every run of whitespace made one space

    @property
    def handle(self) -> str:
        return f"https://tfhub.dev/{self.publisher}/{self.model}/{self.version}"


@dataclass
class Facts:
    """What a page states that zoo needs; `problem` says what it does not state."""

    input_size: list[int] | None = None
    feature_dim: int | None = None
    input_range: list[float] | None = None
    problem: str | None = None


def read_pages(checkout: Path) -> list[Page]:
    """Every `<publisher>/models/.../<version>.md` page, sorted by path."""
    docs = checkout / DOCS
    if not docs.is_dir():
        raise SystemExit(f"error: {docs} does not exist; give a checkout of tensorflow/tfhub.dev")
    return [
        read_page(checkout, path)
        for path in sorted(docs.glob("*/models/**/*.md"))
        # a model version's page: <publisher>/models/<path>/<version>.md
        if path.stem.isdigit() and len(path.relative_to(docs).parts) >= 4
    ]


def read_page(checkout: Path, path: Path) -> Page:
    publisher, _, *model_parts, _ = path.relative_to(checkout / DOCS).parts
    raw = path.read_text(encoding="utf-8")
    return Page(
        path=path.relative_to(checkout),
        publisher=publisher,
        model="/".join(model_parts),
        version=int(path.stem),
        metadata=dict(_METADATA.findall(raw)),
        text=" ".join(raw.split()),
    )


def latest_versions(pages: list[Page]) -> tuple[list[Page], list[Page]]:
    """(the latest version of each model, the older versions)."""
    newest: dict[tuple[str, str], Page] = {}
    for page in pages:
        key = (page.publisher, page.model)
        if key not in newest or page.version > newest[key].version:
            newest[key] = page
    latest = sorted(newest.values(), key=lambda p: str(p.path))
    older = [page for page in pages if newest[(page.publisher, page.model)] is not page]
    return latest, older


def _one_value(page: Page, patterns, what: str, convert) -> tuple[object | None, str | None]:
    found = {
        match if isinstance(match, tuple) else (match,)
        for pattern in patterns
        for match in pattern.findall(page.text)
    }
    if not found:
        return None, f"no stated {what}"
    if len(found) > 1:
        return None, f"conflicting {what}s stated: {', '.join(map(str, sorted(found)))}"
    return convert(next(iter(found))), None


def read_facts(page: Page) -> Facts:
    """The page's stated input size, feature size and value range, or what it leaves out."""
    size, problem = _one_value(page, _SIZE_PATTERNS, "input size", lambda m: [int(v) for v in m])
    if problem:
        return Facts(problem=problem)
    features, problem = _one_value(page, _FEATURE_PATTERNS, "feature size", lambda m: int(m[0]))
    if problem:
        return Facts(problem=problem)
    value_range, problem = _one_value(
        page, _RANGE_PATTERNS, "value range", lambda m: [float(v) for v in m]
    )
    if problem:
        return Facts(problem=problem)
    return Facts(input_size=size, feature_dim=features, input_range=value_range)


def classify(page: Page) -> str | None:
    """Why this latest version is no catalogue entry, or None."""
    task = page.metadata.get("task", "none")
    if task != TASK:
        return f"not an image feature vector (task: {task})"
    fmt = page.metadata.get("format", "none")
    if fmt != TF2_FORMAT:
        return f"not a TF2 SavedModel (format: {fmt})"
    return None


# ---- ImageNet top-1 and parameters, from the page's own tables ----------------------------------


def _tables(text_with_lines: str) -> list[list[dict[str, str]]]:
    """The page's Markdown tables, each a list of {header: cell} rows."""
    tables, rows = [], []
    for line in [*text_with_lines.splitlines(), ""]:
        stripped = line.strip()
        if "|" in stripped:
            rows.append([cell.strip() for cell in stripped.strip("|").split("|")])
            continue
        if len(rows) > 2 and set("".join(rows[1])) <= set("-: "):
            tables.append([dict(zip(rows[0], row)) for row in rows[2:]])
        rows = []
    return tables


def _number(cell: str, unit: str) -> float | None:
    match = re.fullmatch(rf"(?:top1=)?(\d+(?:\.\d+)?){re.escape(unit)}", cell.replace(" ", ""))
    return float(match.group(1)) if match else None


def stated_scores(page: Page, raw: str) -> dict[str, float]:
    """`imagenet_top1` / `params_m` where a table on the page gives them for this checkpoint.

    EfficientNet V2 pages name their checkpoint (`EffNetV2-S for ImageNet1k`) and tabulate every
    size: the ImageNet1K table (top-1, params) holds for checkpoints trained on ImageNet-1k, the
    "Finetuned ImageNet1K" table (top-1) for the ImageNet-21k ones fine-tuned on ImageNet-1k.
    MobileNet V3 pages tabulate top-1 by size and depth multiplier and say which one they are.
    """
    scores: dict[str, float] = {}
    checkpoint = _CHECKPOINT.search(page.text)
    if checkpoint and checkpoint.group(1).startswith("EffNetV2-"):
        name, _, trained_on = checkpoint.group(1).partition(" for ")
        trained_on = trained_on.lower()
        for table in _tables(raw):
            for row in table:
                if row.get("ImageNet1K") == name and trained_on == "imagenet1k":
                    _put(scores, "imagenet_top1", _number(row.get("Top1 Acc.", ""), "%"))
                    _put(scores, "params_m", _number(row.get("Params", ""), "M"))
                if row.get("ImageNet21K") == name and trained_on.endswith(
                    "fine-tuned on imagenet1k"
                ):
                    _put(scores, "imagenet_top1", _number(row.get("Finetuned ImageNet1K", ""), "%"))
    variant = _MOBILENET_V3.search(page.text)
    if variant:
        size, multiplier = variant.group(1).title(), float(variant.group(2))
        for table in _tables(raw):
            for row in table:
                if row.get("Size") == size and _number(row.get("Depth multiplier", ""), "") == (
                    multiplier
                ):
                    _put(scores, "imagenet_top1", _number(row.get("Top1 accuracy (%)", ""), ""))
    return scores


def _put(scores: dict[str, float], key: str, value: float | None) -> None:
    if value is not None:
        scores[key] = value


# ---- entries -------------------------------------------------------------------------------------

_DROPPED_PARTS = {"imagenet", "feature_vector", "feature-vector"}


def entry_name(page: Page) -> str:
    """A registry name from the model's path: google/imagenet/resnet_v2_50/feature_vector -> resnet_v2_50."""
    parts = [part for part in page.model.split("/") if part not in _DROPPED_PARTS]
    return re.sub(r"[^a-z0-9_]+", "_", "_".join(parts).lower()).strip("_")


def family(page: Page) -> str:
    """The architecture family from `network-architecture`: mobilenet-v2 -> mobilenet_v2.

    EfficientNet B0..B7 are one family (`efficientnet`); BiT's `resnet50-v2` is `resnet_v2`.
    """
    architecture = page.metadata.get("network-architecture", "").lower()
    architecture = re.sub(r"^efficientnet-b\d$", "efficientnet", architecture)
    architecture = re.sub(r"^resnet-?(v\d)-\d+$", r"resnet_\1", architecture)
    architecture = re.sub(r"^resnet\d+(x\d+)?-(v\d)$", r"resnet_\2", architecture)
    return architecture.replace("-", "_")


def description(page: Page) -> str:
    """The page's first sentence under its title."""
    after_title = page.text.split(" ", 3)[-1] if page.text.startswith("# Module") else page.text
    first = after_title.split("<!--", 1)[0].strip()
    return first.split(". ")[0].rstrip(".").strip()


def paper(page: Page) -> str | None:
    """The quoted titles of the arXiv papers the page cites, else its first arXiv link's text."""
    links = _ARXIV_LINK.findall(page.text)
    quoted = list(dict.fromkeys(title.strip() for mark, title in links if mark))
    if quoted:
        return "; ".join(quoted)
    return links[0][1].strip() if links else None


def make_entry(page: Page, facts: Facts, raw: str) -> dict:
    entry: dict = {
        "plugin": "hub",
        "family": family(page),
        "handle": page.handle,
        "input_size": facts.input_size,
        "input_range": facts.input_range,
        "feature_dim": facts.feature_dim,
    }
    entry.update(sorted(stated_scores(page, raw).items()))
    dataset = page.metadata.get("dataset")
    if dataset:
        entry["pretrained_on"] = DATASETS.get(dataset, dataset)
    if "fine-tunable" in page.metadata:
        entry["fine_tunable"] = page.metadata["fine-tunable"] == "true"
    title = paper(page)
    if title:
        entry["paper"] = title
    entry["description"] = description(page)
    entry["doc"] = page.path.as_posix()
    return entry


@dataclass
class Catalogue:
    entries: dict[str, dict]
    skipped: list[tuple[str, str]]  # (doc path, reason)


def build(checkout: Path, hand_kept: Path = HAND_KEPT) -> Catalogue:
    """The catalogue entries and the skipped pages, from a tfhub.dev checkout."""
    kept_by_hand = _hand_kept_handles(hand_kept)
    latest, older = latest_versions(read_pages(checkout))
    skipped = [
        (str(page.path), f"older version (latest is {_latest_of(page, latest)})") for page in older
    ]
    entries: dict[str, dict] = {}
    for page in latest:
        reason = classify(page)
        facts = read_facts(page) if reason is None else Facts()
        reason = reason or facts.problem
        if reason is None and page.handle in kept_by_hand:
            reason = f"kept by hand in registry.toml as {kept_by_hand[page.handle]}"
        if reason is None:
            name = entry_name(page)
            if name in entries:
                name = f"{page.publisher}_{name}"
            if name in entries or name in kept_by_hand.values():
                reason = f"name {name!r} is taken"
        if reason:
            skipped.append((str(page.path.as_posix()), reason))
            continue
        raw = (checkout / page.path).read_text(encoding="utf-8")
        entries[name] = make_entry(page, facts, raw)
    return Catalogue(dict(sorted(entries.items())), sorted(skipped))


def _latest_of(page: Page, latest: list[Page]) -> int:
    return next(p.version for p in latest if (p.publisher, p.model) == (page.publisher, page.model))


def _hand_kept_handles(path: Path) -> dict[str, str]:
    """handle -> name of every hub entry kept by hand (their handles and fallbacks)."""
    if not path.is_file():
        return {}
    tables = tomllib.loads(path.read_text(encoding="utf-8")).get("backbones", {})
    return {
        handle: name
        for name, table in tables.items()
        for handle in [table.get("handle"), *table.get("fallback_handles", [])]
        if handle
    }


# ---- TOML ----------------------------------------------------------------------------------------


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render(catalogue: Catalogue, command: str) -> str:
    lines = [
        "# GENERATED FILE: do not edit. The TF Hub image feature-vector catalogue, read from the",
        "# model documentation pages of github.com/tensorflow/tfhub.dev. Regenerate with",
        f"#     {command}",
        f"# {len(catalogue.entries)} entries; docs/registry.md explains the fields. Entries kept by",
        "# hand in registry.toml are left out here (theirs win).",
    ]
    for name, entry in catalogue.entries.items():
        lines += ["", f"[backbones.{name}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


def render_report(catalogue: Catalogue) -> str:
    reasons = Counter(_reason_kind(reason) for _, reason in catalogue.skipped)
    lines = [f"{len(catalogue.entries)} entries; {len(catalogue.skipped)} pages skipped:"]
    lines += [f"  {count:5d}  {kind}" for kind, count in sorted(reasons.items())]
    lines += [""] + [f"{path}: {reason}" for path, reason in catalogue.skipped]
    return "\n".join(lines) + "\n"


def _reason_kind(reason: str) -> str:
    """A reason without its particulars, for the counts."""
    return re.sub(r" \(.*\)$| as \S+$|: .*$", "", reason)


# ---- --check -------------------------------------------------------------------------------------


def check(checkout: Path, catalogue_path: Path) -> list[str]:
    """Each committed entry whose input size or feature size differs from its doc page's."""
    tables = tomllib.loads(catalogue_path.read_text(encoding="utf-8")).get("backbones", {})
    mismatches = []
    for name, entry in sorted(tables.items()):
        doc = checkout / entry.get("doc", "")
        if not entry.get("doc") or not doc.is_file():
            mismatches.append(f"{name}: its doc page {entry.get('doc')!r} is not in the checkout")
            continue
        page = read_page(checkout, doc)
        facts = read_facts(page)
        for key, stated in (("input_size", facts.input_size), ("feature_dim", facts.feature_dim)):
            if entry.get(key) != stated:
                mismatches.append(
                    f"{name}: {key} is {entry.get(key)!r}, its page states {stated!r}"
                )
        built = _BUILD_SHAPE.search(page.text)  # the usage example: a second statement of the size
        if built and entry.get("input_size") != [int(built.group(1)), int(built.group(2))]:
            mismatches.append(
                f"{name}: input_size is {entry.get('input_size')!r}, its usage example builds "
                f"{built.group(1)} x {built.group(2)}"
            )
        if entry.get("handle") != page.handle:
            mismatches.append(
                f"{name}: handle is {entry.get('handle')!r}, its page is {page.handle}"
            )
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of tensorflow/tfhub.dev")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the catalogue to write")
    parser.add_argument("--report", type=Path, help="write the skipped pages and why here")
    parser.add_argument("--hand-kept", type=Path, default=HAND_KEPT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--check", action="store_true", help="compare the catalogue (--out) with the pages"
    )
    args = parser.parse_args(argv)
    if args.check:
        mismatches = check(args.checkout, args.out)
        for line in mismatches:
            print(line)
        print(f"{len(mismatches)} mismatches in {args.out.name}")
        return 1 if mismatches else 0
    catalogue = build(args.checkout, args.hand_kept)
    args.out.write_text(render(catalogue, REGENERATE), encoding="utf-8")
    report = render_report(catalogue)
    if args.report:
        args.report.write_text(report, encoding="utf-8")
    print(report.split("\n\n")[0])
    return 0


# The command in the header names no local path: the same pages give the same bytes anywhere.
REGENERATE = (
    "python scripts/make_hub_catalogue.py TFHUB_DEV_CHECKOUT --out zoo/catalog/hub_catalogue.toml"
)


if __name__ == "__main__":
    sys.exit(main())
