"""Schema of one knowledge-base version database (`kb.sqlite`)."""

from __future__ import annotations

import sqlite_utils

from kb.store.migrate import Migration


def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute(
        """CREATE TABLE codes (
            id INTEGER PRIMARY KEY, code TEXT NOT NULL, key TEXT NOT NULL, title TEXT NOT NULL,
            steps TEXT NOT NULL, safety TEXT NOT NULL, severity TEXT NOT NULL,
            machine_model TEXT NOT NULL, lang TEXT NOT NULL, description TEXT NOT NULL,
            source TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX codes_key ON codes(key)")
    db.execute(
        """CREATE TABLE records (
            id INTEGER PRIMARY KEY, date TEXT, machine_id TEXT, machine_model TEXT,
            code TEXT, key TEXT, symptom TEXT, action TEXT, parts TEXT, result TEXT,
            technician TEXT, duration_min INTEGER)"""
    )
    db.execute("CREATE INDEX records_key ON records(key, date)")
    db.execute(
        "CREATE TABLE machines (machine_id TEXT PRIMARY KEY, machine_model TEXT, line TEXT, location TEXT)"
    )
    db.execute(
        "CREATE TABLE documents (source TEXT PRIMARY KEY, sha256 TEXT, role TEXT, lang TEXT, chunks INTEGER)"
    )
    db.execute(
        """CREATE TABLE chunks (
            id TEXT PRIMARY KEY, source TEXT NOT NULL, section TEXT NOT NULL, page INTEGER,
            lang TEXT NOT NULL, kind TEXT NOT NULL, ordinal INTEGER, text TEXT NOT NULL)"""
    )
    # Two full-text indexes: trigrams find substrings in any script; the word index holds
    # Latin words (Porter-stemmed) plus CJK bigrams, since most Chinese terms are two
    # characters and a trigram index cannot match a two-character query.
    db.execute(
        "CREATE VIRTUAL TABLE chunks_tri USING fts5(chunk_id UNINDEXED, body, tokenize='trigram')"
    )
    db.execute(
        "CREATE VIRTUAL TABLE chunks_words USING fts5(chunk_id UNINDEXED, body, tokenize='porter unicode61')"
    )
    db.execute(
        "CREATE TABLE embeddings (chunk_id TEXT NOT NULL, model TEXT NOT NULL, dim INTEGER NOT NULL, "
        "vector BLOB NOT NULL, PRIMARY KEY (chunk_id, model))"
    )


def m002_chunk_models(db: sqlite_utils.Database) -> None:
    # A code row that applies to several machine models is stored once per model; `variant`
    # is shared by rows of identical text, so search can show that text once (kb.search.variants).
    db.execute("ALTER TABLE chunks ADD COLUMN machine_model TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE chunks ADD COLUMN variant TEXT NOT NULL DEFAULT ''")
    db.execute("CREATE INDEX chunks_variant ON chunks(variant) WHERE variant != ''")


MIGRATIONS: list[Migration] = [m001_initial, m002_chunk_models]
