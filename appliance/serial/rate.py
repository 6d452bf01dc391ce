"""Per-port rate limit and duplicate suppression, on the monotonic clock.

The PC has no network time and its wall clock may jump; windows and rates therefore use
`time.monotonic()` (injectable for tests), never `time.time()`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

Clock = Callable[[], float]


class TokenBucket:
    """`rate_per_minute` tokens a minute, at most `burst` saved up."""

    def __init__(self, rate_per_minute: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self) -> bool:
        """Take one token if there is one."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class DuplicateFilter:
    """Remember the stored alarm for a (machine, code) key for `window_s` after it was stored.

    The window runs from the stored alarm, not from its latest repeat, so a machine that
    repeats an alarm forever still produces a fresh row (and a fresh answer) every window.
    """

    def __init__(self, window_s: float, clock: Clock = time.monotonic, max_keys: int = 16384) -> None:
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        # Insertion order is storage order on the monotonic clock, so the oldest entry is first.
        self._seen: OrderedDict[Hashable, tuple[int, float]] = OrderedDict()

    def existing(self, key: Hashable) -> int | None:
        """The id of the alarm this one repeats, or None when it must be stored as new."""
        if self.window_s <= 0:
            return None
        entry = self._seen.get(key)
        if entry is None:
            return None
        alarm_id, stored_at = entry
        if self.clock() - stored_at > self.window_s:
            del self._seen[key]
            return None
        return alarm_id

    def remember(self, key: Hashable, alarm_id: int) -> None:
        """Start the window for a newly stored alarm (beyond `max_keys`, the oldest are forgotten)."""
        if self.window_s <= 0:
            return
        now = self.clock()
        self._seen.pop(key, None)
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest[1] <= self.window_s and len(self._seen) < self.max_keys:
                break
            self._seen.popitem(last=False)
        self._seen[key] = (alarm_id, now)
