"""`LocalClient`: the kiosk's client protocol (`appliance.engine.client`) over the engine in this process.

It wraps one `Engine` and reads what the kiosk shows from the engine's resources (the active
KB version, its versions, the operational database, the loaded model); `shifu serve` answers
its non-ask endpoints with the same object, so a thin kiosk sees exactly what a local one does.

The model's state is what this client has seen: "loading" until `warm()` (or an answer)
loaded it, then "ready" with its ids, or "failed" with the reason; `status()` itself never
loads anything. The vector index's health is checked at most every `index_check_s` seconds
(it opens the Chroma index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from appliance.engine.client import (
    VERDICTS,
    Alarm,
    DenseState,
    EngineStatus,
    FeedbackSaved,
    FloorReport,
    Machine,
    NotFoundError,
    ShiftAlarm,
    ShiftReport,
    Verdict,
)
from appliance.engine.engine import Engine
from appliance.engine.types import Done, Event, Query
from appliance.store.opstore import OpStore
from kb.errors import InputError, KBError, ShifuError
from kb.reader import KnowledgeBase
from kb.repair import check_index

FLOOR_ROWS = 10
"""Rows of each figure on the technician screen (the report has them all)."""

class LocalClient:
    """The in-process implementation of `EngineClient`."""

    def __init__(self, engine: Engine, *, index_check_s: float = 10.0) -> None:
        self.engine = engine
        self.index_check_s = index_check_s
        self._lock = threading.Lock()
        self._model: dict[str, Any] | None = None
        self._model_error = ""
        self._index: tuple[Path, float, str | None] | None = None

    # -- asking ----------------------------------------------------------------------------
    def stream(self, query: Query, *, use_model: bool = True, debug_tokens: bool = False) -> Iterator[Event]:
        """The engine's events, passed through; closing this iterator closes the engine's stream."""
        events = self.engine.stream(query, use_model=use_model, debug_tokens=debug_tokens)
        try:
            for event in events:
                if isinstance(event, Done) and event.answer.model_available and event.answer.model:
                    self._model_ready(dict(event.answer.model))
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # writes the audit row of a cancelled answer and releases the model

    # -- alarms and feedback -----------------------------------------------------------------
    def alarms_since(self, after_id: int, limit: int = 50, *, lang: str | None = None) -> list[Alarm]:
        rows = self._opstore().alarms(limit=limit, after_id=after_id)
        try:
            kb: KnowledgeBase | None = self.engine.kb()
        except ShifuError:
            kb = None  # alarms are shown without titles rather than not at all
        lang = lang or self.engine.settings.general.lang
        return [_describe(Alarm.from_json(row), kb, lang) for row in rows]

    def feedback(
        self, audit_id: int, verdict: Verdict, operator: str = "", alarm_id: int | None = None
    ) -> FeedbackSaved:
        if verdict not in VERDICTS:
            raise InputError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        store = self._opstore()
        if not store.has_audit(audit_id):
            raise NotFoundError(f"no answer with audit_id {audit_id}; ask again before giving feedback")
        if alarm_id is not None and not store.has_alarm(alarm_id):
            raise NotFoundError(f"no alarm with id {alarm_id}")
        feedback_id = store.add_feedback(audit_id, verdict, operator, alarm_id=alarm_id)
        ack = None
        if verdict == "fixed" and alarm_id is not None:
            from appliance.intake import acknowledge

            # Committed first; then the alarm's OPC UA server is told, when the plant chose so.
            ack = acknowledge.request(self.engine.settings, store, alarm_id, feedback_id, operator)
        return FeedbackSaved(feedback_id, ack)

    def _opstore(self) -> OpStore:
        if self.engine.opstore is None:
            raise ShifuError("there is no operational database; start Shifu with its state directory")
        return self.engine.opstore

    # -- the plant -------------------------------------------------------------------------
    def machines(self) -> list[Machine]:
        kb = self.engine.kb()
        # The inventory is part of the KB's read side; kb.reader has no listing of it yet.
        rows = kb.conn.execute(
            "SELECT machine_id, machine_model, line, location FROM machines ORDER BY machine_id"
        ).fetchall()
        return [Machine(str(r[0]), str(r[1] or ""), str(r[2] or ""), str(r[3] or "")) for r in rows]

    def _kb_dir(self) -> Path | None:
        """The active KB's folder for the report modules (None while no KB can be opened)."""
        try:
            return self.engine.kb().dir
        except ShifuError:
            return None

    def floor_report(self, first: date, last: date) -> FloorReport:
        from appliance.report import figures
        from appliance.report.data import Period, load

        kb_dir, store = self._kb_dir(), self.engine.opstore
        data = load(store.path if store is not None else None, kb_dir, Period(first, last))
        repeats = sorted((r for r in figures.repeats(data) if r.repeats), key=lambda r: (-r.repeats, r.machine_id, r.code))
        return FloorReport(
            first.isoformat(), last.isoformat(),
            pareto=tuple(figures.pareto_by_code(figures.pareto(data))[:FLOOR_ROWS]),
            repeats=tuple((r.machine_id, r.code, r.repeats, r.fixes_not_held) for r in repeats[:FLOOR_ROWS]),
            gaps=tuple((g.example_query, g.count) for g in figures.gaps(data)[:FLOOR_ROWS]),
        )

    def handover(self, at: datetime, lang: str) -> ShiftReport:
        from appliance.report.handover import build_handover, current_shift

        kb_dir, store = self._kb_dir(), self.engine.opstore
        shift = current_shift(at, tuple(self.engine.settings.general.shifts))
        data = build_handover(store.path if store is not None else Path("/nonexistent"), shift, kb_dir, lang)
        return ShiftReport(
            shift.begins.timestamp(), shift.ends.timestamp(),
            tuple(ShiftAlarm(a.received, a.machine_id, a.code, a.title, a.state, a.minutes_to_fix, a.operator,
                             a.action, a.repeats) for a in data.alarms),
            data.repeated,
        )

    # -- status ----------------------------------------------------------------------------
    def warm(self) -> EngineStatus:
        settings = self.engine.settings
        try:
            kb = self.engine.kb()
            self.engine.keep_index(kb)  # a broken vector index starts rebuilding before the first question
            if self.engine.embedder is not None and settings.retrieval.dense:
                kb.search("warm up", 1)  # loads the embedder, so the first question does not wait for it
        except ShifuError:
            pass  # status() reports it
        if settings.model.enabled:
            try:
                info = self.engine.backend().info().to_json()
            except ShifuError as error:
                with self._lock:
                    self._model, self._model_error = None, str(error)
            else:
                self._model_ready(info)
        return self.status()

    def status(self) -> EngineStatus:
        status = EngineStatus(**self._model_fields(), **self._opstore_fields())
        try:
            kb = self.engine.kb()
            versions = tuple(self.engine.versions.versions())
            counts = kb.counts()
        except (ShifuError, OSError) as error:
            return replace(status, kb_error=str(error))
        dense, detail = self._dense(kb)
        return replace(status, kb_version=kb.version, kb_name=str(kb.meta.get("name", "")), kb_versions=versions,
                       kb_counts=counts, dense=dense, dense_detail=detail)

    def _model_ready(self, info: dict[str, Any]) -> None:
        with self._lock:
            self._model, self._model_error = info, ""

    def _model_fields(self) -> dict[str, Any]:
        if not self.engine.settings.model.enabled:
            return {"model_state": "disabled"}
        with self._lock:
            info, error = self._model, self._model_error
        if info is None:
            return {"model_state": "failed", "model_error": error} if error else {"model_state": "loading"}
        return {
            "model_state": "ready", "model_backend": str(info.get("backend") or ""),
            "model_id": str(info.get("base") or ""), "model_sha256": str(info.get("base_sha256") or ""),
            "model_device": str(info.get("device") or ""),
            "model_languages": tuple(str(x) for x in info.get("languages") or ()),
            "adapter_id": str(info.get("adapter") or ""), "adapter_sha256": str(info.get("adapter_sha256") or ""),
        }

    def _opstore_fields(self) -> dict[str, Any]:
        store = self.engine.opstore
        if store is None:
            return {"opstore_error": "no operational database"}
        try:
            return {"opstore_counts": store.counts()}
        except Exception as error:  # the technician screen must open even on a damaged database
            return {"opstore_error": str(error)}

    def _dense(self, kb: KnowledgeBase) -> tuple[DenseState, str]:
        retrieval = self.engine.settings.retrieval
        if not retrieval.enabled or not retrieval.dense:
            return "off", ""
        if kb.dense is None:
            embedder = self.engine.embedder
            if not kb.embedding_model:
                return "unavailable", "this KB version was built without embeddings"
            if embedder is None:
                return "unavailable", "no embedding model loaded"
            return "unavailable", f"KB embedded with {kb.embedding_model}, the engine uses {embedder.model_id}"
        problem = self._index_problem(kb.dir)
        if problem is not None:
            return "degraded", f"{problem}; full-text search meanwhile"
        return "on", ""

    def _index_problem(self, version_dir: Path) -> str | None:
        with self._lock:
            cached = self._index
        if cached is not None and cached[0] == version_dir and time.monotonic() - cached[1] < self.index_check_s:
            return cached[2]
        try:
            problem = check_index(version_dir).problem
        except KBError as error:
            problem = str(error)
        with self._lock:
            self._index = (version_dir, time.monotonic(), problem)
        return problem

    def close(self) -> None:
        self.engine.close()


def _describe(alarm: Alarm, kb: KnowledgeBase | None, lang: str) -> Alarm:
    """The alarm with its code's severity and title from the KB (for the alarm's own machine)."""
    if kb is None or not alarm.code:
        return alarm
    try:
        machine_model = kb.machine_model(alarm.machine_id)
        entry = kb.lookup(alarm.code, machine_model=machine_model, lang=lang).entry
    except Exception:  # an alarm for a code the KB cannot resolve is still shown
        return alarm
    return replace(alarm, severity=entry.severity, title=entry.title) if entry is not None else alarm
