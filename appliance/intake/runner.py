"""Every configured alarm input in one process, around one intake (`shifu intake`).

Serial ports (`[[serial.ports]]`), MQTT brokers (`[[mqtt.brokers]]`) and OPC UA servers
(`[[opcua.servers]]`) each read on their own threads and hand over to the same `Intake`, so
there is one duplicate window and one background answer worker for all of them. The state of
every network input is written to `intake_status.json` in the state directory every
`serial.status_interval_s` (serial ports keep `serial_status.json`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import paths
from appliance.config import Settings
from appliance.intake.intake import Intake
from appliance.intake.message import Stored
from appliance.intake.mqtt import MqttInput
from appliance.intake.opcua import OpcuaInput
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.service import SerialService

if TYPE_CHECKING:
    from appliance.engine.engine import Engine

STATUS_FILE = "intake_status.json"


class Inputs:
    """Start and stop every configured input around one intake."""

    def __init__(
        self, settings: Settings, store: AlarmStore, *, engine: Engine | None = None,
        on_stored: Callable[[Stored], None] | None = None, status_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.intake = Intake(settings, store, engine=engine, on_stored=on_stored)
        self.serial = (
            SerialService(settings, store, engine=engine, store_scans=True, intake=self.intake)
            if settings.serial.ports else None
        )
        self.mqtt = [MqttInput(b, self.intake) for b in settings.mqtt.brokers]
        self.opcua = [OpcuaInput(s, self.intake) for s in settings.opcua.servers]
        self.status_file = status_file or paths.state_dir() / STATUS_FILE
        self._stop_event = threading.Event()
        self._status_thread = threading.Thread(target=self._status_loop, name="intake-status", daemon=True)

    def names(self) -> list[str]:
        """What is being listened to, for the start-up line."""
        ports = [f"serial {p.label()}" for p in self.settings.serial.ports]
        return ports + [f"mqtt {m.status.name}" for m in self.mqtt] + [f"opcua {o.status.name}" for o in self.opcua]

    def start(self) -> Inputs:
        self.intake.start()
        if self.serial is not None:
            self.serial.start()
        for broker in self.mqtt:
            broker.start()
        for server in self.opcua:
            server.start()
        self._status_thread.start()
        return self

    def stop(self) -> None:
        for server in self.opcua:
            server.stop()
        for broker in self.mqtt:
            broker.stop()
        if self.serial is not None:
            self.serial.stop()
        self.intake.stop()
        self._stop_event.set()
        self._status_thread.join(timeout=5)
        self._write_status()

    def status(self) -> dict[str, Any]:
        inputs = [m.status.to_json() for m in self.mqtt] + [o.status.to_json() for o in self.opcua]
        return {"pid": os.getpid(), "written": time.time(), "inputs": inputs}

    def _status_loop(self) -> None:
        while not self._stop_event.wait(self.settings.serial.status_interval_s):
            self._write_status()

    def _write_status(self) -> None:
        target = self.status_file
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temp.write_text(json.dumps(self.status(), ensure_ascii=False), encoding="utf-8")
            os.replace(temp, target)
        except OSError:
            pass  # the status file is for people; the inputs go on without it
