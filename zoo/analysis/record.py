"""The run record: one finished run as every writer writes it and every reader reads it.

The runner, `zoo ensemble` and the pending records a busy store leaves all write a `RunRecord`;
the store keeps it as one row (`to_row`/`from_row`), the listing commands print `to_json()`
(the shape `zoo runs --json` and `zoo compare --json` have always had) and the `run_finished`
hook hands plugins that same dict. It sits in the analysis stage, before the runs stage, because
the analysis reads finished runs: a pure value, no store, no TensorFlow.

The row's shape follows the store's MIGRATIONS (zoo/runs/store.py): SCHEMA_VERSION is their
count, and `from_row` reads a row of every earlier version (before version 2 there is no `data`).
A migration that changes the row adds a field here and one to SCHEMA_VERSION.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The runs table's versions: 1 the table as zoo first made it, 2 its `data` column.
SCHEMA_VERSION = 2
OK, FAILED, RACED_OUT, DAMAGED = "ok", "failed", "raced-out", "damaged"
WRITTEN_STATUSES = (OK, FAILED, RACED_OUT)  # what a writer stores (raced-out: `zoo run --race`)
# What a reader may see: damaged is never written; it is a row whose cells zoo cannot decode.
STATUSES = (*WRITTEN_STATUSES, DAMAGED)
JSON_COLUMNS = ("settings", "metrics", "history", "artifacts", "versions")
# The row's columns in the store's order (`data` came last, by a migration); the id is the store's.
COLUMNS = (
    "created_at",
    "backbone",
    "mode",
    "status",
    "reason",
    "settings",
    "data_fingerprint",
    "metrics",
    "history",
    "artifacts",
    "versions",
    "data",
)
REQUIRED_COLUMNS = ("created_at", "backbone", "mode", "status", *JSON_COLUMNS)
HOME_PREFIX = "$ZOO_HOME/"  # artifact paths inside the store's folder are stored under it


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One stored run. Writers build it and hand it to `store.save_run` (or `keep_pending`);
    readers use its fields and accessors, never the JSON form's string keys.

    A new status (as `raced-out`, a run a race stopped early): add it to WRITTEN_STATUSES and
    write `RunRecord(status=..., reason="...", metrics=..., ...)` through `save_run` like any
    run; `zoo runs --status` takes it at once, and readers that need a finished model
    keep asking `is_ok`, so they leave it out without a change.
    """

    backbone: str  # a backbone's name, `a+b` for a combination or an ensemble
    mode: str  # feature-extraction, fine-tune, from-scratch or ensemble
    status: str  # one of STATUSES
    reason: str | None = None  # why a run is not ok, in one line
    settings: dict[str, Any] = field(default_factory=dict)  # what was asked, and chosen (tuned)
    data: str | None = None  # the data folder (None in runs stored before it was kept)
    data_fingerprint: str | None = None  # the images and split, by content
    metrics: dict[str, Any] = field(default_factory=dict)  # test metrics, counts, timings, deploy
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch training curves
    artifacts: dict[str, Any] = field(default_factory=dict)  # file paths (and an `error`)
    versions: dict[str, Any] = field(default_factory=dict)  # zoo, TensorFlow, engine, handle
    created_at: str = field(default_factory=_now)
    id: int | None = None  # given by the store

    # --- what readers ask of a run -------------------------------------------------------------

    @property
    def is_ok(self) -> bool:
        return self.status == OK

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy")
        return (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )

    @property
    def classes(self) -> list[str] | None:
        return self.metrics.get("classes")

    @property
    def engine(self) -> str | None:
        return self.metrics.get("engine")

    @property
    def deployed(self) -> dict[str, Any]:
        """`--deploy`'s figures by target name (an `error` where a target failed)."""
        return self.metrics.get("deploy") or {}

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """The backbone's preprocessing facts (None for a combination, an ensemble, old runs)."""
        return self.settings.get("preprocessing")

    @property
    def probabilities_path(self) -> str | None:
        """The stored test probabilities (.npz), in the order of the test images."""
        return self.artifacts.get("test_probabilities")

    @property
    def run_folder(self) -> Path | None:
        folder = self.artifacts.get("run_folder")
        return Path(folder) if folder else None

    @property
    def data_name(self) -> str | None:
        """The data folder's name (`food` for ~/photos/food); None for runs stored before it."""
        return Path(self.data).name if self.data else None

    @property
    def members(self) -> list[int]:
        """An ensemble's runs."""
        return list(self.settings.get("members") or [])

    # --- the forms it takes ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The record as `zoo runs --json` prints it: the id first, then the columns in order."""
        return {"id": self.id, **{column: getattr(self, column) for column in COLUMNS}}

    @classmethod
    def from_json(cls, facts: Mapping[str, Any]) -> RunRecord:
        return cls(**{key: facts[key] for key in ("id", *COLUMNS) if key in facts})

    def to_row(self, home: Path) -> dict[str, Any]:
        """The store's row (every column but the id): JSON text for the dict columns, artifact
        paths inside `home` as `$ZOO_HOME/...`, so a copied home uses its own files."""
        row = {column: getattr(self, column) for column in COLUMNS}
        row["artifacts"] = {key: _relative(value, home) for key, value in self.artifacts.items()}
        return {
            key: json.dumps(value) if key in JSON_COLUMNS else value for key, value in row.items()
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any], home: Path) -> RunRecord:
        """A stored row (of any schema version) as a record; a cell that is not the JSON object
        zoo wrote marks the run damaged, and the other cells are still read."""
        cells, damaged = {}, []
        for column in JSON_COLUMNS:
            try:
                value = json.loads(row[column])
            except (TypeError, ValueError, RecursionError):
                value = None
            if not isinstance(value, dict):
                damaged.append(column)
                value = {}
            cells[column] = value
        record = cls(
            id=row["id"],
            created_at=row["created_at"],
            backbone=row["backbone"],
            mode=row["mode"],
            status=row["status"],
            reason=row["reason"],
            data_fingerprint=row["data_fingerprint"],
            data=row["data"] if "data" in row.keys() else None,  # noqa: SIM118 (sqlite3.Row)
            **cells,
        )
        record.artifacts = {key: _absolute(value, home) for key, value in record.artifacts.items()}
        if damaged:
            record.status = DAMAGED
            record.reason = f"its stored {', '.join(damaged)} is not valid; the run cannot be used"
        return record


def row_problem(row: Any) -> str | None:
    """What keeps a stored row (a pending record's file) from being one zoo wrote, or None."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        return f"unknown field(s) {', '.join(map(repr, unknown))[:200]}"
    missing = [column for column in REQUIRED_COLUMNS if row.get(column) is None]
    if missing:
        return f"no {', '.join(missing)}"
    for column, value in row.items():
        wanted = str if column in JSON_COLUMNS else (str, int, float, type(None))
        if isinstance(value, bool) or not isinstance(value, wanted):
            return f"field {column!r} holds a {type(value).__name__}"
    return None


def _relative(value: Any, home: Path) -> Any:
    """A path inside the home as `$ZOO_HOME/...`; anything else (--logdir, an error) as it is."""
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    try:
        return HOME_PREFIX + Path(value).relative_to(home).as_posix()
    except ValueError:
        return value


def _absolute(value: Any, home: Path) -> Any:
    if isinstance(value, str) and value.startswith(HOME_PREFIX):
        return str(home / value.removeprefix(HOME_PREFIX))
    return value  # stored before paths were relative, or not a path
