"""Detect and repair a missing or unreadable vector index of a KB version.

SQLite is the record of truth; the Chroma directory is a cache that is rebuilt from the
embeddings stored in SQLite (no model needed). While it is missing, search falls back to
full-text only and says so in its notices (`kb.search.hybrid`), so answers keep working.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kb.build import build_dense_index
from kb.errors import KBError
from kb.search.dense import DenseIndex
from kb.versions import DB_NAME, VersionStore


@dataclass(frozen=True)
class IndexHealth:
    """What a check found: `problem` is None when the index is fine (or not expected)."""

    version_dir: Path
    expected: int
    found: int
    problem: str | None


def _stored(version_dir: Path) -> tuple[str, int]:
    """(embedding model id, number of stored vectors of that model) from SQLite."""
    db_path = version_dir / DB_NAME
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise KBError(f"knowledge base {db_path} is unreadable: {error}") from error
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
        model = str(row[0]) if row and row[0] else ""
        count = conn.execute("SELECT count(*) FROM embeddings WHERE model = ?", [model]).fetchone()[0] if model else 0
    except sqlite3.DatabaseError as error:
        raise KBError(f"knowledge base {db_path} is unreadable: {error}; rebuild it from the sources") from error
    finally:
        conn.close()
    return model, int(count)


def check_index(version_dir: Path) -> IndexHealth:
    """Is the version's Chroma directory present, readable and complete?"""
    _model, expected = _stored(version_dir)
    if expected == 0:
        return IndexHealth(version_dir, 0, 0, None)  # built without embeddings: nothing to check
    index = DenseIndex(version_dir / "chroma")
    try:
        found = index.count()
    except KBError as error:
        return IndexHealth(version_dir, expected, 0, str(error))
    finally:
        index.close()
    if found != expected:
        return IndexHealth(version_dir, expected, found, f"vector index holds {found} of {expected} vectors")
    return IndexHealth(version_dir, expected, found, None)


def _forget_cached_client(index_dir: Path) -> None:
    # Chroma caches one client per path inside the process; after the directory is
    # replaced, a cached client would keep reading the old (deleted) files.
    try:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient._identifier_to_system.pop(str(index_dir), None)
    except (ImportError, AttributeError):
        pass


def repair_index(version_dir: Path, *, force: bool = False) -> int:
    """Rebuild the Chroma directory from SQLite when it is damaged (or always, with force).

    Returns the number of vectors written (0 when nothing had to be done).
    """
    health = check_index(version_dir)
    if health.expected == 0 or (health.problem is None and not force):
        return 0
    model, _ = _stored(version_dir)
    index_dir = version_dir / "chroma"
    _forget_cached_client(index_dir)
    written = build_dense_index(version_dir / DB_NAME, index_dir, model)
    _forget_cached_client(index_dir)
    after = check_index(version_dir)
    if after.problem is not None:
        raise KBError(f"rebuilt the vector index of {version_dir} but it is still not usable: {after.problem}")
    return written


def repair_current(store: VersionStore) -> int:
    """Repair the active version's index; see `repair_index`."""
    return repair_index(store.current_path())


def repair_in_background(
    version_dir: Path, on_done: Callable[[Exception | None], None] | None = None
) -> threading.Thread:
    """Start `repair_index` in a daemon thread (searches meanwhile run FTS-only)."""

    def run() -> None:
        error: Exception | None = None
        try:
            repair_index(version_dir)
        except Exception as failure:  # reported to the caller's callback, never raised in a thread
            error = failure
        if on_done is not None:
            on_done(error)

    thread = threading.Thread(target=run, name=f"kb-repair-{version_dir.name}", daemon=True)
    thread.start()
    return thread
