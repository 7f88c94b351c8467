"""The run store: one SQLite row per run, written in a single transaction.

A run killed halfway leaves no partial row; WAL mode and a bounded busy timeout let several
`zoo run` processes share one store. A finished run that the store refuses (locked past the
timeout, disk full, read-only, a newer schema) is kept beside it as a *pending* record, which
the next command that opens the store imports. Artifact paths inside the store's folder
(ZOO_HOME) are stored relative to it, so a copied home uses its own files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from zoo.errors import StoreError, UsageError
from zoo.home import atomic_write_bytes, store_path

# The runs table as zoo first created it; later changes are MIGRATIONS, below.
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
# What a run record may set: every column but the id, which the store gives.
COLUMNS = (
    "created_at",
    "backbone",
    "mode",
    "status",
    "reason",
    "settings",
    "data_fingerprint",
    "data",
    "metrics",
    "history",
    "artifacts",
    "versions",
)
REQUIRED_COLUMNS = ("created_at", "backbone", "mode", "status", *JSON_COLUMNS)
# What a run's status can be: ok, failed and raced-out (`zoo run --race`) are written; damaged is
# read (a cell zoo cannot decode).
STATUSES = ("ok", "failed", "raced-out", "damaged")
# How long a write waits for another process's write transaction before giving up.
BUSY_TIMEOUT_S = 30.0
IMPORT_BUSY_TIMEOUT_S = 1.0  # importing pending records is retried by the next command
LARGEST_RUN_ID = 2**63 - 1  # SQLite's INTEGER
PENDING_FOLDER = "pending-runs"
# Below this much free space, an I/O error from SQLite is taken for a full disk: SQLite reports
# a failed write to the WAL or its index as "disk I/O error", not as SQLITE_FULL.
LOW_SPACE_BYTES = 16 * 2**20
HOME_PREFIX = "$ZOO_HOME/"  # artifact paths inside the store's folder are stored under it


def connect(path: Path | None = None) -> sqlite3.Connection:
    """Open the store (creating or migrating it), then import any pending records into it.

    A store a newer zoo migrated further is opened for reading only: `save_run` refuses it.
    """
    path = path or store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = None
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        newer = _migrate(connection) > SCHEMA_VERSION
    except sqlite3.Error as error:
        if connection is not None:
            connection.close()
        raise describe(error, path) from None
    if not newer:
        _import_pending(connection, path)
    return connection


# --- schema migrations: each takes the store one version further, in order ----------------------
# The store's version is SQLite's `PRAGMA user_version` (0 in a new file, and in stores made
# before migrations were numbered: each migration below is a no-op where its change is there).


def _create_runs(connection: sqlite3.Connection) -> None:
    connection.execute(SCHEMA)


def _add_data_column(connection: sqlite3.Connection) -> None:
    """The data folder a run read (`zoo runs --data`); NULL in runs stored before it."""
    if "data" not in _columns(connection):
        connection.execute("ALTER TABLE runs ADD COLUMN data TEXT")


MIGRATIONS = (_create_runs, _add_data_column)
SCHEMA_VERSION = len(MIGRATIONS)


def _migrate(connection: sqlite3.Connection) -> int:
    """Bring the store to SCHEMA_VERSION, in one transaction; returns the version it had.

    BEGIN IMMEDIATE takes the write lock first, so two processes opening a new store never
    both migrate it: the second sees the version the first wrote.
    """
    version = _schema_version(connection)
    if version >= SCHEMA_VERSION:  # the usual case: nothing written
        return version
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(connection)
        for migration in MIGRATIONS[version:]:
            migration(connection)
        connection.execute(f"PRAGMA user_version = {max(version, SCHEMA_VERSION)}")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return version


def _schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _columns(connection: sqlite3.Connection) -> set[str]:
    return {row[1] for row in connection.execute("PRAGMA table_info(runs)")}


def _newer_store(path: Path, version: int) -> StoreError:
    return StoreError(
        f"{path}: the run store was written by a newer zoo (schema {version}; this zoo knows "
        f"up to {SCHEMA_VERSION}); upgrade zoo, or set ZOO_HOME to another folder"
    )


def describe(error: sqlite3.Error, path: Path) -> StoreError:
    """The real cause of a store failure, in one line, with what to do about it."""
    text = str(error)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        why = (
            f"the run store is locked by another process's write (waited {BUSY_TIMEOUT_S:g} s); "
            "try again when that process has finished"
        )
    elif "full" in lowered or ("i/o" in lowered and _low_on_space(path)):
        why = f"the disk is full ({text}); free some space"
    elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        why = f"the run store is not writable ({text}); check the permissions of ZOO_HOME"
    elif isinstance(error, sqlite3.IntegrityError):  # a table zoo's migrations did not make
        why = (
            f"the run store's table is not the one this zoo writes ({text}); "
            "set ZOO_HOME to another folder"
        )
    else:  # not a database, a torn page, a damaged index
        why = (
            f"cannot open the run store ({text}); if it is damaged, move it aside "
            "and zoo starts a new one"
        )
    return StoreError(f"{path}: {why}")


def _low_on_space(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < LOW_SPACE_BYTES
    except OSError:
        return False


def is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _opened(path: Path | None) -> Iterator[sqlite3.Connection]:
    """A connection whose SQLite errors, wherever they happen, become one StoreError line."""
    path = path or store_path()
    with closing(connect(path)) as connection:
        try:
            yield connection
        except sqlite3.Error as error:
            raise describe(error, path) from None


def save_run(record: dict[str, Any], path: Path | None = None) -> int:
    """Insert one run atomically; returns its id. Raises StoreError naming the cause."""
    path = path or store_path()
    row = _encode(record, path.parent)
    with _opened(path) as connection, connection:
        version = _schema_version(connection)
        if version > SCHEMA_VERSION:  # its rows may need what this zoo does not write
            raise _newer_store(path, version)
        return _insert(connection, row)


def update_run(
    run_id: int, change: Callable[[dict[str, Any]], None], path: Path | None = None
) -> dict[str, Any]:
    """Let `change` edit a stored run's `metrics` and `artifacts` (in place), and write them back
    in one transaction that holds the write lock from the read on: two processes adding facts
    to one run (e.g. `--deploy` measurements of two targets) never lose each other's. Returns
    the run as stored afterwards."""
    path = path or store_path()
    with _opened(path) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise UsageError(f"no run with id {run_id}; `zoo runs` lists the stored runs")
            record = _decode(row, path.parent)
            if record["status"] == "damaged":  # writing back would replace what is left of it
                raise UsageError(f"run {run_id}: {record['reason']}")
            change(record)
            encoded = _encode(
                {"metrics": record["metrics"], "artifacts": record["artifacts"]}, path.parent
            )
            connection.execute(
                "UPDATE runs SET metrics = ?, artifacts = ? WHERE id = ?",
                (encoded["metrics"], encoded["artifacts"], run_id),
            )
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
    return record


def keep_pending(record: dict[str, Any], path: Path | None = None) -> Path:
    """Write a run the store refused beside it; the next command that opens the store adds it."""
    path = path or store_path()
    pending = path.parent / PENDING_FOLDER / f"{uuid.uuid4().hex}.json"
    atomic_write_bytes(pending, json.dumps(_encode(record, path.parent)).encode())
    return pending


def _encode(record: dict[str, Any], home: Path) -> dict[str, Any]:
    artifacts = {key: _relative(value, home) for key, value in record.get("artifacts", {}).items()}
    row = {**record, "artifacts": artifacts}
    return {key: json.dumps(value) if key in JSON_COLUMNS else value for key, value in row.items()}


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


def _insert(connection: sqlite3.Connection, row: dict[str, Any]) -> int:
    unknown = set(row) - set(COLUMNS)
    if unknown:  # column names go into the SQL text: only the store's own, never a record's
        raise ValueError(f"unknown columns {sorted(unknown)}")
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = connection.execute(
        f"INSERT INTO runs ({columns}) VALUES ({marks})", list(row.values())
    )
    return int(cursor.lastrowid)


def _import_pending(connection: sqlite3.Connection, path: Path) -> None:
    """Store the records earlier runs left pending; any that the store still refuses stay."""
    folder = path.parent / PENDING_FOLDER
    if not folder.is_dir():
        return
    # A store busy with another write is tried again by a later command: a reading command
    # must not wait the full busy timeout for it.
    connection.execute(f"PRAGMA busy_timeout = {int(IMPORT_BUSY_TIMEOUT_S * 1000)}")
    try:
        _import_each(connection, folder)
    finally:
        connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def _import_each(connection: sqlite3.Connection, folder: Path) -> None:
    """Import each pending record; one zoo did not write is set aside as `.damaged`, with a
    warning, and the rest still go in. Only a store that refuses writes (locked, full, read-only)
    stops the loop: the next command tries again."""
    for pending in sorted(folder.glob("*.json")):
        claimed = pending.with_name(f".claimed-{os.getpid()}-{pending.name}")
        try:
            os.replace(pending, claimed)  # one process imports each record, never two
        except OSError:
            continue
        try:
            row = json.loads(claimed.read_text(encoding="utf-8"))
            problem = row_problem(row)
        except (OSError, ValueError, RecursionError) as error:  # zoo's writes are atomic
            problem = f"not readable as JSON ({type(error).__name__})"
        if problem:
            _set_aside(claimed, pending, problem)
            continue
        try:
            with connection:
                _insert(connection, row)
                claimed.unlink()
        except sqlite3.IntegrityError as error:  # e.g. a NOT NULL column given null
            _set_aside(claimed, pending, f"refused by the store ({error})")
        except (sqlite3.Error, OSError):
            os.replace(claimed, pending)
            return


def row_problem(row: Any) -> str | None:
    """What keeps a pending record from being a run zoo wrote, or None if nothing does."""
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


def _set_aside(claimed: Path, pending: Path, problem: str) -> None:
    damaged = pending.with_suffix(".damaged")
    os.replace(claimed, damaged)
    warnings.warn(
        f"{pending} is not a run record zoo wrote ({problem}); set aside as {damaged.name}",
        stacklevel=2,
    )


def _decode(row: sqlite3.Row, home: Path) -> dict[str, Any]:
    """A row as a record; a cell that is not the JSON object zoo wrote marks the run damaged."""
    record = dict(row)
    damaged = []
    for key in JSON_COLUMNS:
        try:
            record[key] = json.loads(record[key])
        except (TypeError, ValueError):
            record[key] = None
        if not isinstance(record[key], dict):
            record[key] = {}
            damaged.append(key)
    if damaged:
        record["status"] = "damaged"
        record["reason"] = f"its stored {', '.join(damaged)} is not valid; the run cannot be used"
    record["artifacts"] = {
        key: _absolute(value, home) for key, value in record["artifacts"].items()
    }
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
    path = path or store_path()
    conditions, values = [], []
    if backbone is not None:
        conditions.append("backbone = ?")
        values.append(backbone)
    if status is not None and status != "damaged":  # damaged is found decoding, not stored
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
    query += " ORDER BY id DESC"
    if limit is not None and status is None:
        query += " LIMIT ?"
        values.append(min(limit, LARGEST_RUN_ID))
    with _opened(path) as connection:
        records = [_decode(row, path.parent) for row in connection.execute(query, values)]
    if status is not None:  # a row stored ok or failed may decode as damaged
        records = [record for record in records if record["status"] == status][:limit]
    return records


def stored_values(column: str, path: Path | None = None) -> list[str]:
    """The distinct values of `backbone`, `data` or `data_fingerprint` in the store (for hints)."""
    if column not in ("backbone", "data", "data_fingerprint"):
        raise ValueError(column)
    query = f"SELECT DISTINCT {column} FROM runs WHERE {column} IS NOT NULL ORDER BY {column}"
    with _opened(path) as connection:
        return [row[0] for row in connection.execute(query)]


def get_run(run_id: int, path: Path | None = None) -> dict[str, Any]:
    path = path or store_path()
    missing = UsageError(f"no run with id {run_id}; `zoo runs` lists the stored runs")
    if not 1 <= run_id <= LARGEST_RUN_ID:
        raise missing
    with _opened(path) as connection:
        row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise missing
    return _decode(row, path.parent)


def referenced_run_folders(path: Path | None = None) -> set[str]:
    """The names of the run folders that stored runs and pending records point to."""
    path = path or store_path()
    with _opened(path) as connection:
        cells = [row[0] for row in connection.execute("SELECT artifacts FROM runs")]
    pending = []
    for record in (path.parent / PENDING_FOLDER).glob("*.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, RecursionError):
            pending.append(json.loads(record.read_text(encoding="utf-8"))["artifacts"])
    names = set()
    for cell in cells + pending:
        with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
            names.add(Path(json.loads(cell)["run_folder"]).name)
    return names
