"""What `shifu serial` and `shifu intake` share: the alarm store, the optional engine, running until stopped."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from appliance.config import Settings


@contextmanager
def store_and_engine(config: Settings, no_answers: bool) -> Iterator[tuple[Any, Any]]:
    """The alarm store over the operational database and, unless `no_answers`, the engine; closed after."""
    from appliance import paths
    from appliance.serial.alarm_store import AlarmStore
    from appliance.store.opstore import OpStore

    paths.ensure_state()
    store = AlarmStore(OpStore(paths.ops_db()))
    engine: Any = None
    try:
        if not no_answers:
            from appliance.engine.factory import make_engine

            engine = make_engine(config)
        yield store, engine
    finally:
        if engine is not None:
            engine.close()
        store.opstore.close()


def run_until_stopped(start: Callable[[], None], stop: Callable[[], None], duration: float | None) -> None:
    """Start, then wait for SIGTERM, Ctrl+C or `duration` seconds; always stop."""
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        start()
        deadline = None if duration is None else time.monotonic() + duration
        while not stopped.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            stopped.wait(0.5 if left is None else min(0.5, left))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop()
