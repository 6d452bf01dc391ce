"""Serial additions to the operational database: answer state and repeats on alarms, scans.

Applied on top of `appliance.store.opstore.MIGRATIONS` (names are unique across both lists).
Writes go through one lock per `AlarmStore`; give the serial service its own `OpStore`
(its own SQLite connection) so its transactions never interleave with other writers'.
Columns added to `alarms`:
- `answer_status`: NULL (no answer is being prepared), `pending`, `ready`, `failed`, `throttled`;
- `last_repeat`: wall-clock time of the latest repeat, for people to read.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.store.opstore import OpStore
from kb.store.migrate import Migration, migrate

ANSWER_STATES = ("pending", "ready", "failed", "throttled")


def _columns(db: sqlite_utils.Database, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}


def m101_alarm_answers(db: sqlite_utils.Database) -> None:
    have = _columns(db, "alarms")
    if "answer_status" not in have:
        db.execute("ALTER TABLE alarms ADD COLUMN answer_status TEXT")
    if "last_repeat" not in have:
        db.execute("ALTER TABLE alarms ADD COLUMN last_repeat REAL")


def m102_scans(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS scans (
            id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL NOT NULL, port TEXT, machine_id TEXT,
            text TEXT NOT NULL, taken INTEGER NOT NULL DEFAULT 0)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS scans_untaken ON scans (taken, id)")


def m103_acknowledgements(db: sqlite_utils.Database) -> None:
    """OPC UA acknowledgement: the condition and latest event of an alarm, and every acknowledgement sent back.

    `alarms.condition_id` (the ConditionId as a NodeId string) and `alarms.event_id` (hex, the
    latest event of that condition, which is the one a server accepts an Acknowledge for).
    `acknowledgements` is the audit of each one: requested by the kiosk's feedback, claimed
    (`sending`) and finished (`acknowledged`, `refused`, `failed`) by the intake, with the comment sent.
    """
    have = _columns(db, "alarms")
    if "condition_id" not in have:
        db.execute("ALTER TABLE alarms ADD COLUMN condition_id TEXT")
    if "event_id" not in have:
        db.execute("ALTER TABLE alarms ADD COLUMN event_id TEXT")
    db.execute(
        """CREATE TABLE IF NOT EXISTS acknowledgements (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, alarm_id INTEGER REFERENCES alarms(id),
            feedback_id INTEGER REFERENCES feedback(id), source TEXT NOT NULL, condition_id TEXT, event_id TEXT,
            comment TEXT NOT NULL, state TEXT NOT NULL, detail TEXT, finished REAL)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS acknowledgements_state ON acknowledgements (state, source)")


MIGRATIONS: list[Migration] = [m101_alarm_answers, m102_scans, m103_acknowledgements]


@dataclass(frozen=True)
class NewAlarm:
    port: str
    machine_id: str
    raw: str
    code: str
    normalized: str
    message: str
    answer_status: str | None = None
    source: str = ""
    """`serial:PORT`, `opcua:ENDPOINT`, `mqtt:TOPIC`, `http`; empty: `serial:` + port."""
    status: str = "new"
    message_key: str | None = None
    payload: bytes | None = None
    severity: str | None = None
    condition_id: str | None = None
    event_id: str | None = None


class Batch:
    """Writes inside one transaction (see `AlarmStore.batch`)."""

    def __init__(self, store: AlarmStore) -> None:
        self._conn = store.opstore.db.conn
        self._now = time.time()

    def insert(self, alarm: NewAlarm) -> int:
        cursor = self._conn.execute(
            "INSERT INTO alarms (received, port, machine_id, raw, code, normalized, message, answer_status,"
            " source, status, message_key, payload, severity, condition_id, event_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                self._now,
                alarm.port,
                alarm.machine_id,
                alarm.raw,
                alarm.code,
                alarm.normalized,
                alarm.message,
                alarm.answer_status,
                alarm.source or f"serial:{alarm.port}",
                alarm.status,
                alarm.message_key,
                alarm.payload,
                alarm.severity,
                alarm.condition_id,
                alarm.event_id,
            ],
        )
        return int(cursor.lastrowid or 0)

    def by_message_key(self, key: str, since: float) -> int | None:
        """The alarm stored for this message identity since wall-clock `since` (a redelivery), if any."""
        row = self._conn.execute(
            "SELECT id FROM alarms WHERE message_key = ? AND received >= ? ORDER BY id DESC LIMIT 1", [key, since]
        ).fetchone()
        return int(row[0]) if row else None

    def repeat(self, alarm_id: int, event_id: str | None = None) -> None:
        """Count a repeat; an OPC UA repeat also keeps its event id, the one the server will want acknowledged."""
        self._conn.execute(
            "UPDATE alarms SET repeats = repeats + 1, last_repeat = ?, event_id = COALESCE(?, event_id) WHERE id = ?",
            [self._now, event_id, alarm_id],
        )

    def scan(self, port: str, machine_id: str, text: str) -> int:
        cursor = self._conn.execute(
            "INSERT INTO scans (received, port, machine_id, text) VALUES (?, ?, ?, ?)",
            [self._now, port, machine_id, text],
        )
        return int(cursor.lastrowid or 0)


class AlarmStore:
    """Alarm and scan writes and reads over an `OpStore`'s database."""

    def __init__(self, opstore: OpStore) -> None:
        self.opstore = opstore
        self._lock = threading.RLock()
        migrate(opstore.db, MIGRATIONS)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """One transaction: committed (synchronous=FULL) when the block ends, rolled back on error."""
        with self._lock, self.opstore.db.conn:
            yield Batch(self)

    def set_answer(self, alarm_id: int, status: str, audit_id: int | None = None) -> None:
        if status not in ANSWER_STATES:
            raise ValueError(f"answer status must be one of {ANSWER_STATES}")
        with self._lock, self.opstore.db.conn:
            self.opstore.db.conn.execute(
                "UPDATE alarms SET answer_status = ?, audit_id = COALESCE(?, audit_id) WHERE id = ?",
                [status, audit_id, alarm_id],
            )

    def alarms(self, limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]:
        """Newest first; an unparsed payload's bytes as base64 text (so the rows print as JSON)."""
        rows = self.opstore.alarms(limit=limit, after_id=after_id)
        for row in rows:
            if isinstance(row.get("payload"), bytes):
                row["payload"] = base64.b64encode(row["payload"]).decode("ascii")
        return rows

    def alarm(self, alarm_id: int) -> dict[str, Any] | None:
        rows = self.opstore.rows("SELECT * FROM alarms WHERE id = ?", [alarm_id])
        return rows[0] if rows else None

    def pending_answers(self, limit: int) -> list[dict[str, Any]]:
        """Alarms whose answer was accepted for preparation but not finished, newest first."""
        return self.opstore.rows(
            "SELECT * FROM alarms WHERE answer_status = 'pending' ORDER BY id DESC LIMIT ?", [limit]
        )

    def count(self) -> int:
        return int(self.opstore.db.execute("SELECT count(*) FROM alarms").fetchone()[0])

    def take_scans(self, limit: int = 50) -> list[dict[str, Any]]:
        """Scans not yet consumed, oldest first; marked taken so another reader does not repeat them."""
        with self._lock, self.opstore.db.conn:
            rows = self.opstore.rows("SELECT * FROM scans WHERE taken = 0 ORDER BY id LIMIT ?", [limit])
            if rows:
                self.opstore.db.conn.execute(
                    f"UPDATE scans SET taken = 1 WHERE id IN ({', '.join('?' for _ in rows)})",  # noqa: S608
                    [r["id"] for r in rows],
                )
        return rows
