"""`zoo run A+B`: one softmax head on several frozen backbones' features, concatenated.

A selection name joins backbone names with '+'. Each member keeps its own engine and feature
cache (a combined run reads exactly what a run of that member alone would), and the vectors are
concatenated in the order the name gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zoo.catalog.backbone import Backbone
from zoo.errors import UsageError

EXAMPLE = "efficientnet_lite0+efficientnet_lite1"


@dataclass(frozen=True)
class Combination:
    members: tuple[Backbone, ...]

    @property
    def name(self) -> str:
        return "+".join(member.name for member in self.members)

    @property
    def handle(self) -> str:
        return " + ".join(member.handle for member in self.members)

    @property
    def feature_dim(self) -> int:
        return sum(member.feature_dim for member in self.members)

    @property
    def params_m(self) -> float | None:
        sizes = [member.params_m for member in self.members]
        return None if None in sizes else round(sum(sizes), 3)

    trains_end_to_end = False  # every member is frozen: only the head trains


def combination(name: str, get: Callable[[str], Backbone]) -> Combination:
    """The members of `name` (`a+b+...`), each a known backbone with pretrained weights."""
    parts = name.split("+")
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"{name!r}: join two or more backbone names with '+', e.g. {EXAMPLE}")
    repeated = sorted({part for part in parts if parts.count(part) > 1})
    if repeated:
        raise UsageError(f"{name!r} names {repeated[0]} twice; name each backbone once")
    members = []
    for part in parts:
        try:
            member = get(part)
        except UsageError as error:
            raise UsageError(f"{name!r}: {error}") from None
        if member.trains_end_to_end:
            raise UsageError(
                f"{name!r}: {part} has no pretrained weights to freeze (it trains end to end); "
                "combine frozen backbones only"
            )
        members.append(member)
    return Combination(tuple(members))
