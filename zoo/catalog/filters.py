"""Finding candidates among many backbones: the filters and sorts of `zoo list`, `run` and `pull`.

Declared once here and applied to the facts rows `zoo.api.describe` gives (which say whether a
backbone is ready offline), so listing and selecting can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from zoo.errors import UsageError

SORTS = ("name", "top1", "params")
_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")
_SEARCHED = ("name", "family", "handle", "description", "paper", "pretrained_on", "plugin")


@dataclass(frozen=True)
class Filters:
    """What the user asked for; a field left None does not filter."""

    family: str | None = None
    max_params: float | None = None
    min_top1: float | None = None
    input_size: str | None = None
    pretrained_on: str | None = None
    ready: bool = False
    search: str | None = None

    def __post_init__(self) -> None:
        if self.input_size is not None and not _SIZE.match(self.input_size.strip().lower()):
            raise UsageError(
                f"--input-size must be a side or HEIGHTxWIDTH (224, 384x384), not {self.input_size!r}"
            )
        for option, value in (("--max-params", self.max_params), ("--min-top1", self.min_top1)):
            if value is not None and not value >= 0:
                raise UsageError(f"{option} must be a number of at least 0, not {value!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) not in (None, False) for f in fields(self))

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether one `describe()` row passes every filter given (an unknown figure fails one)."""
        return all(
            (
                self.family is None or _family_matches(row.get("family") or "", self.family),
                self.max_params is None or _at_most(row.get("params_m"), self.max_params),
                self.min_top1 is None or _at_most(self.min_top1, row.get("imagenet_top1")),
                self.input_size is None or list(row["input_size"]) == _size(self.input_size),
                self.pretrained_on is None
                or (row.get("pretrained_on") or "").lower() == self.pretrained_on.lower(),
                not self.ready or bool(row.get("ready")),
                self.search is None or _found(row, self.search),
            )
        )


def _family_matches(family: str, wanted: str) -> bool:
    """`mobilenet` matches mobilenet_v1, _v2 and _v3; `mobilenet_v2` only itself."""
    family, wanted = family.lower(), wanted.lower().replace("-", "_")
    return family == wanted or family.startswith(wanted + "_")


def _at_most(low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and low <= high


def _size(text: str) -> list[int]:
    height, width = _SIZE.match(text.strip().lower()).groups()
    return [int(height), int(width or height)]


def _found(row: dict[str, Any], text: str) -> bool:
    """Every word of `text` appears somewhere in the row's names and prose (any case)."""
    haystack = " ".join(str(row.get(key) or "") for key in _SEARCHED).lower()
    return all(word in haystack for word in text.lower().split())


def select_rows(
    rows: list[dict[str, Any]], filters: Filters, sort: str = "name"
) -> list[dict[str, Any]]:
    """The rows that pass `filters`, sorted: by name, best top-1 first, or fewest params first
    (rows without the figure last, by name)."""
    if sort not in SORTS:
        raise UsageError(f"--sort must be one of {', '.join(SORTS)}, not {sort!r}")
    kept = sorted((row for row in rows if filters.matches(row)), key=lambda row: row["name"])
    if sort == "top1":
        return sorted(
            kept, key=lambda row: _last_if_none(row.get("imagenet_top1"), descending=True)
        )
    if sort == "params":
        return sorted(kept, key=lambda row: _last_if_none(row.get("params_m")))
    return kept


def _last_if_none(value: float | None, descending: bool = False) -> tuple[bool, float]:
    if value is None:
        return (True, 0.0)
    return (False, -value if descending else value)
