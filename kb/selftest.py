"""Self-test of a staged KB version, run before it may become active.

Given the sources it was built from, the test reads their code tables and repair records
again, independently of the build, and asks the version through the engine's own read API
(`KnowledgeBase.lookup`, `.history`): every source code must be found, as written in the
table, with its title, steps and safety notes, and every repair record must be in the code's
history. Without sources, every stored code must still be found by its code as written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kb.errors import KBError
from kb.normalize import code_key
from kb.types import CodeEntry, RepairRecord
from kb.versions import DB_NAME

if TYPE_CHECKING:
    from kb.build import SourceSpec


def self_test(version_dir: Path, sources: Sequence[SourceSpec] | None = None) -> None:
    """Integrity, counts and look-ups against the sources; raise KBError saying what failed."""
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
    if sources is None:
        _check_stored_codes(version_dir)
    else:
        _check_against_sources(version_dir, sources)


def _source_tables(sources: Sequence[SourceSpec]) -> tuple[list[CodeEntry], list[RepairRecord]]:
    """The code rows and repair records of the source folders, read afresh (as kb.build names them)."""
    from kb.source.codes import read_codes, read_records
    from kb.source.mapping import load_mapping

    codes: list[CodeEntry] = []
    records: list[RepairRecord] = []
    for spec in sources:
        mapping = load_mapping(spec.mapping, spec.folder)
        prefix = f"{spec.folder.name}/" if len(sources) > 1 else ""
        for path in sorted(p for p in spec.folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            relative = path.relative_to(spec.folder).as_posix()
            if relative == "kb.toml" or (spec.mapping is not None and path.resolve() == spec.mapping.resolve()):
                continue
            role, rule = mapping.role_for(relative), mapping.rule_for(relative)
            if role == "codes":
                codes.extend(read_codes(path, prefix + path.name, rule, mapping.default_lang))
            elif role == "records":
                records.extend(read_records(path, prefix + path.name, rule)[0])
    return codes, records


def _check_against_sources(version_dir: Path, sources: Sequence[SourceSpec]) -> None:
    from kb.reader import KnowledgeBase

    codes, records = _source_tables(sources)
    kbase = KnowledgeBase(version_dir)
    try:
        stored = kbase.conn.execute("SELECT (SELECT count(*) FROM codes), (SELECT count(*) FROM records)").fetchone()
        if tuple(stored) != (len(codes), len(records)):
            raise KBError(f"self-test: the sources hold {len(codes)} code rows and {len(records)} repair records, "
                          f"the new version {stored[0]} and {stored[1]}")
        first: dict[tuple[str, str, str], CodeEntry] = {}
        for entry in codes:  # of rows alike in key, model and language, lookup shows the first
            first.setdefault((entry.key, entry.machine_model, entry.lang), entry)
        for entry in first.values():
            found = kbase.lookup(entry.code, machine_model=entry.machine_model, lang=entry.lang).entry
            where = f"code {entry.code} ({entry.source}, model '{entry.machine_model or '*'}', {entry.lang})"
            if found is None:
                raise KBError(f"self-test: {where} is not found by lookup")
            shown = (found.code, found.title, found.steps, found.safety, found.machine_model, found.lang)
            if shown != (entry.code, entry.title, entry.steps, entry.safety, entry.machine_model, entry.lang):
                raise KBError(f"self-test: {where} looks up as {found.code} '{found.title}' with steps "
                              f"{list(found.steps)}, not as in the table")
        by_key: dict[str, list[RepairRecord]] = {}
        for record in records:
            by_key.setdefault(code_key(record.code), []).append(record)
        for key, expected in by_key.items():
            history = kbase.history(key, limit=len(records))[0]
            for record in expected:
                if record not in history:
                    raise KBError(f"self-test: the repair of {record.code} on {record.machine_id or '?'} "
                                  f"({record.date}) is missing from its history")
    except sqlite3.DatabaseError as error:
        raise KBError(f"self-test: database unreadable: {error}") from error
    finally:
        kbase.close()


def _check_stored_codes(version_dir: Path) -> None:
    """Every stored row is found by its code as written, through the reader's normalisation."""
    from kb.reader import KnowledgeBase

    kbase = KnowledgeBase(version_dir)
    try:
        rows = kbase.conn.execute("SELECT code, machine_model, lang FROM codes ORDER BY id").fetchall()
        for code, machine_model, lang in rows:
            found = kbase.lookup(code, machine_model=machine_model, lang=lang).entry
            if found is None or found.code != code:
                raise KBError(f"self-test: code {code} cannot be looked up")
    except sqlite3.DatabaseError as error:
        raise KBError(f"self-test: database unreadable: {error}") from error
    finally:
        kbase.close()
