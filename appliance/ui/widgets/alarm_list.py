"""Side list of incoming machine alarms: newest on top, critical ones in red.

The operator moves into it with the arrow keys and opens an alarm with Enter, which asks
the engine about that alarm's code on that alarm's machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

MAX_ROWS = 200


class AlarmList(OptionList):
    """An OptionList whose option ids are alarm row ids."""

    @dataclass
    class Opened(Message):
        """The operator chose an alarm."""

        alarm: dict[str, Any]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.alarms: dict[str, dict[str, Any]] = {}

    def add_alarms(self, rows: list[dict[str, Any]]) -> bool:
        """Insert new rows on top; True when one of them is critical."""
        critical = False
        fresh = [r for r in sorted(rows, key=lambda r: int(r["id"])) if str(r["id"]) not in self.alarms]
        highlighted = self.highlighted
        options = [self._option(r) for r in reversed(fresh)]
        existing = [self.get_option_at_index(i) for i in range(self.option_count)][: MAX_ROWS - len(options)]
        for row in fresh:
            self.alarms[str(row["id"])] = row
            critical = critical or row.get("severity") == "critical"
        self.clear_options()
        self.add_options(options + existing)
        if highlighted is not None and self.option_count:
            self.highlighted = min(highlighted + len(options), self.option_count - 1)
        return critical

    def _option(self, row: dict[str, Any]) -> Option:
        when = time.strftime("%H:%M", time.localtime(float(row.get("received") or 0)))
        code = str(row.get("code") or row.get("raw") or "?")
        text = Text.assemble((f"{code}", "bold"), f" {row.get('machine_id') or ''} {when}")
        title = str(row.get("title") or row.get("message") or "")
        if title:
            text.append(f"\n {title}")
        if row.get("severity") == "critical":
            text.stylize("bold red")
        return Option(text, id=str(row["id"]))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        alarm = self.alarms.get(event.option.id or "")
        if alarm is not None:
            self.post_message(self.Opened(alarm))
