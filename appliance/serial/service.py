"""The serial service: readers for every port, alarms stored first, answers prepared after.

Order for every alarm line: store it (one SQLite transaction per chunk read, committed
with synchronous=FULL) -> tell in-process listeners -> queue its answer. A repeat of the
same alarm within `serial.duplicate_window_s` increments the stored row's `repeats`
instead of adding a row. The per-port token bucket limits only how many answers are
prepared (the others are marked `throttled`; the kiosk answers them when opened, steps
2-4 take milliseconds); storage is never limited.

Answers are prepared by one worker thread through `Engine.answer` at priority 1, so the
operator's questions go first through the engine's gate. Scanner ports produce scans:
queued in `scans` (in-process), passed to `on_scan`, and with `store_scans` written to the
`scans` table for a kiosk in another process.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.config import Settings
from appliance.serial.alarm_store import AlarmStore, NewAlarm
from appliance.serial.rate import DuplicateFilter, TokenBucket
from appliance.serial.reader import Opener, PortReader, Received, open_port
from appliance.serial.status import PortStatus, snapshot, status_path, write_status
from appliance.serial_settings import PortSettings

if TYPE_CHECKING:
    from appliance.engine.engine import Engine

log = logging.getLogger("shifu.serial")

MAX_UNSAVED = 100_000
ANSWER_PRIORITY = 1


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm as stored (`repeat`: it only incremented the `repeats` of alarm `id`)."""

    id: int
    port: str
    machine_id: str
    code: str
    normalized: str
    message: str
    repeat: bool = False
    answer_status: str | None = None


@dataclass(frozen=True)
class ScanEvent:
    """A line from a scanner port: operator input, exactly like a keyboard scan."""

    text: str
    port: str
    machine_id: str
    id: int | None = None


@dataclass
class _PortState:
    dups: DuplicateFilter
    bucket: TokenBucket
    unsaved: list[Received] = field(default_factory=list)


@dataclass(frozen=True)
class _AnswerJob:
    alarm_id: int
    code: str
    machine_id: str
    status: PortStatus | None
    source: str = "serial"  # the audit row's source: serial, or http for alarms posted to `shifu serve`


class SerialService:
    def __init__(
        self,
        settings: Settings,
        store: AlarmStore,
        *,
        engine: Engine | None = None,
        ports: list[PortSettings] | None = None,
        store_scans: bool = False,
        status_file: Path | None = None,
        write_status_file: bool = True,
        on_alarm: Callable[[AlarmEvent], None] | None = None,
        on_scan: Callable[[ScanEvent], None] | None = None,
        on_answer: Callable[[int, Any], None] | None = None,
        opener: Opener = open_port,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.store_scans = store_scans
        self.status_file = status_file
        self.write_status_file = write_status_file
        self.on_alarm = on_alarm
        self.on_scan = on_scan
        self.on_answer = on_answer
        self.scans: queue.Queue[ScanEvent] = queue.Queue()
        cfg = settings.serial
        chosen = cfg.ports if ports is None else ports  # [] : no ports (the HTTP server's alarms only)
        self.readers = [PortReader(p, cfg, self.handle, opener=opener) for p in chosen]
        self._state = {
            id(r): _PortState(
                DuplicateFilter(cfg.duplicate_window_s), TokenBucket(cfg.answers_per_minute, cfg.answer_burst)
            )
            for r in self.readers
        }
        self._answers: queue.Queue[_AnswerJob] = queue.Queue(maxsize=cfg.answer_queue)
        self._stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SerialService:
        if self.engine is not None:
            self._resume_pending()
            self._threads.append(threading.Thread(target=self._answer_loop, name="serial-answers", daemon=True))
        if self.write_status_file:
            self._threads.append(threading.Thread(target=self._status_loop, name="serial-status", daemon=True))
        for thread in self._threads:
            thread.start()
        for reader in self.readers:
            reader.start()
        return self

    def _resume_pending(self) -> None:
        """Queue again the answers a previous run accepted but did not finish (service restart)."""
        statuses = {r.port.label(): r.status for r in self.readers}
        for row in reversed(self.store.pending_answers(self._answers.maxsize)):
            self._answers.put_nowait(
                _AnswerJob(row["id"], row["code"] or "", row["machine_id"] or "", statuses.get(row["port"]))
            )

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()
        self._stop_event.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self.write_status_file:
            self._write_status()

    def __enter__(self) -> SerialService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        """The same object `serial_status.json` holds."""
        return snapshot([r.status for r in self.readers], self.settings.serial.status_interval_s)

    def answers_waiting(self) -> int:
        return self._answers.qsize()

    # -- the sink every reader calls from its own thread ------------------------------------
    def handle(self, reader: PortReader, received: list[Received]) -> None:
        state = self._state[id(reader)]
        alarms = state.unsaved + [r for r in received if r.parsed.kind == "alarm"]
        scans = [r for r in received if r.parsed.kind == "scan"]
        state.unsaved = []
        try:
            events, jobs = self._store(reader, state, alarms, scans)
        except sqlite3.Error as error:
            reader.status.add("store_errors")
            state.unsaved = alarms[-MAX_UNSAVED:]
            log.error(
                "serial %s: cannot store %d alarms (%s); will retry with the next line",
                reader.port.label(),
                len(alarms),
                error,
            )
            return
        for event in events:
            self._notify(self.on_alarm, event)
        for scan in scans:
            scan_event = ScanEvent(scan.parsed.message, reader.port.label(), reader.port.machine)
            self.scans.put(scan_event)
            self._notify(self.on_scan, scan_event)
        for job in jobs:
            try:
                self._answers.put_nowait(job)
            except queue.Full:
                reader.status.add("throttled")
                self.store.set_answer(job.alarm_id, "throttled")

    def _store(
        self, reader: PortReader, state: _PortState, alarms: list[Received], scans: list[Received]
    ) -> tuple[list[AlarmEvent], list[_AnswerJob]]:
        port = reader.port
        label = port.label()
        events: list[AlarmEvent] = []
        jobs: list[_AnswerJob] = []
        fresh: dict[tuple[str, str], int] = {}
        throttled = 0
        room = self._answers.maxsize - self._answers.qsize()
        with self.store.batch() as batch:
            for item in alarms:
                parsed = item.parsed
                machine = parsed.machine or port.machine
                key = (machine, parsed.normalized)
                existing = fresh.get(key) or state.dups.existing(key)
                if existing is not None:
                    batch.repeat(existing)
                    events.append(
                        AlarmEvent(
                            existing, label, machine, parsed.code, parsed.normalized, parsed.message, repeat=True
                        )
                    )
                    continue
                answer: str | None = None
                if self.engine is not None:
                    if len(jobs) < room and state.bucket.allow():
                        answer = "pending"
                    else:
                        answer = "throttled"
                        throttled += 1
                alarm_id = batch.insert(
                    NewAlarm(
                        label, machine, item.line.text.strip(), parsed.code, parsed.normalized, parsed.message, answer
                    )
                )
                fresh[key] = alarm_id
                events.append(
                    AlarmEvent(
                        alarm_id, label, machine, parsed.code, parsed.normalized, parsed.message, answer_status=answer
                    )
                )
                if answer == "pending":
                    jobs.append(_AnswerJob(alarm_id, parsed.code, machine, reader.status))
            if self.store_scans:
                for scan in scans:
                    batch.scan(label, port.machine, scan.parsed.message)
        # Committed: only now does anything else happen to these alarms.
        for key, alarm_id in fresh.items():
            state.dups.remember(key, alarm_id)
        reader.status.add("alarms", len(fresh))
        reader.status.add("repeats", len(events) - len(fresh))
        reader.status.add("throttled", throttled)
        reader.status.add("scans", len(scans))
        return events, jobs

    @staticmethod
    def _notify(callback: Callable[[Any], None] | None, event: Any) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception:  # a listener's bug must not stop the line being read
            log.exception("serial listener failed")

    def accept(self, port: str, machine_id: str, raw: str, code: str, normalized: str, message: str) -> AlarmEvent:
        """An alarm that came another way (HTTP from a gateway or the MES), handled like a serial one:
        stored first, then its answer queued for the background worker (throttled when the queue is full)."""
        answer: str | None = None
        if self.engine is not None:
            answer = "throttled" if self._answers.full() else "pending"
        with self.store.batch() as batch:
            alarm_id = batch.insert(NewAlarm(port, machine_id, raw, code, normalized, message, answer))
        if answer == "pending":
            try:
                self._answers.put_nowait(_AnswerJob(alarm_id, code, machine_id, None, source=port))
            except queue.Full:
                answer = "throttled"
                self.store.set_answer(alarm_id, answer)
        event = AlarmEvent(alarm_id, port, machine_id, code, normalized, message, answer_status=answer)
        self._notify(self.on_alarm, event)
        return event

    # -- background work ---------------------------------------------------------------------
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
                query = Query(job.code, machine_id=job.machine_id, source=job.source, lang=lang,
                              priority=ANSWER_PRIORITY)
                answer = self.engine.answer(query)
                self.store.set_answer(job.alarm_id, "ready", answer.audit_id)
                if job.status is not None:
                    job.status.add("answers_ready")
            except Exception as error:  # the alarm is stored; the kiosk can still answer it live
                log.warning("serial: could not prepare the answer for alarm %d: %s", job.alarm_id, error)
                if job.status is not None:
                    job.status.add("answers_failed")
                try:
                    self.store.set_answer(job.alarm_id, "failed")
                except sqlite3.Error:
                    log.exception("serial: cannot mark alarm %d failed", job.alarm_id)
            if self.on_answer is not None:
                try:
                    self.on_answer(job.alarm_id, answer)
                except Exception:
                    log.exception("serial answer listener failed")

    def _status_loop(self) -> None:
        interval = self.settings.serial.status_interval_s
        while True:
            self._write_status()
            if self._stop_event.wait(interval):
                return

    def _write_status(self) -> None:
        try:
            write_status(self.status(), self.status_file or status_path())
        except OSError as error:
            log.warning("serial: cannot write the status file: %s", error)
