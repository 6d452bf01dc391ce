"""Network alarm intake: MQTT (JSON, Sparkplug B) messages/s and OPC UA events/s to committed rows, and latency.

Real servers on loopback (bench.loopback: Mosquitto, an asyncua server), the real inputs and the
operational SQLite database (synchronous=FULL) in a temporary SHIFU_HOME. Every message is a
distinct alarm, so a lost one shows as a missing row. Answers are off: this measures intake and
storage. The latency is from the publish / trigger call to the alarm being listed by
`LocalClient.alarms_since`, the call the kiosk polls every `kiosk.alarm_poll_s` (add up to that
interval for the screen; the target is <= 1 s).

    .venv/bin/python -m bench.intake_bench [--messages 10000] [--events 2000] [--latency 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.config import MqttBroker, OpcuaServer, load_settings
from appliance.engine.engine import Engine
from appliance.engine.local import LocalClient
from appliance.intake.intake import Intake
from appliance.intake.mqtt import MqttInput
from appliance.intake.opcua import OpcuaInput
from appliance.serial.alarm_store import AlarmStore
from appliance.store.opstore import OpStore
from bench.loopback import Broker, Controller, free_port, publish_all, publisher
from kb.versions import VersionStore


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def _metric(name: str, code: str) -> bytes:
    """A Sparkplug B Payload with one string metric (field numbers from the specification)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def length(number: int, data: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(data)) + data

    metric = length(1, name.encode()) + varint(4 << 3) + varint(12) + length(15, code.encode())
    return length(2, metric)


def bench_mqtt(store: AlarmStore, folder: Path, n: int, samples: int, client: LocalClient) -> dict[str, Any]:
    broker = Broker(folder / "broker")
    broker.start()
    settings = load_settings(serial={"duplicate_window_s": 30})
    subscriptions = [{"topic": "plant/+/alarm"},
                     {"topic": "spBv1.0/plant/+/edge1/#", "parser": "sparkplug", "metrics": {"Alarm/Code": ""}}]
    shifu = MqttInput(MqttBroker(host="127.0.0.1", port=broker.port, client_id="shifu-bench",
                                 subscriptions=subscriptions), Intake(settings, store)).start()
    gateway = publisher(broker.port)
    figures: dict[str, Any] = {}
    try:
        if not shifu.subscribed.wait(20):
            raise SystemExit("mqtt: not subscribed")
        for kind, make in (
            ("json", lambda i: ("plant/L1/alarm", json.dumps({"machine": f"CV-{i % 7}", "code": f"J{i}"}).encode())),
            ("sparkplug", lambda i: (f"spBv1.0/plant/DDATA/edge1/cnc{i % 7}", _metric("Alarm/Code", f"S{i}"))),
        ):
            before = store.count()
            started = time.monotonic()
            publish_all(gateway, [make(i) for i in range(n)])
            _wait(lambda before=before: store.count() >= before + n, 300, f"{n} {kind} rows")
            seconds = time.monotonic() - started
            figures[f"mqtt_{kind}_burst"] = {"messages": n, "seconds": round(seconds, 2),
                                             "per_s": round(n / seconds), "lost": before + n - store.count()}
        latencies = []
        for i in range(samples):
            last = store.opstore.rows("SELECT max(id) AS id FROM alarms")[0]["id"] or 0
            started = time.monotonic()
            publish_all(gateway, [("plant/L1/alarm", json.dumps({"machine": "CV-1", "code": f"L{i}"}).encode())])
            _wait(lambda last=last: bool(client.alarms_since(last, 5)), 10, "the alarm on the kiosk's list")
            latencies.append(time.monotonic() - started)
        figures["mqtt_to_kiosk_ms"] = _spread(latencies)
    finally:
        gateway.loop_stop()
        shifu.stop()
        broker.stop()
    return figures


def bench_opcua(store: AlarmStore, n: int, samples: int, client: LocalClient) -> dict[str, Any]:
    controller = Controller(free_port())
    controller.start()
    settings = load_settings(serial={"duplicate_window_s": 30})
    reader = OpcuaInput(OpcuaServer(endpoint=controller.endpoint, machine="MC-01"), Intake(settings, store))
    reader.start()
    figures: dict[str, Any] = {}
    try:
        if not reader.refreshed.wait(30):
            raise SystemExit(f"opcua: not connected: {reader.status.last_error}")
        before = store.count()
        started = time.monotonic()
        for i in range(n):
            controller.alert(f"E{i}")
        _wait(lambda: store.count() >= before + n, 300, f"{n} OPC UA rows")
        seconds = time.monotonic() - started
        figures["opcua_burst"] = {"events": n, "seconds": round(seconds, 2), "per_s": round(n / seconds),
                                  "lost": before + n - store.count()}
        latencies = []
        for i in range(samples):
            last = store.opstore.rows("SELECT max(id) AS id FROM alarms")[0]["id"] or 0
            started = time.monotonic()
            controller.alert(f"L{i}")
            _wait(lambda last=last: bool(client.alarms_since(last, 5)), 10, "the alarm on the kiosk's list")
            latencies.append(time.monotonic() - started)
        figures["opcua_to_kiosk_ms"] = _spread(latencies)
    finally:
        reader.stop()
        controller.close()
    return figures


def _spread(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"median": round(statistics.median(ms), 1), "max": round(ms[-1], 1), "samples": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="MQTT burst size, per payload kind")
    parser.add_argument("--events", type=int, default=2_000, help="OPC UA burst size")
    parser.add_argument("--latency", type=int, default=20, help="samples of event-to-kiosk latency, per input")
    args = parser.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="shifu-intake-bench-") as tmp:
        os.environ["SHIFU_HOME"] = tmp
        paths.ensure_state()
        store = AlarmStore(OpStore(paths.ops_db()))
        kiosk_db = OpStore(paths.ops_db())  # the kiosk's own connection, as in production
        client = LocalClient(Engine(load_settings(), VersionStore(paths.kb_dir()), opstore=kiosk_db))
        try:
            figures = bench_mqtt(store, Path(tmp), args.messages, args.latency, client)
            figures |= bench_opcua(store, args.events, args.latency, client)
        finally:
            kiosk_db.close()
            store.opstore.close()
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  " + ", ".join(f"{k} {v}" for k, v in value.items()))


if __name__ == "__main__":
    main()
