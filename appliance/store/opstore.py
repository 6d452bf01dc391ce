"""Operational SQLite database (WAL, synchronous=FULL): nothing acknowledged is lost.

The wall clock is recorded for people to read, never for ordering: rows are ordered by
their integer ids.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from kb.store.migrate import Migration, connect, migrate

VERDICTS = ("fixed", "not_fixed", "call_technician")


def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, query TEXT NOT NULL,
            normalized TEXT, lang TEXT, machine_id TEXT, source TEXT, code TEXT, kb_version INTEGER,
            passage_ids TEXT, model_id TEXT, model_sha256 TEXT, adapter_id TEXT, adapter_sha256 TEXT,
            model_available INTEGER, cached INTEGER, answer TEXT, notices TEXT, timings TEXT)"""
    )
    db.execute(
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT, audit_id INTEGER REFERENCES audit(id),
            verdict TEXT NOT NULL, operator TEXT, created REAL NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE alarms (
            id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL, port TEXT, machine_id TEXT,
            raw TEXT, code TEXT, normalized TEXT, message TEXT, status TEXT NOT NULL DEFAULT 'new',
            repeats INTEGER NOT NULL DEFAULT 0, audit_id INTEGER)"""
    )
    db.execute(
        """CREATE TABLE imports (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, kind TEXT, path TEXT,
            key_id TEXT, sequence INTEGER, result TEXT, message TEXT)"""
    )
    db.execute(
        "CREATE TABLE answer_cache (cache_key TEXT PRIMARY KEY, created REAL NOT NULL, answer TEXT NOT NULL)"
    )


def m002_feedback_alarm(db: sqlite_utils.Database) -> None:
    """Feedback given on an answer opened from an alarm names that alarm."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(feedback)").fetchall()}
    if "alarm_id" not in columns:
        db.execute("ALTER TABLE feedback ADD COLUMN alarm_id INTEGER REFERENCES alarms(id)")


def m003_alarm_source(db: sqlite_utils.Database) -> None:
    """Every alarm names the input it came from (`serial:PORT`, `opcua:ENDPOINT`, `mqtt:TOPIC`, `http`).

    Also `message_key` (the identity of a network message, so a redelivery adds no row) and
    `payload` (the raw bytes of an unparsed message, at most 64 KiB). Old rows came from a serial
    port or from `POST /v1/alarms` (port `http`).
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(alarms)").fetchall()}
    if "source" not in columns:
        db.execute("ALTER TABLE alarms ADD COLUMN source TEXT")
    if "message_key" not in columns:
        db.execute("ALTER TABLE alarms ADD COLUMN message_key TEXT")
    if "payload" not in columns:
        db.execute("ALTER TABLE alarms ADD COLUMN payload BLOB")
    db.execute(
        "UPDATE alarms SET source = CASE WHEN port = 'http' THEN 'http' ELSE 'serial:' || COALESCE(port, '') END"
        " WHERE source IS NULL"
    )
    db.execute("CREATE INDEX IF NOT EXISTS alarms_message_key ON alarms (message_key) WHERE message_key IS NOT NULL")


def m004_alarm_severity(db: sqlite_utils.Database) -> None:
    """The severity an input reported (OPC UA's 1-1000 scale in bands: info, warning, critical), if any.

    The kiosk shows the active KB's severity for a code it knows, and this one otherwise.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(alarms)").fetchall()}
    if "severity" not in columns:
        db.execute("ALTER TABLE alarms ADD COLUMN severity TEXT")


def m005_audit_outcome(db: sqlite_utils.Database) -> None:
    """What the supervisor's report needs from an answer: was it refused, which codes were likely.

    `refused` (0/1; NULL on older rows), `likely_codes` (JSON list of the likely codes offered
    for a symptom, as written), `machine_model` (the model whose row was chosen, or NULL).
    Older rows keep NULL: the report then judges a refusal by the notice the engine wrote.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(audit)").fetchall()}
    if "refused" not in columns:
        db.execute("ALTER TABLE audit ADD COLUMN refused INTEGER")
    if "likely_codes" not in columns:
        db.execute("ALTER TABLE audit ADD COLUMN likely_codes TEXT")
    if "machine_model" not in columns:
        db.execute("ALTER TABLE audit ADD COLUMN machine_model TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS audit_created ON audit (created)")
    db.execute("CREATE INDEX IF NOT EXISTS alarms_received ON alarms (received)")


def m006_work_orders(db: sqlite_utils.Database) -> None:
    """Work-order drafts (a Call technician press) and the procedure each answer showed.

    `audit.procedure`: JSON {title, steps, safety} of the code-table row shown (NULL before m006).
    `work_orders`: one draft per Call technician press, copied from its answer and alarm at that
    moment (see `OpStore.add_feedback`); `status` is `open` until the plant's CMMS takes it over.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(audit)").fetchall()}
    if "procedure" not in columns:
        db.execute("ALTER TABLE audit ADD COLUMN procedure TEXT")
    db.execute(
        """CREATE TABLE IF NOT EXISTS work_orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, feedback_id INTEGER REFERENCES feedback(id),
            audit_id INTEGER, alarm_id INTEGER, alarm_received REAL, machine_id TEXT, machine_model TEXT, code TEXT,
            title TEXT, query TEXT, operator TEXT, steps TEXT, generated TEXT, tried TEXT,
            status TEXT NOT NULL DEFAULT 'open')"""
    )


def m007_audit_quality(db: sqlite_utils.Database) -> None:
    """What the quality gate dropped and whether the model pair was verified, per answer.

    `gate_dropped`: how many generated strings (steps, summary, safety notes, parts) the quality
    gate dropped (NULL when nothing was generated, and on rows before m007). `model_verified`: 1
    when the pair that answered was hash-checked against the registry, 0 when it was loaded from
    `model.path`/`model.adapter` in the configuration without a recorded hash, NULL when no
    model answered (or a server backend, which owns its model).
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(audit)").fetchall()}
    if "gate_dropped" not in columns:
        db.execute("ALTER TABLE audit ADD COLUMN gate_dropped INTEGER")
    if "model_verified" not in columns:
        db.execute("ALTER TABLE audit ADD COLUMN model_verified INTEGER")


MIGRATIONS: list[Migration] = [
    m001_initial, m002_feedback_alarm, m003_alarm_source, m004_alarm_severity, m005_audit_outcome, m006_work_orders,
    m007_audit_quality,
]
COUNTED = ("audit", "feedback", "alarms")
"""The tables whose row counts the technician screen and `GET /v1/status` show."""


class OpStore:
    """Thread-safe access to the operational database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = connect(path, synchronous="FULL")
        migrate(self.db, MIGRATIONS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction on this store's connection, serialised with its other writers."""
        with self._lock, self.db.conn:
            yield self.db.conn

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        with self._lock, self.db.conn:
            cursor = self.db.conn.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",  # noqa: S608
                list(row.values()),
            )
            return int(cursor.lastrowid or 0)

    # -- audit -----------------------------------------------------------------------------
    def write_audit(self, answer: dict[str, Any], source: str = "", gate_dropped: int | None = None) -> int:
        """One row per answered query; returns its id (feedback refers to it).

        `gate_dropped`: the generated strings the quality gate dropped (None: nothing generated).
        """
        model = answer.get("model") or {}
        verified = model.get("verified")
        code = answer.get("code") or {}
        return self._insert(
            "audit",
            {
                "created": time.time(), "query": answer["query"], "normalized": answer.get("normalized"),
                "lang": answer.get("lang"), "machine_id": answer.get("machine_id"), "source": source,
                "code": code.get("code"), "kb_version": answer.get("kb_version"),
                "passage_ids": json.dumps([p["id"] for p in answer.get("passages", [])]),
                "model_id": model.get("base"), "model_sha256": model.get("base_sha256"),
                "adapter_id": model.get("adapter"), "adapter_sha256": model.get("adapter_sha256"),
                "model_available": int(bool(answer.get("model_available"))), "cached": int(bool(answer.get("cached"))),
                "answer": json.dumps(answer.get("generated"), ensure_ascii=False),
                "notices": json.dumps(answer.get("notices", []), ensure_ascii=False),
                "timings": json.dumps(answer.get("timings_ms", {})),
                "refused": int(bool(answer.get("refused"))),
                "likely_codes": json.dumps([c.get("code") for c in answer.get("likely_codes") or []],
                                           ensure_ascii=False),
                "machine_model": answer.get("machine_model") or code.get("machine_model"),
                "procedure": json.dumps({"title": code.get("title"), "steps": code.get("steps") or [],
                                         "safety": code.get("safety") or []}, ensure_ascii=False) if code else None,
                "gate_dropped": gate_dropped,
                "model_verified": None if verified is None else int(bool(verified)),
            },
        )

    def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [limit])

    def has_audit(self, audit_id: int) -> bool:
        return self.db.conn.execute("SELECT 1 FROM audit WHERE id = ?", [audit_id]).fetchone() is not None

    def add_feedback(self, audit_id: int | None, verdict: str, operator: str = "", alarm_id: int | None = None) -> int:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        now = time.time()
        with self._lock, self.db.conn:
            cursor = self.db.conn.execute(
                "INSERT INTO feedback (audit_id, verdict, operator, created, alarm_id) VALUES (?, ?, ?, ?, ?)",
                [audit_id, verdict, operator or None, now, alarm_id],
            )
            feedback_id = int(cursor.lastrowid or 0)
            if verdict == "call_technician":  # the draft is committed with the press, or neither is
                self._draft_work_order(feedback_id, audit_id, alarm_id, operator, now)
        return feedback_id

    def _draft_work_order(self, feedback_id: int, audit_id: int | None, alarm_id: int | None, operator: str,
                          now: float) -> None:
        """A work-order draft from what the operator saw and tried (inside add_feedback's transaction)."""
        conn = self.db.conn
        alarm = conn.execute("SELECT received, machine_id, code, audit_id FROM alarms WHERE id = ?",
                             [alarm_id]).fetchone() if alarm_id is not None else None
        if audit_id is None and alarm is not None:
            audit_id = alarm[3]  # the answer prepared for the alarm
        row = conn.execute("SELECT query, machine_id, machine_model, code, normalized, procedure, answer FROM audit"
                           " WHERE id = ?", [audit_id]).fetchone() if audit_id is not None else None
        query, machine, model, code, normalized, procedure, answer = row or (None,) * 7
        shown = json.loads(procedure) if procedure else {}
        generated = json.loads(answer) if answer else None
        tried = [
            {"verdict": verdict, "created": created, "operator": who}
            for verdict, created, who in conn.execute(
                "SELECT verdict, created, operator FROM feedback WHERE id < ? AND ((? IS NOT NULL AND audit_id = ?)"
                " OR (? IS NOT NULL AND alarm_id = ?)) ORDER BY id",
                [feedback_id, audit_id, audit_id, alarm_id, alarm_id],
            )
        ]
        conn.execute(
            "INSERT INTO work_orders (created, feedback_id, audit_id, alarm_id, alarm_received, machine_id,"
            " machine_model, code, title, query, operator, steps, generated, tried)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [now, feedback_id, audit_id, alarm_id, alarm[0] if alarm else None,
             machine or (alarm[1] if alarm else None), model, code or normalized or (alarm[2] if alarm else None),
             shown.get("title"), query, operator or None, json.dumps(shown.get("steps") or [], ensure_ascii=False),
             json.dumps(generated, ensure_ascii=False), json.dumps(tried, ensure_ascii=False)],
        )

    def work_orders(self, limit: int = 100, status: str | None = "open") -> list[dict[str, Any]]:
        """Work-order drafts, newest first (only `status` ones unless None); JSON columns decoded."""
        rows = self.rows("SELECT * FROM work_orders WHERE (? IS NULL OR status = ?) ORDER BY id DESC LIMIT ?",
                         [status, status, limit])
        for row in rows:
            for column in ("steps", "generated", "tried"):
                row[column] = json.loads(row[column]) if row[column] else None
        return rows

    # -- alarms ----------------------------------------------------------------------------
    def add_alarm(self, *, port: str, machine_id: str, raw: str, code: str, normalized: str, message: str,
                  status: str = "new", source: str = "") -> int:
        return self._insert(
            "alarms",
            {"received": time.time(), "port": port, "machine_id": machine_id, "raw": raw, "code": code,
             "normalized": normalized, "message": message, "status": status,
             "source": source or ("http" if port == "http" else f"serial:{port}")},
        )

    def alarms(self, limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM alarms WHERE id > ? ORDER BY id DESC LIMIT ?", [after_id, limit])

    def has_alarm(self, alarm_id: int) -> bool:
        return self.db.conn.execute("SELECT 1 FROM alarms WHERE id = ?", [alarm_id]).fetchone() is not None

    def counts(self) -> dict[str, int]:
        """Rows per table of `COUNTED`."""
        return {t: int(self.db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in COUNTED}  # noqa: S608

    # -- imports ---------------------------------------------------------------------------
    def add_import(self, kind: str, path: str, key_id: str, sequence: int | None, result: str, message: str) -> int:
        """Record a bundle import, accepted or refused, and why."""
        return self._insert(
            "imports",
            {"created": time.time(), "kind": kind, "path": path, "key_id": key_id, "sequence": sequence,
             "result": result, "message": message},
        )

    # -- answer cache ----------------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT answer FROM answer_cache WHERE cache_key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    def cache_put(self, key: str, answer: dict[str, Any]) -> None:
        with self._lock, self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO answer_cache (cache_key, created, answer) VALUES (?, ?, ?)",
                [key, time.time(), json.dumps(answer, ensure_ascii=False)],
            )

    # -- generic ---------------------------------------------------------------------------
    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.db.conn.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def prune(self, retention_days: int) -> int:
        """Delete audit rows (and their feedback) older than the retention period; checkpoint WAL."""
        cutoff = time.time() - retention_days * 86400
        with self._lock, self.db.conn:
            self.db.conn.execute("DELETE FROM feedback WHERE audit_id IN (SELECT id FROM audit WHERE created < ?)", [cutoff])
            deleted = self.db.conn.execute("DELETE FROM audit WHERE created < ?", [cutoff]).rowcount
        try:
            self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass
        return int(deleted)
