"""A watcher thread that polls the engine client for new machine alarms.

Alarms are written by the intake (serial lines, `POST /v1/alarms`), possibly in another
process or on another PC; this thread asks `client.alarms_since(last id seen)` and posts
the new ones to the app as `AlarmsArrived`. The same thread serves an in-process engine
and a thin client (`shifu kiosk --engine URL`): the client protocol hides the difference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from appliance.engine.client import EngineClient


class AlarmWatcher(threading.Thread):
    def __init__(
        self,
        client: EngineClient,
        deliver: Callable[[list[dict[str, Any]]], object],
        *,
        interval: float = 1.0,
        lang: str = "zh-TW",
    ) -> None:
        super().__init__(name="shifu-alarm-watcher", daemon=True)
        self.client = client
        self.deliver = deliver
        self.interval = interval
        self.lang = lang
        self.last_id = 0
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        first = True  # the first delivery, even if empty, tells the app what is history and what is new
        while not self._stop_event.is_set():
            try:
                rows = self.poll()
                if rows or first:
                    self.deliver(rows)
                    first = False
            except Exception:  # a locked database or a server that is away must not end the watcher
                self.errors += 1
            self._stop_event.wait(self.interval)

    def poll(self) -> list[dict[str, Any]]:
        """Alarms newer than the last seen, newest first (the first poll fetches the most recent 50).

        Delivered as the rows `AlarmList` shows (`Alarm.to_json`), severity and title included.
        """
        alarms = self.client.alarms_since(self.last_id, 50, lang=self.lang)
        if alarms:
            self.last_id = max(a.id for a in alarms)
        return [a.to_json() for a in alarms]
