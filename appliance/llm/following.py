"""The backend a long-running process holds: it follows the registry's active pair.

A kiosk, `shifu serve` or `shifu serial` runs for months; a model or adapter imported by USB
(or `shifu model activate`) must reach it without a restart, as a KB switch does. Each answer
holds the model through `hold(backend)` for its whole generation; a switch is noticed when an
answer starts, waits until the answers in flight are done, closes the old pair (an 8 GB card
cannot hold two 7B instances), loads the new one and lets it generate a few tokens. When the
new pair fails to load or to generate, the previous pair is loaded again and the failure is
remembered (not retried for every answer) until the registry changes again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo, StreamStats
from appliance.llm.health import smoke_test
from kb.errors import ModelError, ShifuError

log = logging.getLogger(__name__)

# What should be loaded now: an identity (ids, paths and hashes of the pair) and how to build it.
Wanted = Callable[[], tuple[str, Callable[[], LLMBackend]]]


def _signature(path: Path | None) -> tuple[int, ...] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return ()
    # The registry is replaced by rename (new inode); ctime also catches an edit in place.
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


class FollowingBackend(LLMBackend):
    """An LLM backend that reloads when the wanted pair changes, between answers only."""

    name = "following"

    def __init__(self, wanted: Wanted, *, watch: Path | None = None, smoke: bool = True) -> None:
        self._wanted = wanted
        self._watch = watch  # the registry file: while it is unchanged, `wanted` is not asked again
        self._smoke = smoke
        self._seen: tuple[int, ...] | None | object = object()
        self._wanted_key = ""
        self._wanted_make: Callable[[], LLMBackend] | None = None
        self._key = ""  # what is loaded
        self._make: Callable[[], LLMBackend] | None = None
        self._current: LLMBackend | None = None
        self._failed_key = ""  # a switch that failed: not retried until the registry changes again
        self.switch_error = ""
        self.switches = 0
        self._holders = 0
        self._cond = threading.Condition()

    # -- what is wanted ----------------------------------------------------------------------
    def _refresh_wanted(self) -> None:
        signature = _signature(self._watch)
        if self._wanted_make is not None and signature == self._seen and self._watch is not None:
            return
        key, make = self._wanted()
        self._seen, self._wanted_key, self._wanted_make = signature, key, make

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> None:
        with self._cond:
            if self._current is not None:
                return
            self._refresh_wanted()
            assert self._wanted_make is not None
            backend = self._wanted_make()
            backend.load()
            self._current, self._key, self._make = backend, self._wanted_key, self._wanted_make

    def _switch(self) -> None:
        """Called with the condition held and no answer in flight."""
        old_key, old_make = self._key, self._make
        if self._current is not None:
            self._current.close()
            self._current = None
        assert self._wanted_make is not None
        new: LLMBackend | None = None
        try:
            new = self._wanted_make()
            new.load()
            if self._smoke:
                smoke_test(new)
        except ShifuError as error:
            if new is not None:
                new.close()
            self._failed_key = self._wanted_key
            self.switch_error = (f"the newly activated model could not be used and the previous one answers: {error}; "
                                 "see `shifu doctor` and `shifu model verify`")
            log.error(self.switch_error)
            if old_make is None:
                raise
            previous = old_make()
            previous.load()  # raises ModelError when even the previous pair cannot be loaded
            self._current, self._key, self._make = previous, old_key, old_make
            return
        self._current, self._key, self._make = new, self._wanted_key, self._wanted_make
        self._failed_key, self.switch_error = "", ""
        self.switches += 1
        log.info("model switched to %s", self._key)

    @contextmanager
    def hold(self) -> Iterator[LLMBackend]:
        """The pair that answers one question; a switch waits until every holder is done."""
        with self._cond:
            self._refresh_wanted()
            switch = self._wanted_key != self._key and self._wanted_key != self._failed_key
            if switch or self._current is None:
                while self._holders:
                    self._cond.wait()
                try:
                    if self._current is None and self._make is None:
                        self.load()
                    elif self._wanted_key != self._key and self._wanted_key != self._failed_key:
                        self._switch()
                    elif self._current is None:
                        self._reopen()
                except ShifuError as error:
                    self.switch_error = str(error)
            self._holders += 1
            current = self._current
        try:
            yield current if current is not None else _Broken(self.switch_error or "no model is loaded")
        finally:
            with self._cond:
                self._holders -= 1
                self._cond.notify_all()

    def _reopen(self) -> None:
        assert self._make is not None
        backend = self._make()
        backend.load()
        self._current = backend

    # -- the LLMBackend interface (for callers that do not hold: status lines, benchmarks) -----
    def info(self) -> ModelInfo:
        self.load()
        assert self._current is not None
        info = self._current.info()
        if self.switch_error:
            info.extra["switch_error"] = self.switch_error
        return info

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        with self.hold() as backend:
            yield from backend.stream(messages, options)

    def last_stats(self) -> StreamStats:
        current = self._current
        return current.last_stats() if current is not None else StreamStats()

    def close(self) -> None:
        with self._cond:
            if self._current is not None:
                self._current.close()
                self._current = None


class _Broken(LLMBackend):
    """What an answer holds when no pair could be loaded: every call says why."""

    name = "broken"

    def __init__(self, message: str) -> None:
        self.message = message

    def load(self) -> None:
        raise ModelError(self.message)

    def info(self) -> ModelInfo:
        raise ModelError(self.message)

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        raise ModelError(self.message)


@contextmanager
def hold(backend: LLMBackend) -> Iterator[LLMBackend]:
    """The backend one answer uses from start to end: a FollowingBackend's current pair (held, so a
    switch waits for this answer), any other backend as it is."""
    if isinstance(backend, FollowingBackend):
        with backend.hold() as pair:
            yield pair
    else:
        yield backend
