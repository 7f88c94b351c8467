"""The run store: one SQLite row per run, written in a single transaction.

A run killed halfway leaves no partial row; WAL mode and a busy timeout let several `zoo run`
processes share one store.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from zoo.errors import UsageError, ZooError
from zoo.home import store_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    backbone TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    settings TEXT NOT NULL,
    data_fingerprint TEXT,
    data TEXT,
    metrics TEXT NOT NULL,
    history TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    versions TEXT NOT NULL
)
"""
JSON_COLUMNS = ("settings", "metrics", "history", "artifacts", "versions")
# Columns added after the first release: a store made before them gains them (NULL in old rows).
ADDED_COLUMNS = {"data": "TEXT"}
STATUSES = ("ok", "failed")


def connect(path: Path | None = None) -> sqlite3.Connection:
    path = path or store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = None
    try:
        connection = sqlite3.connect(path, timeout=60)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(SCHEMA)
        _add_missing_columns(connection)
    except sqlite3.DatabaseError as error:  # not a database, damaged, or locked past the timeout
        if connection is not None:
            connection.close()
        raise ZooError(
            f"{path}: cannot open the run store ({error}); if it is damaged, move it aside "
            "and zoo starts a new one"
        ) from None
    return connection


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    present = {row["name"] for row in connection.execute("PRAGMA table_info(runs)")}
    for name, kind in ADDED_COLUMNS.items():
        if name not in present:
            try:
                with connection:
                    connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:  # another zoo process added it just now
                if "duplicate column" not in str(error):
                    raise


def save_run(record: dict[str, Any], path: Path | None = None) -> int:
    """Insert one run atomically; returns its id."""
    row = {
        key: json.dumps(value) if key in JSON_COLUMNS else value for key, value in record.items()
    }
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with closing(connect(path)) as connection, connection:
        cursor = connection.execute(
            f"INSERT INTO runs ({columns}) VALUES ({marks})", list(row.values())
        )
        return int(cursor.lastrowid)


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    for key in JSON_COLUMNS:
        record[key] = json.loads(record[key])
    return record


def data_name(record: dict[str, Any]) -> str | None:
    """The data folder's name (`food` for ~/photos/food); None for runs stored before it was kept."""
    return Path(record["data"]).name if record.get("data") else None


def list_runs(
    limit: int | None = None,
    path: Path | None = None,
    *,
    backbone: str | None = None,
    status: str | None = None,
    data: str | None = None,
) -> list[dict[str, Any]]:
    """Stored runs, newest first, optionally only those of one backbone, status or data folder.

    `data` matches the data folder's name or path, or the start of the data fingerprint.
    """
    conditions, values = [], []
    if backbone is not None:
        conditions.append("backbone = ?")
        values.append(backbone)
    if status is not None:
        conditions.append("status = ?")
        values.append(status)
    if data is not None:
        conditions.append(
            "(data = ? OR data LIKE ? ESCAPE '\\' OR data_fingerprint LIKE ? ESCAPE '\\')"
        )
        literal = data.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values += [data, f"%/{literal}", f"{literal}%"]
    query = "SELECT * FROM runs"
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    query += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    with closing(connect(path)) as connection:
        return [_decode(row) for row in connection.execute(query, values)]


def stored_values(column: str, path: Path | None = None) -> list[str]:
    """The distinct values of `backbone`, `data` or `data_fingerprint` in the store (for hints)."""
    if column not in ("backbone", "data", "data_fingerprint"):
        raise ValueError(column)
    query = f"SELECT DISTINCT {column} FROM runs WHERE {column} IS NOT NULL ORDER BY {column}"
    with closing(connect(path)) as connection:
        return [row[0] for row in connection.execute(query)]


def get_run(run_id: int, path: Path | None = None) -> dict[str, Any]:
    with closing(connect(path)) as connection:
        row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UsageError(f"no run with id {run_id}; `zoo runs` lists the stored runs")
    return _decode(row)
