"""The store-first intake: every input's alarms land as rows with their source, once."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from appliance import paths
from appliance.cli.main import cli
from appliance.config import load_settings
from appliance.intake.intake import Intake
from appliance.intake.message import MAX_PAYLOAD_BYTES, AlarmIn, unparsed
from appliance.serial.alarm_store import AlarmStore
from appliance.store import opstore as opstore_module
from appliance.store.opstore import OpStore
from kb.store.migrate import connect, migrate


def make(home: Path, window: float = 30.0) -> tuple[Intake, AlarmStore]:
    paths.ensure_state()
    store = AlarmStore(OpStore(paths.ops_db()))
    return Intake(load_settings(serial={"duplicate_window_s": window}), store), store


def alarm(source: str, code: str, machine: str = "M1", key: str = "") -> AlarmIn:
    return AlarmIn(source=source, machine_id=machine, code=code, normalized=code.upper(), raw=code, message_key=key)


def test_sources_repeats_and_redeliveries(home: Path) -> None:
    intake, store = make(home)
    try:
        first = intake.submit([alarm("mqtt:plant/L1/alarm", "A01", key="k1"), alarm("opcua:opc.tcp://x:4840", "A01")])
        # the same machine and code from the same source: counted; from another source: its own row
        again = intake.submit([alarm("mqtt:plant/L1/alarm", "A01", key="k2"), alarm("http", "A01")])
        # the same MQTT message redelivered: nothing written, not even a repeat
        redelivered = intake.submit([alarm("mqtt:plant/L1/alarm", "A01", key="k1")])
        rows = {r["id"]: r for r in store.alarms()}
    finally:
        store.opstore.close()
    assert [s.repeat for s in first] == [False, False] and again[0].repeat and not again[1].repeat
    assert redelivered[0].redelivered and redelivered[0].id == first[0].id
    assert len(rows) == 3
    assert sorted(r["source"] for r in rows.values()) == ["http", "mqtt:plant/L1/alarm", "opcua:opc.tcp://x:4840"]
    assert rows[first[0].id]["repeats"] == 1


def test_redelivery_after_a_restart_adds_no_row(home: Path) -> None:
    intake, store = make(home)
    intake.submit([alarm("mqtt:t", "A01", key="same-message")])
    store.opstore.close()
    intake, store = make(home)  # a new process: its in-memory window is empty
    try:
        again = intake.submit([alarm("mqtt:t", "A01", key="same-message"), alarm("mqtt:t", "A02", key="other")])
        count = store.count()
    finally:
        store.opstore.close()
    assert again[0].redelivered and not again[1].redelivered
    assert count == 2


def test_unparsed_payload_is_kept_capped_and_never_answered(home: Path) -> None:
    intake, store = make(home)
    garbage = b"\xff\x00{not json" + b"x" * (100 * 1024)
    try:
        stored = intake.submit([unparsed("mqtt:plant/L1/alarm", garbage), unparsed("mqtt:plant/L1/alarm", b"\xfe")])
        row = store.alarm(stored[0].id)
    finally:
        store.opstore.close()
    assert row is not None
    assert [s.repeat for s in stored] == [False, False]  # two unreadable messages are two rows
    assert row["status"] == "unparsed" and row["answer_status"] is None
    assert row["payload"] == garbage[:MAX_PAYLOAD_BYTES]


def test_old_rows_migrate_to_a_source_and_alarms_json_shows_it(home: Path) -> None:
    paths.ensure_state()
    db = connect(paths.ops_db(), synchronous="FULL")
    migrate(db, [opstore_module.m001_initial, opstore_module.m002_feedback_alarm])  # a database from before
    for port in ("/dev/ttyUSB0", "http"):
        db.execute("INSERT INTO alarms (received, port, machine_id, raw, code, normalized, message)"
                   " VALUES (1, ?, 'CV-01', 'A01', 'A01', 'A01', '')", [port])
    db.conn.commit()
    db.conn.close()
    intake, store = make(home)
    try:
        intake.submit([unparsed("mqtt:plant/L2/alarm", b"\x00\x01")])
    finally:
        store.opstore.close()
    result = CliRunner().invoke(cli, ["alarms", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["source"] for r in rows] == ["mqtt:plant/L2/alarm", "http", "serial:/dev/ttyUSB0"]
    assert base64.b64decode(rows[0]["payload"]) == b"\x00\x01"
