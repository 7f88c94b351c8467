"""`zoo pull`: fetch or build backbones into the cache, and prove each one loads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zoo.catalog.backbone import Backbone
from zoo.errors import ZooError
from zoo.sources.hub import build, cached_folder, is_built, resolve


def pull_backbones(
    backbones: list[Backbone],
    on_start: Callable[[str], None] = lambda name: None,
    rebuild: bool = False,
) -> list[dict[str, Any]]:
    """One report per backbone: ready (and where), or the one-line reason it is not.

    `rebuild` builds again what plugins build (`zoo:NAME`), for a change zoo cannot see (new
    weights at the same path); downloads are kept.
    """
    return [_pull(backbone, on_start, rebuild) for backbone in backbones]


def _pull(backbone: Backbone, on_start: Callable[[str], None], rebuild: bool) -> dict[str, Any]:
    from zoo.extraction.layers import check_feature_size

    on_start(backbone.name)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "name": backbone.name,
        "ready": False,
        "location": None,
        "reason": None,
    }
    try:
        if rebuild and is_built(backbone):
            report["location"] = str(build(backbone))
        elif backbone.make_layer is None:
            report["location"] = str(resolve(backbone))
        check_feature_size(backbone)
        report["ready"] = True
    except ZooError as error:
        report["reason"] = str(error)
    except Exception as error:  # a plugin's own failure is this backbone's problem only
        report["reason"] = f"{type(error).__name__}: {error}"
    report["seconds"] = round(time.perf_counter() - started, 2)
    if report["location"] is None:
        location = cached_folder(backbone)
        report["location"] = str(location) if location else None
    return report
