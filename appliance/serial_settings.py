"""Settings of the serial listeners (`[serial]` and `[[serial.ports]]` in shifu.toml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PortSettings(BaseModel):
    """One serial line: a machine printing alarms, or a serial barcode scanner."""

    model_config = ConfigDict(extra="forbid")

    device: str
    """Device path, preferably stable: `/dev/serial/by-id/...`; pyserial URLs such as `loop://` work too."""
    baud: int = Field(default=115200, gt=0)
    """Baud rate."""
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    """Parity: N(one), E(ven), O(dd), M(ark), S(pace)."""
    stopbits: Literal[1, 2] = 1
    """Stop bits."""
    bytesize: Literal[5, 6, 7, 8] = 8
    """Data bits."""
    encoding: str = "utf-8"
    """Text encoding of the line; invalid bytes are replaced and counted."""
    machine: str = ""
    """Machine id for alarms on this line (a parser's `machine` group overrides it)."""
    role: Literal["machine", "scanner"] = "machine"
    """`machine` lines carry alarms; `scanner` lines feed the operator input."""
    parser: str = "csv"
    """Preset (`grbl`, `csv`) or a regular expression with named groups code, machine, message."""
    name: str = ""
    """Short label for the status bar and the alarm list; empty means the device path."""

    def label(self) -> str:
        """The name shown for this port."""
        return self.name or self.device


class SerialSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ports: list[PortSettings] = []
    """Serial lines to listen on."""
    max_line_bytes: int = Field(default=4096, ge=64)
    """Longer lines are cut and counted as garbage."""
    duplicate_window_s: float = Field(default=30.0, ge=0)
    """A machine repeating the same alarm within this window is counted, not re-explained."""
    answers_per_minute: int = Field(default=30, ge=1)
    """Per-port rate limit on preparing answers for alarms (storage is never limited)."""
    answer_burst: int = Field(default=5, ge=1)
    """Alarms a port may have explained at once before the per-minute rate applies."""
    answer_queue: int = Field(default=200, ge=1)
    """Alarms waiting for a prepared answer, across all ports; beyond it they are marked throttled."""
    reconnect_min_s: float = Field(default=0.5, gt=0)
    """First wait before reopening a port that disappeared; doubled on each failure."""
    reconnect_max_s: float = Field(default=10.0, gt=0)
    """Longest wait between attempts to reopen a port."""
    status_interval_s: float = Field(default=1.0, gt=0)
    """How often `serial_status.json` in the state directory is rewritten for the kiosk."""
