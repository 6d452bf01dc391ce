"""A watcher thread that polls the operational database for new machine alarms.

The serial listeners write alarms into the `alarms` table (possibly from another process);
this thread reads rows newer than the last one seen and posts them to the app as
`AlarmsArrived`. It opens its own connection, so a slow query never blocks the answer
worker, and it looks each code up in the KB to learn its severity.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.store.opstore import OpStore
from kb.reader import KnowledgeBase

KbGetter = Callable[[], KnowledgeBase]


class AlarmWatcher(threading.Thread):
    def __init__(
        self,
        db_path: Path,
        deliver: Callable[[list[dict[str, Any]]], object],
        *,
        interval: float = 1.0,
        kb: KbGetter | None = None,
        lang: str = "zh-TW",
    ) -> None:
        super().__init__(name="shifu-alarm-watcher", daemon=True)
        self.db_path = db_path
        self.deliver = deliver
        self.interval = interval
        self.kb = kb
        self.lang = lang
        self.last_id = 0
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        store: OpStore | None = None
        first = True  # the first delivery, even if empty, tells the app what is history and what is new
        while not self._stop_event.is_set():
            try:
                if store is None:
                    store = OpStore(self.db_path)
                rows = self.poll(store)
                if rows or first:
                    self.deliver(rows)
                    first = False
            except Exception:  # a locked or damaged database must not end the watcher
                self.errors += 1
                store = None
            self._stop_event.wait(self.interval)
        if store is not None:
            store.close()

    def poll(self, store: OpStore) -> list[dict[str, Any]]:
        """Rows newer than the last seen (the first poll fetches the most recent 50)."""
        rows = store.alarms(limit=50, after_id=self.last_id)
        if rows:
            self.last_id = max(int(r["id"]) for r in rows)
        for row in rows:
            row["severity"], row["title"] = self._describe(row)
        return rows

    def _describe(self, row: dict[str, Any]) -> tuple[str, str]:
        if self.kb is None or not row.get("code"):
            return "", ""
        try:
            kb = self.kb()
            machine_model = kb.machine_model(row.get("machine_id") or "")
            found = kb.lookup(str(row["code"]), machine_model=machine_model, lang=self.lang)
        except Exception:  # an alarm for a code the KB cannot resolve is still shown
            return "", ""
        entry = found.entry if found else None
        return (entry.severity, entry.title) if entry else ("", "")
