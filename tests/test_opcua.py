"""OPC UA input against a real asyncua Server on 127.0.0.1 firing Alarms & Conditions events."""

from __future__ import annotations

import logging
from typing import Any

from asyncua import ua

from appliance.config import OpcuaServer, load_settings
from appliance.intake.intake import Intake
from appliance.intake.opcua import OpcuaInput, severity_band
from appliance.serial.alarm_store import AlarmStore
from tests.intake_support import Controller, controller, store, wait_for

__all__ = ["controller", "store"]  # fixtures

logging.getLogger("asyncua").setLevel(logging.ERROR)


def start_input(store: AlarmStore, endpoint: str, **server: Any) -> OpcuaInput:
    settings = load_settings(serial={"duplicate_window_s": 30})
    cfg = OpcuaServer(endpoint=endpoint, reconnect_min_s=0.2, reconnect_max_s=1.0, timeout_s=2.0, **server)
    reader = OpcuaInput(cfg, Intake(settings, store))
    reader.start()
    assert reader.refreshed.wait(20), reader.status.last_error
    return reader


def rows(store: AlarmStore) -> list[dict[str, Any]]:
    return store.opstore.rows("SELECT source, machine_id, code, message, status, repeats, payload, severity FROM alarms"
                              " ORDER BY id")


def test_severity_bands() -> None:
    assert [severity_band(v) for v in (1, 333, 334, 666, 667, 1000, 0, None)] == [
        "info", "info", "warning", "warning", "critical", "critical", "", ""]


def test_error_code_condition_name_machines_and_duplicates(controller: Controller, store: AlarmStore) -> None:
    reader = start_input(store, controller.endpoint, machine="MC-01", code_field="ConditionName",
                         machines={"Spindle-1": "CNC-7"})
    try:
        controller.alert("A01", source="Spindle-1", message="Drive overload")
        controller.alert("A01", source="Spindle-1")  # re-sent: counted on the row, not stored twice
        controller.alert("E-203", source="Unknown-axis")
        controller.alarm("P77")  # a plain AlarmConditionType: the code from ConditionName
        controller.alarm("P77", active=False, retain=False)  # going inactive: counted, not stored
        wait_for(lambda: reader.status.counters["messages"] == 5, what="five events")
        got = rows(store)
    finally:
        reader.stop()
    source = f"opcua:{controller.endpoint}"
    assert [(r["source"], r["machine_id"], r["code"], r["repeats"]) for r in got] == [
        (source, "CNC-7", "A01", 1), (source, "MC-01", "E-203", 0), (source, "MC-01", "P77", 0)]
    assert got[0]["message"] == "Drive overload"
    assert [r["severity"] for r in got] == ["critical", "critical", "warning"]  # 800, 800, 500
    assert reader.status.counters["cleared"] == 1 and reader.status.counters["repeats"] == 1


def test_condition_refresh_after_a_server_restart(controller: Controller, store: AlarmStore) -> None:
    reader = start_input(store, controller.endpoint, machine="MC-01", code_field="ConditionName")
    try:
        controller.alarm("P10")
        wait_for(lambda: len(rows(store)) == 1, what="the first alarm")
        controller.stop()
        wait_for(lambda: reader.status.state == "reconnecting", what="the loss noticed")
        controller.start()
        # Became active while Shifu was disconnected: only ConditionRefresh brings it.
        controller.alarm("P11")
        wait_for(lambda: reader.status.counters["reconnects"] >= 1 and reader.refreshed.is_set(), what="reconnect")
        wait_for(lambda: len(rows(store)) == 2, what="the refreshed alarm")
        controller.alarm("P11")  # live again after the refresh: a repeat, not a row
        wait_for(lambda: reader.status.counters["repeats"] >= 1, what="the repeat")
        got = rows(store)
    finally:
        reader.stop()
    assert [(r["code"], r["status"]) for r in got] == [("P10", "new"), ("P11", "new")]


def test_garbage_and_oversized_strings_are_kept_unparsed(controller: Controller, store: AlarmStore) -> None:
    reader = start_input(store, controller.endpoint, machine="MC-01")
    try:
        controller.alert("X" * 200_000)  # far longer than any code
        controller.alert("\x00\x01\ufffd!!")  # no letters or digits: not a code
        controller.alert("A02")  # and the input still works
        wait_for(lambda: len(rows(store)) == 3, what="three rows")
        got = rows(store)
    finally:
        reader.stop()
    assert [r["status"] for r in got] == ["unparsed", "unparsed", "new"]
    assert got[2]["code"] == "A02"
    assert len(got[0]["payload"]) <= 64 * 1024 and b"XXXX" in got[0]["payload"]


def test_code_from_a_message_through_pattern_and_inactive_alarms() -> None:
    from appliance.intake.opcua import to_alarm

    server = OpcuaServer(endpoint="opc.tcp://cnc:4840", machine="MC-01", code_field="Message",
                         pattern=r"(?P<code>E-\d+) on (?P<machine>[A-Z0-9-]+)")
    got = to_alarm(server, {"Message": ua.LocalizedText("Alarm E-203 on PRESS-4: heater"), "Severity": 700})
    assert got is not None and (got.code, got.machine_id, got.severity) == ("E-203", "PRESS-4", "critical")
    nothing = to_alarm(server, {"Message": ua.LocalizedText("all fine"), "Severity": 10})
    assert nothing is not None and nothing.status == "unparsed"
    assert to_alarm(server, {"Message": "E-1 on X", "ActiveState/Id": False}) is None
