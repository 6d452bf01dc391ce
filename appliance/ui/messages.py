"""Typed messages that threads post into the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class AlarmsArrived(Message):
    """New rows from the alarms table (newest first), each with `severity` and `title` added."""

    rows: list[dict[str, Any]]
