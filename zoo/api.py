"""The Python API for notebooks: the same engine the CLI drives.

import zoo
zoo.list_backbones()
model = zoo.create_model("efficientnet_lite0", num_classes=10)
summary = zoo.run(["efficientnet_lite0"], data="my_images/")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.catalog.backbone import Backbone
from zoo.catalog.filters import Filters, select_rows
from zoo.catalog.plugins import Catalog, load_catalog
from zoo.reporting import Reporter

if TYPE_CHECKING:  # imported where used: `zoo list` must not pay for NumPy and the runner
    from zoo.extraction.engines import Engines
    from zoo.runs.deploy import DeployedRunSummary
    from zoo.runs.race import RaceSettings
    from zoo.runs.runner import RunSummary
    from zoo.runs.settings import RunSettings


def list_backbones(
    registry: str | Path | None = None, *, sort: str = "name", **filters: Any
) -> list[dict[str, Any]]:
    """Facts about every available backbone, with whether it is ready offline; the filters and
    sorts of `zoo list` as keywords: list_backbones(family="efficientnet_v2", max_params=20)."""
    return find_backbones(load_catalog(_path(registry)), Filters(**filters), sort)


def describe(backbone: Backbone) -> dict[str, Any]:
    """A backbone's facts, whether it is ready offline, and where it is cached (no network)."""
    from zoo.sources.hub import cached_folder, is_ready

    location = cached_folder(backbone)
    return {
        **backbone.facts(),
        "ready": is_ready(backbone),
        "cached_at": str(location) if location else None,
    }


def find_backbones(catalog: Catalog, filters: Filters, sort: str = "name") -> list[dict[str, Any]]:
    """The `describe()` rows of the backbones that pass `filters`, sorted (`zoo list`, `run`)."""
    rows = [describe(backbone) for backbone in catalog.backbones.values()]
    return select_rows(rows, filters, sort)


def needs_network(backbone: Backbone) -> bool:
    """Not ready offline, and every handle is a download (a missing local path is no such case)."""
    from zoo.sources.hub import is_ready, is_remote

    return not is_ready(backbone) and all(is_remote(handle) for handle in backbone.handles)


def ready_when_offline(backbones: list[Backbone]) -> tuple[list[Backbone], list[Backbone]]:
    """(what can run, what needs a download), if the hub is unreachable; else (all, [])."""
    from zoo.sources.network import hub_reachable

    waiting = [backbone for backbone in backbones if needs_network(backbone)]
    if not waiting or hub_reachable():
        return backbones, []
    return [backbone for backbone in backbones if backbone not in waiting], waiting


def get_backbone(name_or_handle: str, catalog: Catalog | None = None) -> Backbone:
    """A registered backbone by name, or an ad-hoc one for a hub handle (224x224, inputs in 0..1)."""
    catalog = catalog or load_catalog()
    if name_or_handle in catalog.backbones or "/" not in name_or_handle:
        return catalog.get(name_or_handle)
    return Backbone(
        name="custom",
        plugin="api",
        handle=name_or_handle,
        input_size=(224, 224),
        input_range=(0.0, 1.0),
        feature_dim=1,  # not known before the model loads; create_model does not use it
    )


def create_model(name_or_handle: str, num_classes: int = 10, trainable: bool = False) -> Any:
    """The classic `create_model(model_url, num_classes)`: frozen extractor + softmax head, uncompiled.

    The model takes raw pixels (0..255) and scales them to the backbone's own range itself.
    """
    from zoo.training.models import create_model as build

    return build(get_backbone(name_or_handle), num_classes, trainable=trainable)


def run(
    names: list[str] | None = None,
    *,
    all_backbones: bool = False,
    data: str | Path | None = None,
    train: str | Path | None = None,
    test: str | Path | None = None,
    manifest: str | Path | None = None,
    registry: str | Path | None = None,
    reporter: Reporter | None = None,
    deploy: str | list[str] | None = None,
    budget_ms: float | None = None,
    budget_mb: float | None = None,
    race: bool = False,
    alpha: float = 0.05,
    screen: str | None = None,
    keep_top: int | None = None,
    **settings: Any,
) -> RunSummary | DeployedRunSummary:
    """Train, evaluate and store runs; settings as on the command line (epochs=5, ...).

    `data` is a folder of train/ and test/ (val/ too), of train/ alone, or of class folders;
    `manifest` a CSV of path,label[,split] rows. `race=True` races the frozen backbones first
    (`zoo run --race`: `alpha`, `screen`, `keep_top` as there); only the survivors run in full.
    `deploy` ("tflite-int8", or a list) exports and measures each run as `--deploy` does: each
    result's `metrics["deploy"][target]`, and the summary's `budget`, the deployed models
    within `budget_ms` and `budget_mb`."""
    from zoo.runs.race import race_settings as check_race_settings
    from zoo.runs.settings import RunSettings
    from zoo.runs.targets import choose_targets

    run_settings = RunSettings(**settings)  # usage errors first
    race_settings = check_race_settings(race, alpha, screen, keep_top)
    catalog = load_catalog(_path(registry))
    reporter = reporter or Reporter()
    for problem in catalog.problems:  # a broken plugin is reported in a notebook too
        reporter.warning(problem)
    deploy_names = [deploy] if isinstance(deploy, str) else deploy
    targets = choose_targets(
        deploy_names, budget_ms, budget_mb, "speed", lambda: catalog.plugins, reporter.warning
    )
    if targets:
        from zoo.runs.deploy import refuse_combined_selection

        refuse_combined_selection(catalog.select(names or [], all_backbones, combine=True))
    summary = run_backbones(
        names or [],
        all_backbones=all_backbones,
        data=_path(data),
        train=_path(train),
        test=_path(test),
        manifest=_path(manifest),
        settings=run_settings,
        catalog=catalog,
        reporter=reporter,
        race=race_settings,
    )
    if not targets:
        return summary
    from zoo.runs.deploy import deploy_summary

    return deploy_summary(summary, targets, budget_ms, budget_mb, reporter)


def run_backbones(
    names: list[str],
    *,
    all_backbones: bool,
    data: Path | None,
    train: Path | None,
    test: Path | None,
    settings: RunSettings,
    catalog: Catalog,
    reporter: Reporter | None = None,
    engines: Engines | None = None,
    manifest: Path | None = None,
    race: RaceSettings | None = None,
) -> RunSummary:
    from zoo.data.demo import demo_data_dir
    from zoo.data.layouts import find_layout
    from zoo.extraction.engines import load_engines
    from zoo.runs.runner import preflight
    from zoo.runs.runner import run as run_all

    if engines is None:
        engines = load_engines(catalog.plugins)
        for problem in engines.problems:
            (reporter or Reporter()).warning(problem)
    preflight(settings, engines)  # what this machine has, before the selection and the data
    backbones = catalog.select(names, all_backbones, combine=True)
    settings.check_selection(backbones, all_backbones)
    if race is not None:
        from zoo.runs.race import check_race

        check_race(backbones, settings)
    if data is None and train is None and test is None and manifest is None:
        data = demo_data_dir()
    layout = find_layout(data, train, test, manifest)
    if race is not None:
        from zoo.runs.race import run_race

        return run_race(backbones, layout, settings, race, reporter, engines)
    return run_all(backbones, layout, settings, reporter, engines)


def _path(value: str | Path | None) -> Path | None:
    return Path(value).expanduser() if value is not None else None
