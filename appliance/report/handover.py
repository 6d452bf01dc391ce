"""`shifu report handover`: one shift's alarms for the next shift, laid out for printing.

A shift is `HH:MM-HH:MM` on a local calendar date; when the end is not after the start the
shift crosses midnight and ends on the next day (`22:00-06:00` on 2026-03-02 runs to
2026-03-03 06:00). Every alarm received in the shift is listed with its state, judged from
the operator's presses up to when the report is made:
- `fixed`: a Fixed press on the alarm (the time it took, and the repair record of that
  machine and code on that day, if one was filed: what was done);
- `escalated`: a Call technician press and no Fixed after it;
- `open`: no press, or only Not fixed.
Codes seen more than once on one machine in the shift (counting the intake's repeats) are
listed as repeated. The text is deterministic; a generated note is added on top only when asked
for, when the model is available and when it passes `appliance.report.narrative.gate`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from kb.normalize import code_key

DEFAULT_SHIFTS = ("06:00-14:00", "14:00-22:00", "22:00-06:00")


@dataclass(frozen=True)
class Shift:
    day: date
    start: clock
    end: clock

    @classmethod
    def parse(cls, day: date, text: str) -> Shift:
        """`HH:MM-HH:MM` (24:00 allowed as an end) on `day`; ValueError names what is wrong."""
        try:
            first, last = (part.strip() for part in text.split("-"))
            start = clock.fromisoformat(first)
            end = clock.min if last == "24:00" else clock.fromisoformat(last)
        except ValueError as error:
            raise ValueError(f"shift {text!r} is not HH:MM-HH:MM") from error
        return cls(day, start, end)

    @property
    def begins(self) -> datetime:
        return datetime.combine(self.day, self.start).astimezone()

    @property
    def ends(self) -> datetime:
        """Exclusive; on the next day when the shift crosses midnight (or is 24 hours long)."""
        next_day = self.end <= self.start
        return datetime.combine(self.day + timedelta(days=int(next_day)), self.end).astimezone()

    def describe(self) -> str:
        return f"{self.begins:%Y-%m-%d %H:%M} – {self.ends:%Y-%m-%d %H:%M}"


def current_shift(now: datetime, shifts: tuple[str, ...] = DEFAULT_SHIFTS) -> Shift:
    """The shift (of `shifts`) that holds `now`, dated by the day it began."""
    for day in (now.date(), now.date() - timedelta(days=1)):
        for text in shifts:
            shift = Shift.parse(day, text)
            if shift.begins <= now < shift.ends:
                return shift
    return Shift.parse(now.date(), "00:00-24:00")


@dataclass(frozen=True)
class HandoverAlarm:
    id: int
    received: float
    machine_id: str
    machine_model: str
    code: str
    title: str
    repeats: int
    state: str
    """fixed | escalated | open"""
    minutes_to_fix: float | None
    operator: str
    action: str
    """What the repair record of that machine, code and day says was done ('' without one)."""


@dataclass(frozen=True)
class Handover:
    shift: Shift
    alarms: tuple[HandoverAlarm, ...]
    repeated: tuple[tuple[str, str, int], ...]
    """(machine_id, code, times) for codes seen more than once on one machine in the shift."""

    def count(self, state: str) -> int:
        return sum(a.state == state for a in self.alarms)


def build_handover(ops_db: Path, shift: Shift, kb_dir: Path | None = None, lang: str = "zh-TW") -> Handover:
    """The shift's alarms and their states from the operational database (read-only)."""
    titles: dict[tuple[str, str], str] = {}
    inventory: dict[str, tuple[str, str]] = {}
    records: dict[tuple[str, str, str], str] = {}
    kb = None
    if kb_dir is not None:
        from kb.reader import KnowledgeBase

        kb = KnowledgeBase(kb_dir)
        inventory = kb.machines()
        last_day = (shift.ends - timedelta(microseconds=1)).date().isoformat()
        for key, record in kb.records_between(shift.day.isoformat(), last_day):
            records[(record.machine_id, key, record.date[:10])] = record.action
    rows: list[tuple[int, float, str, str, str, int]] = []
    presses: dict[int, list[tuple[str, float, str]]] = {}
    if ops_db.exists():
        conn = sqlite3.connect(f"file:{ops_db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT id, received, COALESCE(machine_id, ''), COALESCE(code, ''), COALESCE(normalized, ''),"
                " repeats FROM alarms WHERE received >= ? AND received < ? AND status != 'unparsed' ORDER BY id",
                [shift.begins.timestamp(), shift.ends.timestamp()],
            ).fetchall()
            if rows:
                for alarm_id, verdict, created, operator in conn.execute(
                    "SELECT alarm_id, verdict, created, COALESCE(operator, '') FROM feedback"
                    " WHERE alarm_id BETWEEN ? AND ? ORDER BY id", [rows[0][0], rows[-1][0]],
                ):
                    presses.setdefault(int(alarm_id), []).append((str(verdict), float(created), str(operator)))
        finally:
            conn.close()
    alarms: list[HandoverAlarm] = []
    seen: dict[tuple[str, str], int] = {}
    try:
        for alarm_id, received, machine, code, normalized, repeats in rows:
            key = normalized or code_key(code)
            model = inventory.get(machine, ("", ""))[0]
            if kb is not None and (key, model) not in titles:
                entry = kb.lookup(key, machine_model=model, lang=lang).entry
                titles[(key, model)] = entry.title if entry else ""
            state, minutes, operator = _state(presses.get(alarm_id, []), received)
            day = datetime.fromtimestamp(received).astimezone().date().isoformat()
            alarms.append(HandoverAlarm(alarm_id, received, machine, model, code or key, titles.get((key, model), ""),
                                        int(repeats or 0), state, minutes, operator,
                                        records.get((machine, key, day), "")))
            seen[(machine, code or key)] = seen.get((machine, code or key), 0) + 1 + int(repeats or 0)
    finally:
        if kb is not None:
            kb.close()
    repeated = tuple(sorted(((m, c, n) for (m, c), n in seen.items() if n > 1), key=lambda r: (-r[2], r[0], r[1])))
    return Handover(shift, tuple(alarms), repeated)


def _state(presses: list[tuple[str, float, str]], received: float) -> tuple[str, float | None, str]:
    fixed = next(((t, who) for verdict, t, who in presses if verdict == "fixed"), None)
    if fixed is not None:
        return "fixed", max(0.0, (fixed[0] - received) / 60), fixed[1]
    called = next((who for verdict, _t, who in presses if verdict == "call_technician"), None)
    if called is not None:
        return "escalated", None, called
    return "open", None, ""


def write_handover(handover: Handover, out: Path, lang: str = "zh-TW", note: str | None = None) -> dict[str, Path]:
    """`handover.html` (printable, self-contained) and `handover.csv` (one row per alarm) in `out`.

    `note`: a generated summary that passed `appliance.report.narrative.gate`, shown first and labelled.
    """
    import csv
    import os

    from appliance.report import html
    from appliance.report.labels import label

    def L(key: str, **values: object) -> str:
        return label(lang, key, **values)

    out.mkdir(parents=True, exist_ok=True)
    files = {"handover.csv": out / "handover.csv", "handover.html": out / "handover.html"}
    columns = ["id", "received", "machine_id", "machine_model", "code", "title", "repeats", "state",
               "minutes_to_fix", "operator", "action"]
    with files["handover.csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for a in handover.alarms:
            writer.writerow([a.id, _local(a.received, "%Y-%m-%dT%H:%M:%S%z"), a.machine_id, a.machine_model, a.code,
                             a.title, a.repeats, a.state, "" if a.minutes_to_fix is None else round(a.minutes_to_fix, 1),
                             a.operator, a.action])
    state_label = {"open": L("open"), "escalated": L("escalated"), "fixed": L("fixed_state")}
    pending = [a for a in handover.alarms if a.state != "fixed"]
    fixed = [a for a in handover.alarms if a.state == "fixed"]
    head = [L("time"), L("machine"), L("code"), L("title_col")]
    sections = [
        (L("still_open"), html.table(
            [*head, L("state"), L("by"), L("repeat_count")],
            [(_local(a.received, "%m-%d %H:%M"), a.machine_id, a.code, a.title, state_label[a.state], a.operator,
              a.repeats) for a in pending], lang, limit=500) if pending else f"<p>{L('none')}</p>"),
        (L("fixed_alarms"), html.table(
            [*head, L("minutes_to_fix"), L("by"), L("what_was_done")],
            [(_local(a.received, "%m-%d %H:%M"), a.machine_id, a.code, a.title, a.minutes_to_fix, a.operator,
              a.action) for a in fixed], lang, limit=500) if fixed else f"<p>{L('none')}</p>"),
        (L("repeated_codes"), html.table([L("machine"), L("code"), L("times")], list(handover.repeated), lang,
                                         limit=500) if handover.repeated else f"<p>{L('none')}</p>"),
    ]
    if note:
        from html import escape

        sections.insert(0, (L("note"), f"<p>{escape(note)}</p>"))
    meta = [f"{L('shift')}: {handover.shift.describe()}",
            L("handover_counts", total=len(handover.alarms), fixed=handover.count("fixed"),
              escalated=handover.count("escalated"), open=handover.count("open"))]
    temporary = out / ".handover.html.tmp"
    temporary.write_text(html.page(lang, L("handover_title"), meta, sections), encoding="utf-8")
    os.replace(temporary, files["handover.html"])
    return files


def _local(stamp: float, pattern: str) -> str:
    return datetime.fromtimestamp(stamp).astimezone().strftime(pattern)
