"""The one store-first intake: every input's alarms are committed before anything else happens.

Order for each batch an input hands over: one SQLite transaction (synchronous=FULL) writes the
new rows, counts repeats on rows already stored, and skips redeliveries; only after the commit
are listeners told and answers queued for the one background worker (priority 1, behind the
operators' questions at the engine's gate). `submit` returns after the commit, so an input may
acknowledge its messages to their sender then (MQTT PUBACK) and a crash loses nothing.

Duplicates, on the monotonic clock, inside `serial.duplicate_window_s` (one window for every input):
- the same machine and code from the same source: one row, its `repeats` counted;
- the same message again (`AlarmIn.message_key`: an MQTT message redelivered after a reconnect):
  nothing is written and `repeats` is not counted, because the machine raised it once. After a
  restart the window is checked on the stored rows' wall-clock time, the only clock that survives.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.config import Settings
from appliance.intake.message import AlarmIn, Counters, Stored
from appliance.serial.alarm_store import AlarmStore, NewAlarm
from appliance.serial.rate import DuplicateFilter

if TYPE_CHECKING:
    from appliance.engine.engine import Engine

log = logging.getLogger("shifu.intake")

ANSWER_PRIORITY = 1
Allow = Callable[[], bool]


@dataclass(frozen=True)
class _AnswerJob:
    alarm_id: int
    code: str
    machine_id: str
    kind: str
    source: str


class Intake:
    """Stores alarms first and prepares their answers in one background worker."""

    def __init__(
        self,
        settings: Settings,
        store: AlarmStore,
        *,
        engine: Engine | None = None,
        on_stored: Callable[[Stored], None] | None = None,
        on_answer: Callable[[int, Any], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.on_stored = on_stored
        self.on_answer = on_answer
        window = settings.serial.duplicate_window_s
        self.window_s = window
        self._alarms = DuplicateFilter(window)
        self._messages = DuplicateFilter(window)
        self._counters: dict[str, Counters] = {}
        self._answers: queue.Queue[_AnswerJob] = queue.Queue(maxsize=settings.serial.answer_queue)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Intake:
        """Queue again answers a previous run accepted but did not finish, and start the worker."""
        if self.engine is not None and self._thread is None:
            for row in reversed(self.store.pending_answers(self._answers.maxsize)):
                source = row.get("source") or ""
                self._answers.put_nowait(
                    _AnswerJob(row["id"], row["code"] or "", row["machine_id"] or "", source.split(":", 1)[0], source)
                )
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._answer_loop, name="intake-answers", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def register(self, source: str, counters: Counters) -> None:
        """Count `answers_ready` / `answers_failed` for alarms from `source` on `counters`."""
        self._counters[source] = counters

    def answers_waiting(self) -> int:
        return self._answers.qsize()

    # -- storing ---------------------------------------------------------------------------
    def submit(self, alarms: Sequence[AlarmIn], *, allow: Allow | None = None) -> list[Stored]:
        """Store `alarms` in one transaction; return what became of each, in order, after the commit.

        `allow` is the input's rate limit on answers (a token bucket): asked once per new,
        answerable row; a refusal, or a full answer queue, marks the row `throttled` (the kiosk
        answers it when opened). Storage itself is never limited. Raises sqlite3.Error when
        nothing could be committed: the caller keeps the alarms and tries again.
        """
        results: list[Stored] = []
        jobs: list[_AnswerJob] = []
        fresh: dict[tuple[str, str, str], int] = {}
        keys: dict[str, int] = {}
        with self._lock:
            room = self._answers.maxsize - self._answers.qsize()
            with self.store.batch() as batch:
                for alarm in alarms:
                    if alarm.message_key:
                        seen = keys.get(alarm.message_key) or self._messages.existing(alarm.message_key)
                        if seen is None and self.window_s > 0:
                            seen = batch.by_message_key(alarm.message_key, time.time() - self.window_s)
                        if seen is not None:
                            results.append(Stored(seen, alarm, redelivered=True))
                            continue
                    key = (alarm.source, alarm.machine_id, alarm.normalized)
                    if alarm.status != "unparsed" and alarm.normalized:
                        existing = fresh.get(key) or self._alarms.existing(key)
                        if existing is not None:
                            batch.repeat(existing, alarm.event_id or None)
                            results.append(Stored(existing, alarm, repeat=True))
                            continue
                    answer = self._answer_state(alarm, len(jobs) < room, allow)
                    alarm_id = batch.insert(
                        NewAlarm(
                            alarm.port or alarm.source, alarm.machine_id, alarm.raw, alarm.code, alarm.normalized,
                            alarm.message, answer, source=alarm.source, status=alarm.status,
                            message_key=alarm.message_key or None, payload=alarm.payload,
                            severity=alarm.severity or None, condition_id=alarm.condition_id or None,
                            event_id=alarm.event_id or None,
                        )
                    )
                    if alarm.status != "unparsed" and alarm.normalized:
                        fresh[key] = alarm_id
                    if alarm.message_key:
                        keys[alarm.message_key] = alarm_id
                    results.append(Stored(alarm_id, alarm, answer_status=answer))
                    if answer == "pending":
                        jobs.append(_AnswerJob(alarm_id, alarm.code, alarm.machine_id, alarm.kind, alarm.source))
            # Committed: only now does anything else happen to these alarms.
            for key, alarm_id in fresh.items():
                self._alarms.remember(key, alarm_id)
            for message_key, alarm_id in keys.items():
                self._messages.remember(message_key, alarm_id)
        for result in results:
            self._notify(result)
        for job in jobs:
            try:
                self._answers.put_nowait(job)
            except queue.Full:
                self._count(job.source, "throttled")
                self.store.set_answer(job.alarm_id, "throttled")
        return results

    def _answer_state(self, alarm: AlarmIn, room: bool, allow: Allow | None) -> str | None:
        if self.engine is None or alarm.status == "unparsed" or not alarm.normalized:
            return None
        if room and (allow is None or allow()):
            return "pending"
        self._count(alarm.source, "throttled")
        return "throttled"

    def _notify(self, result: Stored) -> None:
        if self.on_stored is None:
            return
        try:
            self.on_stored(result)
        except Exception:  # a listener's bug must not stop an input
            log.exception("intake listener failed")

    def _count(self, source: str, name: str) -> None:
        counters = self._counters.get(source)
        if counters is not None:
            counters.add(name)

    # -- answering -------------------------------------------------------------------------
    def _answer_loop(self) -> None:
        from appliance.engine.types import Query

        assert self.engine is not None
        lang = self.settings.general.lang
        while not self._stop_event.is_set():
            try:
                job = self._answers.get(timeout=0.2)
            except queue.Empty:
                continue
            answer = None
            try:
                query = Query(job.code, machine_id=job.machine_id, source=job.kind, lang=lang,
                              priority=ANSWER_PRIORITY)
                answer = self.engine.answer(query)
                self.store.set_answer(job.alarm_id, "ready", answer.audit_id)
                self._count(job.source, "answers_ready")
            except Exception as error:  # the alarm is stored; the kiosk can still answer it live
                log.warning("intake: could not prepare the answer for alarm %d: %s", job.alarm_id, error)
                self._count(job.source, "answers_failed")
                try:
                    self.store.set_answer(job.alarm_id, "failed")
                except sqlite3.Error:
                    log.exception("intake: cannot mark alarm %d failed", job.alarm_id)
            if self.on_answer is not None:
                try:
                    self.on_answer(job.alarm_id, answer)
                except Exception:
                    log.exception("intake answer listener failed")
