"""Live state of one network input (an MQTT broker, an OPC UA server) for `shifu doctor` and the logs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

COUNTERS = ("messages", "alarms", "repeats", "redelivered", "unparsed", "throttled", "answers_ready",
            "answers_failed", "store_errors", "reconnects")


@dataclass
class InputStatus:
    """Counters only grow; `last_message` is wall-clock time, for people."""

    name: str
    kind: str
    state: str = "starting"  # starting | subscribing | connected | reconnecting | stopped
    last_error: str = ""
    last_message: float | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self.counters[name] = self.counters.get(name, 0) + amount

    def set(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)

    def seen(self, messages: int = 1) -> None:
        self.add("messages", messages)
        self.set(last_message=time.time())

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"name": self.name, "kind": self.kind, "state": self.state, "last_error": self.last_error,
                    "last_message": self.last_message, "counters": dict(self.counters)}
