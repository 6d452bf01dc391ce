"""One thread per port: open, read, frame, parse, hand on; reopen with backoff when it goes away.

The reader never waits on the model: it hands each chunk's lines to a sink (the service),
which stores them and queues answer work for another thread. The device path is resolved
again on every attempt, so a `/dev/serial/by-id/...` symlink that udev repointed at a new
tty after a replug is followed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from appliance.serial.framing import Line, LineFramer
from appliance.serial.parsers import LineParser, Parsed, make_parser
from appliance.serial.status import PortStatus
from appliance.serial_settings import PortSettings, SerialSettings

log = logging.getLogger("shifu.serial")

READ_TIMEOUT_S = 0.2
MAX_READ = 65536


@dataclass(frozen=True)
class Received:
    """A line and what the parser made of it."""

    line: Line
    parsed: Parsed


Sink = Callable[["PortReader", list[Received]], None]
Opener = Callable[[str, PortSettings], Any]


def resolve(device: str) -> str:
    """The path to open now: URLs unchanged, paths with symlinks followed."""
    if "://" in device:
        return device
    return os.path.realpath(device)


def open_port(target: str, port: PortSettings) -> Any:
    """Open with pyserial (`serial_for_url`, so `loop://` and other URLs work)."""
    return serial.serial_for_url(
        target,
        baudrate=port.baud,
        parity=port.parity,
        stopbits=port.stopbits,
        bytesize=port.bytesize,
        timeout=READ_TIMEOUT_S,
    )


class PortReader(threading.Thread):
    def __init__(
        self,
        port: PortSettings,
        settings: SerialSettings,
        sink: Sink,
        *,
        opener: Opener = open_port,
    ) -> None:
        super().__init__(name=f"serial-{port.label()}", daemon=True)
        self.port = port
        self.settings = settings
        self.sink = sink
        self.opener = opener
        self.parser: LineParser = make_parser(port.parser)
        self.framer = LineFramer(settings.max_line_bytes, port.encoding)
        self.status = PortStatus(
            port=port.label(), device=port.device, role=port.role, machine=port.machine, parser=self.parser.name
        )
        self.serial: Any = None
        self.connected = threading.Event()
        self._stop_event = threading.Event()
        self._garbage_logged_at = -1e9
        self._garbage_unlogged = 0

    # -- control ---------------------------------------------------------------------------
    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    # -- loop ------------------------------------------------------------------------------
    def run(self) -> None:
        delay = self.settings.reconnect_min_s
        first = True
        while not self._stop_event.is_set():
            target = resolve(self.port.device)
            try:
                if "://" not in target and not os.path.exists(target):
                    raise FileNotFoundError(f"{self.port.device} does not exist (unplugged?)")
                self.serial = self.opener(target, self.port)
            except (serial.SerialException, OSError, ValueError) as error:
                self._wait_retry(error, delay, first)
                first = False
                delay = min(delay * 2, self.settings.reconnect_max_s)
                continue
            if not first:
                self.status.set(reconnects=self.status.reconnects + 1)
            first = False
            delay = self.settings.reconnect_min_s
            self.status.set(state="connected", resolved=target, last_error="", retry_in_s=0.0)
            log.info("serial %s connected (%s)", self.port.label(), target)
            self.connected.set()
            try:
                self._read_until_gone()
            except (serial.SerialException, OSError) as error:
                if not self._stop_event.is_set():
                    log.warning("serial %s lost: %s", self.port.label(), error)
                    self.status.set(state="reconnecting", last_error=str(error))
            finally:
                self.connected.clear()
                self._close()
                pending = self.framer.reset()
                if pending:  # a line cut off by the unplug cannot be trusted
                    self._garbage(pending.decode(self.port.encoding, "replace"))
        self.status.set(state="stopped")

    def _wait_retry(self, error: BaseException, delay: float, first: bool) -> None:
        message = str(error)
        if self.status.last_error != message or first:
            log.warning("serial %s: cannot open: %s; retrying", self.port.label(), message)
        self.status.set(state="reconnecting", last_error=message, retry_in_s=delay)
        self._stop_event.wait(delay)

    def _read_until_gone(self) -> None:
        port = self.serial
        while not self._stop_event.is_set():
            waiting = port.in_waiting
            data = port.read(min(max(waiting, 1), MAX_READ))
            if not data:
                continue
            self.status.add("bytes", len(data))
            lines = self.framer.feed(data)
            if lines:
                self._deliver(lines)

    def _deliver(self, lines: list[Line]) -> None:
        received: list[Received] = []
        for line in lines:
            self.status.add("lines")
            self.status.add("invalid_bytes", line.invalid_bytes)
            if line.cut:
                self.status.add("cut")
                self._garbage(line.text[:80] + "…")
                continue
            if self.port.role == "scanner":
                if line.invalid_bytes:  # a scan with broken bytes would look up the wrong code
                    self._garbage(line.text)
                    continue
                parsed = Parsed("scan", message=line.text.strip())
            else:
                parsed = self.parser.parse(line.text)
                if parsed.kind == "alarm" and "\ufffd" in parsed.code and line.invalid_bytes:
                    # A replaced byte inside the code would be dropped by normalisation and
                    # could turn a broken code into a different, valid one.
                    parsed = Parsed("garbage")
                if parsed.kind == "garbage":
                    self._garbage(line.text)
                    continue
                if parsed.kind == "ignored":
                    self.status.add("ignored")
                    continue
            received.append(Received(line, parsed))
        if received:
            self.sink(self, received)

    def _garbage(self, text: str) -> None:
        """Count a line nobody can use; log it, at most once a second per port (wrong baud floods)."""
        self.status.add("garbage")
        sample = text[:80]
        self.status.set(last_garbage=sample)
        now = time.monotonic()
        if now - self._garbage_logged_at >= 1.0:
            extra = f" (+{self._garbage_unlogged} more)" if self._garbage_unlogged else ""
            log.warning("serial %s: garbage line %r%s", self.port.label(), sample, extra)
            self._garbage_logged_at = now
            self._garbage_unlogged = 0
        else:
            self._garbage_unlogged += 1

    def _close(self) -> None:
        if self.serial is not None:
            try:
                self.serial.close()
            except Exception:  # closing a vanished device may fail; it is gone either way
                log.debug("serial %s: close failed", self.port.label(), exc_info=True)
            self.serial = None
