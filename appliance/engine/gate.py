"""One model, one queue: the operator's question goes before background work.

Waiters are served by (priority, arrival); priority 0 is the operator, higher numbers
(answers prepared for serial alarms, evaluation) wait while a lower number is waiting.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PriorityGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._waiting: list[tuple[int, int]] = []
        self._counter = itertools.count()

    def waiting(self, max_priority: int | None = None) -> int:
        with self._cond:
            return sum(1 for p, _ in self._waiting if max_priority is None or p <= max_priority)

    @contextmanager
    def hold(self, priority: int = 0) -> Iterator[None]:
        ticket = (priority, next(self._counter))
        with self._cond:
            self._waiting.append(ticket)
            while self._busy or min(self._waiting) != ticket:
                self._cond.wait()
            self._waiting.remove(ticket)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
