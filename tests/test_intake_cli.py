"""`shifu intake` runs a serial port, an MQTT broker and an OPC UA server in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from test_serial_pty import Pty

from appliance.cli.doctor import intake_checks
from appliance.cli.main import cli
from appliance.config import load_settings
from tests.intake_support import Broker, Controller, free_port, publish_all, publisher

SHIFU = str(Path(sys.executable).parent / "shifu")


def test_one_process_for_every_input(home: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    controller = Controller(free_port())
    controller.start()
    pty = Pty()
    (home / "shifu.toml").write_text(f"""
[serial]
status_interval_s = 0.2

[[serial.ports]]
device = "{pty.name}"
parser = "csv"
name = "line1"

[[mqtt.brokers]]
host = "127.0.0.1"
port = {broker.port}
client_id = "shifu-cli-test"

[[mqtt.brokers.subscriptions]]
topic = "plant/+/alarm"
code_field = "code"
machine_field = "machine"

[[opcua.servers]]
endpoint = "{controller.endpoint}"
machine = "MC-01"
reconnect_min_s = 0.2
""")
    proc = subprocess.Popen([SHIFU, "intake", "--no-answers", "--duration", "60"], env={**os.environ},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status = home / "intake_status.json"
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if status.exists():
                states = [i["state"] for i in json.loads(status.read_text())["inputs"]]
                if states == ["connected", "connected"]:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the inputs did not connect")
        time.sleep(0.5)
        pty.write(b"CV-01,A01,BELT\r\n")
        gateway = publisher(broker.port)
        publish_all(gateway, [("plant/L1/alarm", b'{"code": "A02", "machine": "CV-02"}')])
        gateway.loop_stop()
        controller.alert("A03", source="Spindle-1")
        runner = CliRunner()
        deadline = time.monotonic() + 20
        rows: list[dict[str, str]] = []
        while time.monotonic() < deadline and len(rows) < 3:
            rows = json.loads(runner.invoke(cli, ["alarms", "--json"]).output)
            time.sleep(0.2)
        # What `shifu doctor` says of the running intake: each connection, its last message and counts.
        deadline = time.monotonic() + 20
        doctor: list[tuple[str, bool, str]] = []
        while time.monotonic() < deadline and not all(ok and "1 alarms" in d for _, ok, d in doctor[:2] or [("", 0, "")]):
            doctor = intake_checks(load_settings())
            time.sleep(0.2)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        controller.close()
        broker.stop()
        pty.close()
    assert proc.returncode == 0, err
    got = sorted((r["source"], r["machine_id"], r["code"]) for r in rows)
    assert got == [
        ("mqtt:plant/L1/alarm", "CV-02", "A02"),
        (f"opcua:{controller.endpoint}", "MC-01", "A03"),
        ("serial:line1", "CV-01", "A01"),
    ]
    assert "A02" in out and "listening on serial line1, mqtt" in err
    assert [(name, ok) for name, ok, _ in doctor] == [("intake mqtt", True), ("intake opcua", True)]
    assert all("connected; last message" in d and "1 alarms, 0 repeats, 0 unparsed" in d for _, _, d in doctor)
