"""A tiny migration runner for sqlite-utils databases.

Migrations are functions named `mNNN_what(db)`, applied in order, each inside one
transaction and recorded in `_migrations`, so running them again changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]


def connect(path: Path, *, synchronous: str = "NORMAL", readonly: bool = False) -> sqlite_utils.Database:
    """Open a database in WAL mode with foreign keys on."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return sqlite_utils.Database(conn)


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_seq INTEGER)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied: list[str] = []
    for number, migration in enumerate(migrations, start=1):
        name = migration.__name__
        if name in done:
            continue
        with db.conn:
            migration(db)
            db.execute("INSERT INTO _migrations (name, applied_seq) VALUES (?, ?)", [name, number])
        applied.append(name)
    return applied
