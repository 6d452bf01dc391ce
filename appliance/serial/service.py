"""The serial service: readers for every port; their alarms go through the store-first intake.

Each reader thread only reads and hands a chunk's alarms to `appliance.intake.Intake`, which
stores them (one SQLite transaction per chunk, synchronous=FULL), counts repeats inside
`serial.duplicate_window_s`, tells listeners and queues answers for its one background worker
(priority 1, behind the operators' questions). The per-port token bucket limits only how many
answers are prepared (the others are marked `throttled`; the kiosk answers them when opened);
storage is never limited. Scanner ports produce scans: queued in `scans` (in-process), passed
to `on_scan`, and with `store_scans` written to the `scans` table for a kiosk in another process.
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
from appliance.intake.intake import Intake
from appliance.intake.message import AlarmIn
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.rate import TokenBucket
from appliance.serial.reader import Opener, PortReader, Received, open_port
from appliance.serial.status import snapshot, status_path, write_status
from appliance.serial_settings import PortSettings

if TYPE_CHECKING:
    from appliance.engine.engine import Engine

log = logging.getLogger("shifu.serial")

MAX_UNSAVED = 100_000


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
    bucket: TokenBucket
    unsaved: list[Received] = field(default_factory=list)


class SerialService:
    """Serial ports read by their own threads, their alarms handed to the store-first `Intake`.

    Without `intake`, the service makes its own (and starts and stops it); `shifu intake` passes
    the one intake every input of the process shares.
    """

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
        intake: Intake | None = None,
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
        self._state = {id(r): _PortState(TokenBucket(cfg.answers_per_minute, cfg.answer_burst)) for r in self.readers}
        self._own_intake = intake is None
        self.intake = intake or Intake(settings, store, engine=engine, on_answer=on_answer)
        for reader in self.readers:
            self.intake.register(_source(reader), reader.status)
        self._stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SerialService:
        if self._own_intake:
            self.intake.start()
        if self.write_status_file:
            self._threads.append(threading.Thread(target=self._status_loop, name="serial-status", daemon=True))
        for thread in self._threads:
            thread.start()
        for reader in self.readers:
            reader.start()
        return self

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()
        self._stop_event.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self._own_intake:
            self.intake.stop()
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
        return self.intake.answers_waiting()

    # -- the sink every reader calls from its own thread ------------------------------------
    def handle(self, reader: PortReader, received: list[Received]) -> None:
        """Hand a chunk's alarms to the intake (kept for the next chunk if they cannot be stored)."""
        state = self._state[id(reader)]
        alarms = state.unsaved + [r for r in received if r.parsed.kind == "alarm"]
        scans = [r for r in received if r.parsed.kind == "scan"]
        state.unsaved = []
        port = reader.port
        source = _source(reader)
        try:
            stored = self.intake.submit(
                [
                    AlarmIn(
                        source=source, machine_id=r.parsed.machine or port.machine, code=r.parsed.code,
                        normalized=r.parsed.normalized, message=r.parsed.message, raw=r.line.text.strip(),
                        port=port.label(),
                    )
                    for r in alarms
                ],
                allow=state.bucket.allow,
            )
            if self.store_scans and scans:
                with self.store.batch() as batch:
                    for scan in scans:
                        batch.scan(port.label(), port.machine, scan.parsed.message)
        except sqlite3.Error as error:
            reader.status.add("store_errors")
            state.unsaved = alarms[-MAX_UNSAVED:]
            log.error(
                "serial %s: cannot store %d alarms (%s); will retry with the next line",
                port.label(),
                len(alarms),
                error,
            )
            return
        fresh = sum(1 for s in stored if not s.repeat)
        reader.status.add("alarms", fresh)
        reader.status.add("repeats", len(stored) - fresh)
        reader.status.add("scans", len(scans))
        for item in stored:
            a = item.alarm
            self._notify(
                self.on_alarm,
                AlarmEvent(item.id, a.port, a.machine_id, a.code, a.normalized, a.message, repeat=item.repeat,
                           answer_status=item.answer_status),
            )
        for scan in scans:
            scan_event = ScanEvent(scan.parsed.message, port.label(), port.machine)
            self.scans.put(scan_event)
            self._notify(self.on_scan, scan_event)

    @staticmethod
    def _notify(callback: Callable[[Any], None] | None, event: Any) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception:  # a listener's bug must not stop the line being read
            log.exception("serial listener failed")

    def accept(self, port: str, machine_id: str, raw: str, code: str, normalized: str, message: str) -> AlarmEvent:
        """An alarm that came another way (HTTP from a gateway or the MES), through the same intake:
        stored first, then its answer queued for the background worker (throttled when the queue is full)."""
        stored = self.intake.submit(
            [AlarmIn(source=port, machine_id=machine_id, code=code, normalized=normalized, message=message, raw=raw,
                     port=port)]
        )[0]
        event = AlarmEvent(stored.id, port, machine_id, code, normalized, message, repeat=stored.repeat,
                           answer_status=stored.answer_status)
        self._notify(self.on_alarm, event)
        return event

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


def _source(reader: PortReader) -> str:
    return f"serial:{reader.port.label()}"
