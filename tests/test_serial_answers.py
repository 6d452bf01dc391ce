"""Answers for alarms are prepared in the background, behind the operator, with the real engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from appliance import paths
from appliance.config import load_settings
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.service import SerialService
from appliance.serial_settings import PortSettings
from appliance.store.opstore import OpStore


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def start(engine: Any, **serial: Any) -> tuple[SerialService, AlarmStore]:
    store = AlarmStore(OpStore(paths.ops_db()))
    svc = SerialService(
        load_settings(serial=serial),
        store,
        engine=engine,
        write_status_file=False,
        ports=[PortSettings(device="loop://", parser="csv", name="belt")],
    )
    svc.start()
    assert svc.readers[0].connected.wait(10)
    return svc, store


@pytest.mark.slow  # one real generation: about 100 s on a 2-core CPU
def test_alarm_is_stored_at_once_and_answered_after_the_operator(engine: Any) -> None:
    svc, store = start(engine)
    try:
        with engine.gate.hold(0):  # the operator's question is being generated
            svc.readers[0].serial.write(b"CV-01,A01,DRIVE OVERLOAD\r\n")
            row = wait_for(lambda: store.alarms(), what="the stored alarm")[0]
            assert (row["code"], row["machine_id"], row["answer_status"]) == ("A01", "CV-01", "pending")
            # The alarm's answer waits at the gate, behind any operator question.
            wait_for(lambda: engine.gate.waiting() == 1, what="the background answer at the gate")
            assert engine.gate.waiting(max_priority=0) == 0
            time.sleep(0.3)
            assert store.alarm(row["id"])["answer_status"] == "pending"
        ready = wait_for(
            lambda: (a := store.alarm(row["id"])) and a["answer_status"] == "ready" and a,
            timeout=240,
            what="the prepared answer",
        )
    finally:
        svc.stop()
        store.opstore.close()
    audit = engine.opstore.rows("SELECT * FROM audit WHERE id = ?", [ready["audit_id"]])[0]
    assert (audit["source"], audit["code"], audit["machine_id"]) == ("serial", "A01", "CV-01")
    assert audit["model_available"] == 1  # generated, ready when the operator opens it


def test_flood_throttles_answers_never_storage(engine: Any) -> None:
    engine.settings.model.enabled = False  # steps 2-4 only: no generation in a flood test
    svc, store = start(engine, answers_per_minute=1, answer_burst=3)
    try:
        svc.readers[0].serial.write(b"".join(f"CV-0{i % 4 + 1},A0{i},flood {i}\r\n".encode() for i in range(200)))
        wait_for(lambda: store.count() == 200, what="every alarm stored")
        wait_for(
            lambda: svc.readers[0].status.counters["answers_ready"] == 3 and svc.answers_waiting() == 0,
            what="the answers inside the rate limit",
        )
        states = store.opstore.rows("SELECT answer_status, count(*) AS n FROM alarms GROUP BY answer_status")
        audits = engine.opstore.rows("SELECT source FROM audit")
    finally:
        svc.stop()
        store.opstore.close()
    assert {r["answer_status"]: r["n"] for r in states} == {"ready": 3, "throttled": 197}
    assert [a["source"] for a in audits] == ["serial"] * 3
    assert svc.readers[0].status.counters["throttled"] == 197
