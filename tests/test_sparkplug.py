"""Sparkplug B over a real Mosquitto broker: NDATA/DDATA and birth metrics named in `metrics` become alarms.

The edge node's payloads are written here byte by byte from the Sparkplug B field numbers (an
encoder independent of the generated module), so the decoder is checked against the wire format
itself, not against its own schema.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from appliance.config import MqttBroker, load_settings
from appliance.intake.intake import Intake
from appliance.intake.mqtt import MqttInput
from appliance.serial.alarm_store import AlarmStore
from tests.conftest import require_tool
from tests.intake_support import Broker, broker, publisher, store, wait_for

require_tool("mosquitto")
__all__ = ["broker", "store"]  # fixtures

SPARKPLUG_DIR = Path(__file__).resolve().parent.parent / "appliance" / "intake" / "sparkplug"


# -- a Sparkplug B encoder from the specification's field numbers ---------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len(number: int, data: bytes) -> bytes:
    return _key(number, 2) + _varint(len(data)) + data


def metric(name: str | None = None, alias: int | None = None, **value: Any) -> bytes:
    """Payload.Metric: name 1, alias 2, datatype 4, int_value 10, long 11, double 13, boolean 14, string 15."""
    out = b""
    if name is not None:
        out += _len(1, name.encode())
    if alias is not None:
        out += _key(2, 0) + _varint(alias)
    (kind, v), = value.items()
    if kind == "boolean":
        out += _key(4, 0) + _varint(11) + _key(14, 0) + _varint(int(v))
    elif kind == "int":
        out += _key(4, 0) + _varint(3) + _key(10, 0) + _varint(v)
    elif kind == "double":
        out += _key(4, 0) + _varint(10) + _key(13, 1) + struct.pack("<d", v)
    elif kind == "string":
        out += _key(4, 0) + _varint(12) + _len(15, v.encode())
    return out


def payload(seq: int, *metrics: bytes) -> bytes:
    """Payload: timestamp 1, metrics 2 (repeated), seq 3."""
    return _key(1, 0) + _varint(1_790_000_000_000 + seq) + b"".join(_len(2, m) for m in metrics) + \
        _key(3, 0) + _varint(seq)


SUBSCRIPTION = {
    "topic": "spBv1.0/plant1/#", "parser": "sparkplug", "machines": {"cnc7": "CNC-7"},
    "metrics": {"Alarms/Spindle Overload": "A01", "Alarms/Door": "E-203", "Alarms/Code": ""},
}


def test_sparkplug_metrics_become_alarms(broker: Broker, store: AlarmStore) -> None:
    settings = load_settings(serial={"duplicate_window_s": 30})
    cfg = MqttBroker(host="127.0.0.1", port=broker.port, client_id="shifu-spb", subscriptions=[SUBSCRIPTION])
    shifu = MqttInput(cfg, Intake(settings, store)).start()
    node = "spBv1.0/plant1/{}/edge1"
    device = "spBv1.0/plant1/{}/edge1/cnc7"
    messages = [
        (node.format("NBIRTH"), payload(0, metric("Alarms/Code", 1, string=""), metric("Temperature", 2, double=21.5))),
        # An alarm already active when the device is born is an alarm.
        (device.format("DBIRTH"), payload(1, metric("Alarms/Spindle Overload", 10, boolean=False),
                                          metric("Alarms/Door", 11, boolean=True))),
        # DATA by alias only (the alias named in the DBIRTH); alias 99 was never born: not guessed.
        (device.format("DDATA"), payload(2, metric(alias=10, boolean=True), metric(alias=99, int=5))),
        (node.format("NDATA"), payload(3, metric(alias=2, double=22.0))),  # telemetry: nothing
        (node.format("NDATA"), payload(4, metric("Alarms/Code", string="E-7"))),  # the value is the code
        (device.format("DDATA"), payload(5, metric(alias=10, boolean=False))),  # cleared: nothing stored
        (device.format("DDATA"), b"\x12\x05ab"),  # a metric 5 bytes long with 2 there: not a protobuf
        ("spBv1.0/STATE/scada", b'{"online": true}'),  # a host's STATE: no alarm
        (node.format("NDATA"), payload(6, metric("Alarms/Code", int=1234))),  # last: everything before is in
    ]
    gateway = publisher(broker.port)
    try:
        assert shifu.subscribed.wait(20)
        for topic, body in messages:  # Sparkplug publishes DATA and births with QoS 0
            gateway.publish(topic, body, qos=0).wait_for_publish(10)
        wait_for(lambda: store.opstore.rows("SELECT 1 FROM alarms WHERE code = '1234'"), what="the last alarm")
    finally:
        gateway.loop_stop()
        shifu.stop()
    rows = store.opstore.rows("SELECT source, machine_id, code, message, status, payload FROM alarms ORDER BY id")
    assert [(r["source"], r["machine_id"], r["code"], r["status"]) for r in rows] == [
        ("mqtt:spBv1.0/plant1/DBIRTH/edge1/cnc7", "CNC-7", "E-203", "new"),
        ("mqtt:spBv1.0/plant1/DDATA/edge1/cnc7", "CNC-7", "A01", "new"),
        ("mqtt:spBv1.0/plant1/NDATA/edge1", "edge1", "E-7", "new"),
        ("mqtt:spBv1.0/plant1/DDATA/edge1/cnc7", "CNC-7", "", "unparsed"),
        ("mqtt:spBv1.0/plant1/NDATA/edge1", "edge1", "1234", "new"),
    ]
    assert rows[1]["message"] == "Alarms/Spindle Overload"
    assert rows[3]["payload"] == b"\x12\x05ab"
    counters = shifu.status.counters
    # cleared: Alarms/Code "" and Spindle Overload false at birth, Spindle Overload false in DDATA
    assert counters["cleared"] == 3 and counters["unknown_alias"] == 1 and counters["unparsed"] == 1


def test_generated_module_matches_the_schema(tmp_path: Path) -> None:
    """sparkplug_b_pb2 is what protoc makes of sparkplug_b.proto today (`make proto` regenerates it)."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{SPARKPLUG_DIR}", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", str(SPARKPLUG_DIR / "sparkplug_b.proto")], check=True)
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        assert (tmp_path / name).read_text() == (SPARKPLUG_DIR / name).read_text(), f"{name}: run `make proto`"
