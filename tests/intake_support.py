"""What the intake tests share: the loopback servers of `bench.loopback` as fixtures, a store, `wait_for`.

`Broker` (a real Mosquitto) and `Controller` (a real asyncua server) live in bench/loopback.py,
so the intake benchmark drives exactly the servers the tests do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import paths
from appliance.serial.alarm_store import AlarmStore
from appliance.store.opstore import OpStore
from bench.loopback import Broker, Controller, free_port, publish_all, publisher
from tests.conftest import require_tool

__all__ = ["Broker", "Controller", "free_port", "publish_all", "publisher", "require_tool"]


def wait_for(check: Callable[[], Any], timeout: float = 40.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def store(home: Path) -> Iterator[AlarmStore]:
    """The operational database of `home`, as the intake writes it."""
    paths.ensure_state()
    s = AlarmStore(OpStore(paths.ops_db()))
    yield s
    s.opstore.close()


@pytest.fixture
def controller() -> Iterator[Controller]:
    c = Controller(free_port())
    c.start()
    yield c
    c.close()
