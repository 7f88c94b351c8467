"""Read and validate registry.toml: the catalogue of backbones and their facts.

Nothing here imports TensorFlow: `zoo list` must answer instantly.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from zoo.catalog.handles import BUILT, parse_handle
from zoo.catalog.preprocessing import CHANNEL_ORDERS, INTERPOLATIONS, preprocessing_problem
from zoo.errors import RegistryError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


# Bounds that keep every number convertible (TensorFlow shapes are 64-bit, pixels count).
LARGEST_INPUT_SIDE = 16_384
LARGEST_FEATURE_DIM = 1 << 20
LARGEST_NUMBER = 1e12


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= LARGEST_NUMBER
    )


def _is_pair(check):
    return lambda value: (
        isinstance(value, list) and len(value) == 2 and all(check(v) for v in value)
    )


def _is_int_up_to(largest: int):
    return lambda value: (
        isinstance(value, int) and not isinstance(value, bool) and 0 < value <= largest
    )


def _is_triple(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)


# field -> (required, check, what the check wants)
FIELDS: dict[str, tuple[bool, Any, str]] = {
    "plugin": (True, lambda v: isinstance(v, str) and v != "", "a plugin's name"),
    "family": (False, lambda v: isinstance(v, str), "a string (e.g. resnet)"),
    "handle": (True, lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "input_size": (
        True,
        _is_pair(_is_int_up_to(LARGEST_INPUT_SIDE)),
        f"two positive integers [height, width], each at most {LARGEST_INPUT_SIDE}",
    ),
    "input_range": (False, _is_pair(_is_number), "two finite numbers [low, high]"),
    "mean": (False, _is_triple, "three finite numbers, per channel, in 0..255 units"),
    "std": (False, _is_triple, "three positive numbers, per channel, in 0..255 units"),
    "channel_order": (False, lambda v: v in CHANNEL_ORDERS, f"one of {', '.join(CHANNEL_ORDERS)}"),
    "interpolation": (False, lambda v: v in INTERPOLATIONS, f"one of {', '.join(INTERPOLATIONS)}"),
    "crop_fraction": (False, _is_number, "a number in (0, 1], e.g. 0.875"),
    "feature_dim": (
        True,
        _is_int_up_to(LARGEST_FEATURE_DIM),
        f"a positive integer, at most {LARGEST_FEATURE_DIM}",
    ),
    "params_m": (False, _is_number, "a finite number (millions of parameters)"),
    "imagenet_top1": (False, _is_number, "a finite number (percent)"),
    "paper": (False, lambda v: isinstance(v, str), "a string"),
    "description": (False, lambda v: isinstance(v, str), "a string"),
    "pretrained": (False, lambda v: isinstance(v, bool), "true or false"),
    # Read from the model's documentation page (the generated TF Hub catalogue fills them).
    "pretrained_on": (False, lambda v: isinstance(v, str), "a string (e.g. imagenet-1k)"),
    "fine_tunable": (False, lambda v: isinstance(v, bool), "true or false"),
    "doc": (False, lambda v: isinstance(v, str), "a string (the documentation page read)"),
    "fallback_handles": (
        False,
        lambda v: isinstance(v, list) and all(isinstance(h, str) and h for h in v),
        "a list of handle strings",
    ),
}


class Registry(dict):
    """Backbone name -> Entry, from zoo's registry and the TOML files plugins ship."""

    def for_plugin(self, plugin_name: str) -> list[Entry]:
        """The entries that name `plugin_name`: what that plugin turns into backbones."""
        return [entry for entry in self.values() if entry.plugin == plugin_name]


@dataclass(frozen=True)
class Entry:
    """One validated `[backbones.NAME]` table."""

    name: str
    source: Path
    fields: dict[str, Any]

    @property
    def plugin(self) -> str:
        return self.fields["plugin"]


# The command line's `zoo --registry F`, set for each command: every catalogue the command loads
# reads F, also one loaded deep inside it (a run's model written on its first `zoo predict`).
command_registry: Path | None = None


def default_registry_path() -> Path:
    """`zoo --registry F` or $ZOO_REGISTRY if set, else the registry.toml that ships with zoo."""
    if command_registry is not None:
        return command_registry
    configured = os.environ.get("ZOO_REGISTRY")
    if configured:
        return Path(configured).expanduser()
    return Path(str(resources.files("zoo.catalog") / "registry.toml"))


# The TF Hub catalogue generated from tfhub.dev's model pages (scripts/make_hub_catalogue.py).
CATALOGUE_FILE = "hub_catalogue.toml"


def catalogue_path() -> Path:
    return Path(str(resources.files("zoo.catalog") / CATALOGUE_FILE))


def load_registry(path: Path | None = None) -> Registry:
    """zoo's registry (or the one given); every problem is a RegistryError naming the spot.

    zoo's own registry comes with the generated TF Hub catalogue; a registry given with
    --registry or ZOO_REGISTRY stands alone.
    """
    if path is not None or command_registry is not None or os.environ.get("ZOO_REGISTRY"):
        return load_registry_file(path or default_registry_path())
    hand_kept = load_registry_file(default_registry_path())
    return with_catalogue(hand_kept, load_registry_file(catalogue_path(), default_plugin="hub"))


def with_catalogue(hand_kept: Registry, catalogue: Registry) -> Registry:
    """The hand-kept entries, then the catalogue's that repeat none of their names or handles."""
    taken = {h for entry in hand_kept.values() for h in _handles(entry.fields)}
    merged = Registry(hand_kept)
    for name, entry in catalogue.items():
        if name not in merged and not taken & set(_handles(entry.fields)):
            merged[name] = entry
    return merged


def is_catalogued(entry: Entry) -> bool:
    """Whether an entry comes from the generated catalogue (it yields to any other definition)."""
    return entry.source.name == CATALOGUE_FILE


def _handles(fields: dict[str, Any]) -> list[str]:
    return [fields["handle"], *fields.get("fallback_handles", [])]


def load_registry_file(path: Path, default_plugin: str | None = None) -> Registry:
    """Parse and validate one registry file; `default_plugin` fills a missing 'plugin' field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RegistryError(
            f"{path}: cannot read the registry ({error.strerror}); "
            "check the path given by --registry or ZOO_REGISTRY"
        ) from None
    except UnicodeDecodeError as error:  # TOML is UTF-8 by definition; anything else is no registry
        raise RegistryError(
            f"{path}: the registry is not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from None
    _reject_duplicate_tables(path, text)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RegistryError(f"{path}: invalid TOML: {error}; fix the syntax there") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or inline tables
        raise RegistryError(
            f"{path}: invalid TOML: arrays or inline tables nested too deeply; flatten them"
        ) from None
    return parse_registry(document, path, default_plugin)


def parse_registry(
    document: dict[str, Any], path: Path, default_plugin: str | None = None
) -> Registry:
    """Validate an already-parsed registry document."""
    unknown_top = sorted(set(document) - {"backbones"})
    if unknown_top:
        raise RegistryError(
            f"{path}: unknown top-level key {unknown_top[0]!r}; only [backbones.NAME] tables belong here"
        )
    tables = document.get("backbones", {})
    if not isinstance(tables, dict):
        raise RegistryError(f"{path}: 'backbones' must be tables, written [backbones.NAME]")
    return Registry(
        {name: _validate_entry(path, name, table, default_plugin) for name, table in tables.items()}
    )


def _validate_entry(path: Path, name: str, table: Any, default_plugin: str | None) -> Entry:
    where = f"{path}: backbone {name!r}"
    if not isinstance(table, dict):
        if not NAME_PATTERN.match(name):
            raise RegistryError(f"{where}: {NAME_RULE}")
        raise RegistryError(f"{where}: must be a table, written [backbones.{name}]")
    if default_plugin is not None:
        table = {"plugin": default_plugin, **table}
    problem = entry_problem(name, table)
    if problem:
        raise RegistryError(f"{where}: {problem}")
    return Entry(name=name, source=path, fields=dict(table))


NAME_RULE = "names use lowercase letters, digits, '_' and '-' (e.g. resnet50v2)"


def entry_problem(
    name: str, table: dict[str, Any], required: tuple[str, ...] | None = None
) -> str | None:
    """What is wrong with one backbone's fields, or None: the checks for TOML and code alike.

    `required` overrides which fields must be present (a Backbone built in code gets its
    plugin from zoo).
    """
    if not NAME_PATTERN.match(name):
        return NAME_RULE
    for key in table:
        if key not in FIELDS:
            return f"unknown field {key!r}; known fields: {', '.join(FIELDS)}"
    for field, (is_required, check, wanted) in FIELDS.items():
        if field not in table:
            if is_required if required is None else field in required:
                return f"missing field {field!r} ({wanted})"
            continue
        if not check(table[field]):
            return f"field {field!r} must be {wanted}, got {table[field]!r}"
    for field in ("handle", "fallback_handles"):
        for handle in _as_list(table.get(field, [])):
            parsed = parse_handle(handle)
            if parsed.kind is None or (
                parsed.kind == BUILT and not NAME_PATTERN.match(parsed.name)
            ):
                return (
                    f"field {field!r} has unsupported handle {handle!r}; use an "
                    "https:// URL, a file:// URL, an absolute path, or zoo:NAME (NAME in "
                    "lowercase letters, digits, '_' and '-')"
                )
    return preprocessing_problem(table)


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _reject_duplicate_tables(path: Path, text: str) -> None:
    """TOML already forbids a repeated table; this names the backbone in zoo's own words."""
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.match(r"\s*\[\s*backbones\.([^\]\s]+)\s*\]", line)
        if not match:
            continue
        name = match.group(1).strip("\"'")
        if name in seen:
            raise RegistryError(
                f"{path}: backbone {name!r} is defined twice (lines {seen[name]} and {number}); "
                "keep one table per name"
            )
        seen[name] = number
