"""Self-test of a staged KB version, run before it may become active."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kb.errors import KBError
from kb.versions import DB_NAME


def self_test(version_dir: Path) -> None:
    """Integrity, counts and sample look-ups; raise KBError saying what failed."""
    db_path = version_dir / DB_NAME
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        status = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if status != "ok":
            raise KBError(f"self-test: integrity check failed: {status}")
        codes = conn.execute("SELECT count(*) FROM codes").fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        if codes == 0 and chunks == 0:
            raise KBError("self-test: the new version holds no codes and no passages")
        for key, _title in conn.execute("SELECT key, title FROM codes ORDER BY id LIMIT 20"):
            if conn.execute("SELECT count(*) FROM codes WHERE key = ?", [key]).fetchone()[0] < 1:
                raise KBError(f"self-test: code {key} cannot be looked up")
        for table in ("chunks_words", "chunks_tri"):
            indexed = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            if indexed != chunks:
                raise KBError(f"self-test: {table} holds {indexed} rows for {chunks} chunks")
        embedded = conn.execute("SELECT count(DISTINCT chunk_id) FROM embeddings").fetchone()[0]
        if embedded and embedded != chunks:
            raise KBError(f"self-test: {embedded} embeddings for {chunks} chunks")
    except sqlite3.DatabaseError as error:
        raise KBError(f"self-test: database unreadable: {error}") from error
    finally:
        conn.close()
    if embedded:
        from kb.search.dense import DenseIndex

        count = DenseIndex(version_dir / "chroma").count()
        if count != chunks:
            raise KBError(f"self-test: vector index holds {count} of {chunks} chunks")
