"""Per-port status for the kiosk's status bar, shared across processes as a JSON file.

`shifu serial` may run as its own service while the kiosk runs in another process, so
the service rewrites `serial_status.json` in the state directory every
`serial.status_interval_s` (atomically: temp file + rename). Freshness is judged on the
monotonic clock, which on Linux is shared by every process of one boot; the wall-clock
`written` field is only for people.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from appliance import paths

STATUS_FILE = "serial_status.json"
COUNTERS = (
    "bytes",
    "lines",
    "alarms",
    "repeats",
    "ignored",
    "garbage",
    "cut",
    "invalid_bytes",
    "throttled",
    "answers_ready",
    "answers_failed",
    "scans",
    "store_errors",
)


@dataclass
class PortStatus:
    """Live state of one port; counters only grow."""

    port: str
    device: str
    role: str
    machine: str
    parser: str
    state: str = "starting"  # starting | connected | reconnecting | stopped
    resolved: str = ""
    reconnects: int = 0
    last_error: str = ""
    retry_in_s: float = 0.0
    last_garbage: str = ""
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self.counters[name] += amount

    def set(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
            data["counters"] = dict(self.counters)
        return data


def status_path() -> Path:
    return paths.state_dir() / STATUS_FILE


def snapshot(ports: list[PortStatus], interval_s: float) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "monotonic": time.monotonic(),
        "written": time.time(),
        "interval_s": interval_s,
        "ports": [p.to_json() for p in ports],
    }


def write_status(data: dict[str, Any], path: Path | None = None) -> None:
    target = path or status_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(temp, target)


def read_status(path: Path | None = None) -> dict[str, Any] | None:
    """The last status written, with `stale: true` when its writer stopped updating it; None if absent."""
    target = path or status_path()
    try:
        data: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    age = time.monotonic() - float(data.get("monotonic", 0.0))
    data["age_s"] = round(age, 3)
    data["stale"] = not (0 <= age <= 3 * float(data.get("interval_s", 1.0)) + 1.0)
    return data


def summary(data: dict[str, Any] | None) -> str:
    """One short line for a status bar, e.g. `CNC-1 ok · grbl-2 reconnecting`."""
    if not data or not data.get("ports"):
        return ""
    words = {"connected": "ok"}
    parts = [f"{p['port']} {words.get(p['state'], p['state'])}" for p in data["ports"]]
    if data.get("stale"):
        parts.append("(serial service not running)")
    return " · ".join(parts)
