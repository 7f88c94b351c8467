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
    metrics TEXT NOT NULL,
    history TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    versions TEXT NOT NULL
)
"""
JSON_COLUMNS = ("settings", "metrics", "history", "artifacts", "versions")


def connect(path: Path | None = None) -> sqlite3.Connection:
    path = path or store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = None
    try:
        connection = sqlite3.connect(path, timeout=60)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(SCHEMA)
    except sqlite3.DatabaseError as error:  # not a database, damaged, or locked past the timeout
        if connection is not None:
            connection.close()
        raise ZooError(
            f"{path}: cannot open the run store ({error}); if it is damaged, move it aside "
            "and zoo starts a new one"
        ) from None
    return connection


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


def list_runs(limit: int | None = None, path: Path | None = None) -> list[dict[str, Any]]:
    """Stored runs, newest first."""
    query = "SELECT * FROM runs ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    with closing(connect(path)) as connection:
        return [_decode(row) for row in connection.execute(query)]


def get_run(run_id: int, path: Path | None = None) -> dict[str, Any]:
    with closing(connect(path)) as connection:
        row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise UsageError(f"no run with id {run_id}; `zoo runs` lists the stored runs")
    return _decode(row)
