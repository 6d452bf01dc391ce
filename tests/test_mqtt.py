"""MQTT input against a real Mosquitto broker on a free loopback port: nothing valid is lost."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from appliance import paths
from appliance.config import MqttBroker, load_settings
from appliance.intake.intake import Intake
from appliance.intake.mqtt import MqttInput
from appliance.serial.alarm_store import AlarmStore
from appliance.store.opstore import OpStore
from tests.conftest import require_tool
from tests.intake_support import Broker, broker, publish_all, publisher, store, wait_for

require_tool("mosquitto")
__all__ = ["broker", "store"]  # fixtures



SUBSCRIPTIONS = [
    {"topic": "plant/+/alarm", "parser": "json", "code_field": "alarm.code", "machine_field": "machine",
     "message_field": "alarm.text"},
    {"topic": "line2/text", "parser": "regex", "machine": "L2",
     "pattern": r"(?P<machine>[A-Z0-9-]+) ALARM (?P<code>[A-Z]\d+)(?: (?P<message>.*))?"},
]


def make_input(store: AlarmStore, port: int, **broker: Any) -> MqttInput:
    settings = load_settings(serial={"duplicate_window_s": 30})
    intake = Intake(settings, store)
    cfg = MqttBroker(host="127.0.0.1", port=port, client_id="shifu-test", subscriptions=SUBSCRIPTIONS,
                     reconnect_min_s=1, reconnect_max_s=1, **broker)
    return MqttInput(cfg, intake).start()


def by_source(store: AlarmStore) -> list[tuple[str, str, str, str, str]]:
    rows = store.opstore.rows("SELECT source, machine_id, code, message, status FROM alarms ORDER BY id")
    return [(r["source"], r["machine_id"], r["code"], r["message"], r["status"]) for r in rows]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_json_regex_and_malformed_payloads(broker: Broker, store: AlarmStore, protocol: str) -> None:
    shifu = make_input(store, broker.port, protocol=protocol)
    gateway = publisher(broker.port)
    try:
        assert shifu.subscribed.wait(20)
        garbage = b"\xff\xfe{" + bytes(range(256)) * 400  # not UTF-8, and 100 KiB
        publish_all(gateway, [
            ("plant/L1/alarm", json.dumps({"machine": "CV-01", "alarm": {"code": "A01", "text": "DRIVE OVERLOAD"}})
             .encode()),
            ("line2/text", b"PR-7 ALARM E203 heater"),
            ("plant/L1/alarm", b"{not json"),
            ("plant/L1/alarm", json.dumps({"machine": "CV-01", "alarm": {"text": "no code"}}).encode()),
            ("line2/text", b"hello"),
            ("plant/L3/alarm", garbage),
        ])
        wait_for(lambda: store.count() == 6, what="six rows")
    finally:
        gateway.loop_stop()
        shifu.stop()
    rows = by_source(store)
    assert rows[:2] == [
        ("mqtt:plant/L1/alarm", "CV-01", "A01", "DRIVE OVERLOAD", "new"),
        ("mqtt:line2/text", "PR-7", "E203", "heater", "new"),
    ]
    assert [r[4] for r in rows[2:]] == ["unparsed"] * 4
    payloads = store.opstore.rows("SELECT payload FROM alarms WHERE status = 'unparsed' ORDER BY id")
    assert payloads[0]["payload"] == b"{not json"
    assert payloads[3]["payload"] == garbage[: 64 * 1024]
    assert shifu.status.counters["unparsed"] == 4 and shifu.status.counters["alarms"] == 2


def test_offline_backlog_broker_restart_and_redelivery(broker: Broker, store: AlarmStore) -> None:
    shifu = make_input(store, broker.port)
    assert shifu.subscribed.wait(20)
    shifu.stop()  # the broker keeps the session: messages for Shifu are queued
    gateway = publisher(broker.port)
    publish_all(gateway, [("plant/L1/alarm", json.dumps({"machine": f"M{i}", "alarm": {"code": "A01"}}).encode())
                          for i in range(50)])
    gateway.loop_stop()
    shifu = make_input(store, broker.port)
    try:
        wait_for(lambda: store.count() == 50, what="the 50 messages published while Shifu was away")
        broker.stop()
        wait_for(lambda: shifu.status.state == "reconnecting", what="the loss noticed")
        broker.start()
        wait_for(lambda: shifu.status.counters["reconnects"] >= 1 and shifu.subscribed.is_set(), what="reconnect")
        gateway = publisher(broker.port)
        same = json.dumps({"machine": "M1", "alarm": {"code": "B02", "seq": 1}}).encode()
        publish_all(gateway, [("plant/L1/alarm", same), ("plant/L1/alarm", same)])  # the second: a redelivery
        gateway.loop_stop()
        # The second copy, and any backlog message whose PUBACK the stopped broker never got, come again:
        # counted as redeliveries, never as rows.
        wait_for(lambda: store.count() == 51 and shifu.status.counters["redelivered"] >= 1, what="the redelivery")
        time.sleep(0.5)
    finally:
        shifu.stop()
    rows = by_source(store)
    assert len(rows) == 51 and rows[-1][:3] == ("mqtt:plant/L1/alarm", "M1", "B02")
    assert sorted(r[1] for r in rows[:50]) == sorted(f"M{i}" for i in range(50))
    assert store.opstore.rows("SELECT repeats FROM alarms ORDER BY id DESC LIMIT 1")[0]["repeats"] == 0


def test_burst_of_10000_messages_loses_no_alarm(broker: Broker, store: AlarmStore) -> None:
    shifu = make_input(store, broker.port)
    gateway = publisher(broker.port)
    n = 10_000
    try:
        assert shifu.subscribed.wait(20)
        started = time.monotonic()
        publish_all(gateway, [
            ("plant/L1/alarm", json.dumps({"machine": f"CV-{i % 7}", "alarm": {"code": f"A{i}"}}).encode())
            for i in range(n)
        ])
        print(f"published in {time.monotonic() - started:.2f} s; stored so far {store.count()}")
        wait_for(lambda: store.count() == n, timeout=120, what=f"{n} rows")
        seconds = time.monotonic() - started
    finally:
        gateway.loop_stop()
        shifu.stop()
    codes = {r["code"] for r in store.opstore.rows("SELECT code FROM alarms")}
    assert codes == {f"A{i}" for i in range(n)}
    print(f"mqtt burst: {n} messages to committed rows in {seconds:.2f} s ({n / seconds:.0f}/s)")


def test_shifu_killed_with_messages_in_flight_loses_and_doubles_nothing(
    broker: Broker, home: Path, tmp_path: Path
) -> None:
    import signal
    import sys

    (home / "shifu.toml").write_text(f"""
[[mqtt.brokers]]
host = "127.0.0.1"
port = {broker.port}
client_id = "shifu-killed"
batch = 50

[[mqtt.brokers.subscriptions]]
topic = "plant/+/alarm"
""")
    shifu = [str(Path(sys.executable).parent / "shifu"), "intake", "--no-answers"]
    proc = subprocess.Popen(shifu, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = home / "intake_status.json"
    wait_for(lambda: status.exists() and json.loads(status.read_text())["inputs"][0]["state"] == "connected",
             what="shifu intake connected")
    time.sleep(0.5)
    n = 3000
    gateway = publisher(broker.port)
    infos = [gateway.publish("plant/L1/alarm", json.dumps({"machine": "CV-01", "code": f"A{i}"}), qos=1)
             for i in range(n)]
    paths.ensure_state()
    opstore = OpStore(paths.ops_db())
    try:
        wait_for(lambda: opstore.counts()["alarms"] >= 500, what="the first rows")
        # Hold the database so that messages keep arriving but cannot be committed, then kill:
        # whatever Shifu had received and not stored must come again from the broker.
        blocker = sqlite3.connect(paths.ops_db(), timeout=10)
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        blocker.rollback()
        blocker.close()
        killed_at = opstore.counts()["alarms"]
        for info in infos:
            info.wait_for_publish(30)
        gateway.loop_stop()
        proc = subprocess.Popen(shifu, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: opstore.counts()["alarms"] >= n, timeout=60, what="every alarm after the restart")
        time.sleep(1.0)  # anything redelivered late would show now
        codes = [r["code"] for r in opstore.rows("SELECT code FROM alarms")]
    finally:
        proc.terminate()
        proc.wait(20)
        opstore.close()
    assert killed_at < n
    assert len(codes) == n and set(codes) == {f"A{i}" for i in range(n)}  # 0 lost, 0 duplicated rows
