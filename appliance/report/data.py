"""What the supervisor's report reads: the operational database and the KB's repair records.

Everything is loaded once into plain frozen rows (`Dataset`) so that the figures
(`appliance.report.figures`) are pure functions a test can feed by hand. Times are Unix
seconds for the operational rows; a report period is given as local calendar dates
(the plant's own clock, `--from`/`--to` inclusive) and repair records, which carry a date
only, are taken by that date.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

from kb.normalize import code_key

QUESTION_SOURCES = frozenset({"keyboard", "scanner", "cli", "http", "kiosk"})
"""Audit sources that are a person asking. Answers prepared for alarms (`serial`, `opcua`,
`mqtt`) and evaluation runs (`eval`) are not questions: the alarm itself is counted."""

REFUSAL_MARKERS = ("知識庫中沒有這個問題的資料", "This is not in the knowledge base")
"""The engine's refusal notice (both languages): how rows written before m005 show a refusal."""


# SQLite does the cheap parts (is there a generated answer, the total time) so that a year of rows
# is not decoded in Python; notices are read only for rows written before m005.
AUDIT_SQL = (
    "SELECT id, created, query, source, code, normalized, machine_id, model_available, cached,"
    " (answer IS NOT NULL AND answer != 'null'), CASE WHEN refused IS NULL THEN notices END,"
    " CASE WHEN json_valid(timings) THEN json_extract(timings, '$.total') END,"
    " refused, NULLIF(likely_codes, '[]'), machine_model, gate_dropped FROM audit"
    " WHERE created >= ? AND created < ? ORDER BY id"
)
AUDIT_SQL_BEFORE_M007 = AUDIT_SQL.replace(", gate_dropped FROM", ", NULL FROM")
AUDIT_SQL_BEFORE_M005 = (AUDIT_SQL_BEFORE_M007.replace("NULLIF(likely_codes, '[]'), machine_model", "NULL, NULL")
                         .replace("refused IS NULL", "1").replace(" refused,", " NULL,"))


@dataclass(frozen=True)
class Period:
    """Local calendar dates, both inclusive."""

    first: date
    last: date

    @property
    def start(self) -> float:
        return datetime.combine(self.first, time.min).astimezone().timestamp()

    @property
    def end(self) -> float:
        """The first instant after the period (exclusive bound)."""
        return datetime.combine(self.last + timedelta(days=1), time.min).astimezone().timestamp()


@dataclass(frozen=True)
class Scope:
    """Which machines the report covers (empty = all)."""

    line: str = ""
    machine_id: str = ""
    machine_model: str = ""

    def admits(self, machine_id: str, machine_model: str, line: str) -> bool:
        return ((not self.line or line == self.line) and (not self.machine_id or machine_id == self.machine_id)
                and (not self.machine_model or machine_model == self.machine_model))

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("line", self.line), ("machine", self.machine_id),
                                          ("model", self.machine_model)) if v]
        return ", ".join(parts)


@dataclass(frozen=True)
class AuditRow:
    id: int
    created: float
    query: str
    source: str
    key: str
    """The code's lookup key ('' for a symptom)."""
    machine_id: str
    machine_model: str
    refused: bool
    likely_codes: tuple[str, ...]
    model_available: bool
    generated: bool
    cached: bool
    total_ms: float | None
    gate_dropped: int = 0
    """Generated strings the quality gate dropped from this answer (0 on rows before m007)."""


@dataclass(frozen=True)
class AlarmRow:
    id: int
    received: float
    machine_id: str
    machine_model: str
    key: str
    repeats: int
    """How often the intake counted the same alarm again on this row (inside its window)."""


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    created: float
    audit_id: int | None
    alarm_id: int | None
    verdict: str


@dataclass(frozen=True)
class RepairRow:
    date: str
    machine_id: str
    machine_model: str
    key: str
    action: str
    result: str
    duration_min: int | None


@dataclass(frozen=True)
class Dataset:
    audit: tuple[AuditRow, ...] = ()
    alarms: tuple[AlarmRow, ...] = ()
    feedback: tuple[FeedbackRow, ...] = ()
    repairs: tuple[RepairRow, ...] = ()
    spellings: dict[str, str] = field(default_factory=dict)
    """Code key -> the code as written (the KB's table first, else the most seen spelling)."""
    lines: dict[str, str] = field(default_factory=dict)
    """machine_id -> line (from the KB's inventory)."""

    def label(self, key: str) -> str:
        return self.spellings.get(key, key)


def _json_list(text: object) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        value = json.loads(str(text))
    except ValueError:
        return ()
    return tuple(str(v) for v in value if v) if isinstance(value, list) else ()


def load_operational(db_path: Path, period: Period,
                     inventory: dict[str, tuple[str, str]]) -> tuple[list[AuditRow], list[AlarmRow], list[FeedbackRow],
                                                                    dict[str, str]]:
    """Audit rows, alarms and feedback of the period, read-only; plus the spellings seen."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(audit)").fetchall()}
        seen: dict[str, dict[str, int]] = {}

        def spelled(key: str, code: object) -> None:
            if key and code:
                counts = seen.setdefault(key, {})
                counts[str(code)] = counts.get(str(code), 0) + 1

        audit: list[AuditRow] = []
        sql = (AUDIT_SQL if "gate_dropped" in columns else AUDIT_SQL_BEFORE_M007 if "refused" in columns
               else AUDIT_SQL_BEFORE_M005)
        for row in conn.execute(
            sql, [period.start, period.end],
        ):
            (id_, created, query, source, code, normalized, machine_id, available, cached, generated, notices,
             total, refused, likely, model, dropped) = row
            key = normalized or (code_key(code) if code else "")
            if key and code:
                spelled(key, code)
            machine = machine_id or ""
            if refused is None:  # written before m005: the refusal notice says it
                refused = any(marker in notice for notice in _json_list(notices) for marker in REFUSAL_MARKERS)
            audit.append(AuditRow(
                id_, created, query, source or "", key, machine, model or inventory.get(machine, ("", ""))[0],
                bool(refused), _json_list(likely) if likely else (), bool(available), bool(generated),
                bool(cached) and bool(generated), float(total) if isinstance(total, int | float) else None,
                int(dropped or 0),
            ))
        alarms: list[AlarmRow] = []
        for id_, received, machine_id, code, normalized, repeats in conn.execute(
            "SELECT id, received, machine_id, code, normalized, repeats FROM alarms"
            " WHERE received >= ? AND received < ? AND status != 'unparsed' ORDER BY id",
            [period.start, period.end],
        ):
            key = normalized or (code_key(code) if code else "")
            if not key:
                continue
            spelled(key, code)
            machine = str(machine_id or "")
            alarms.append(AlarmRow(int(id_), float(received), machine, inventory.get(machine, ("", ""))[0], key,
                                   int(repeats or 0)))
        feedback = [
            FeedbackRow(int(r[0]), float(r[1]), r[2], r[3], str(r[4]))
            for r in conn.execute(
                "SELECT id, created, audit_id, alarm_id, verdict FROM feedback WHERE created >= ? AND created < ?"
                " ORDER BY id", [period.start, period.end],
            )
        ]
    finally:
        conn.close()
    spellings = {key: max(counts, key=lambda c: (counts[c], c)) for key, counts in seen.items()}
    return audit, alarms, feedback, spellings


def load(ops_db: Path | None, kb_dir: Path | None, period: Period, scope: Scope | None = None) -> Dataset:
    """The report's data for one period and scope (either source may be missing)."""
    inventory: dict[str, tuple[str, str]] = {}
    repairs: list[RepairRow] = []
    table_spellings: dict[str, str] = {}
    if kb_dir is not None:
        from kb.reader import KnowledgeBase

        kb = KnowledgeBase(kb_dir)
        try:
            inventory = kb.machines()
            table_spellings = kb.code_spellings()
            for key, record in kb.records_between(period.first.isoformat(), period.last.isoformat()):
                repairs.append(RepairRow(record.date[:10], record.machine_id, record.machine_model or
                                         inventory.get(record.machine_id, ("", ""))[0],
                                         key or code_key(record.code), record.action, record.result,
                                         record.duration_min))
        finally:
            kb.close()
    audit: list[AuditRow] = []
    alarms: list[AlarmRow] = []
    feedback: list[FeedbackRow] = []
    seen: dict[str, str] = {}
    if ops_db is not None and ops_db.exists():
        audit, alarms, feedback, seen = load_operational(ops_db, period, inventory)
    lines = {machine: line for machine, (_model, line) in inventory.items()}
    data = Dataset(tuple(audit), tuple(alarms), tuple(feedback), tuple(repairs), {**seen, **table_spellings}, lines)
    return restrict(data, scope or Scope())


def restrict(data: Dataset, scope: Scope) -> Dataset:
    """Only the rows of the scope's machines (feedback follows its answer or alarm)."""
    if scope == Scope():
        return data

    def ok(machine_id: str, model: str) -> bool:
        return scope.admits(machine_id, model, data.lines.get(machine_id, ""))

    audit = tuple(a for a in data.audit if ok(a.machine_id, a.machine_model))
    alarms = tuple(a for a in data.alarms if ok(a.machine_id, a.machine_model))
    audit_ids = {a.id for a in audit}
    alarm_ids = {a.id for a in alarms}
    feedback = tuple(f for f in data.feedback
                     if (f.alarm_id in alarm_ids if f.alarm_id is not None else f.audit_id in audit_ids))
    repairs = tuple(r for r in data.repairs if ok(r.machine_id, r.machine_model))
    return replace(data, audit=audit, alarms=alarms, feedback=feedback, repairs=repairs)
