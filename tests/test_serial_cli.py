"""`shifu serial` as its own service (subprocess, real pty) and `shifu alarms`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

from click.testing import CliRunner

from appliance import paths
from appliance.cli.main import cli
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.status import read_status
from appliance.store.opstore import OpStore


def test_serial_service_and_alarms_command(home: Path, tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "usb-belt"
    link.symlink_to(os.ttyname(slave))
    env = {**os.environ, "SHIFU_HOME": str(home), "SHIFU_SERIAL__STATUS_INTERVAL_S": "0.2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance.cli.main",
            "serial",
            "--port",
            str(link),
            "--preset",
            "csv",
            "--no-answers",
            "--duration",
            "60",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = read_status(home / "serial_status.json")
            if status and status["ports"][0]["state"] == "connected":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the service never connected: " + (proc.stderr.read() if proc.poll() else ""))
        os.write(master, b"M3,A01,BELT TENSION\r\nnoise\r\nCV-01,A02,TRACKING\r\nM3,A01,BELT TENSION\r\n")
        paths.ensure_state()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = read_status(home / "serial_status.json")
            if status and status["ports"][0]["counters"]["lines"] == 4:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, err
    assert "#1 " in out and "A01" in out and "repeated" in out
    counters = status["ports"][0]["counters"]
    assert (counters["alarms"], counters["repeats"], counters["garbage"]) == (2, 1, 1)

    result = CliRunner().invoke(cli, ["alarms", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["machine_id"], r["code"], r["repeats"]) for r in rows] == [("CV-01", "A02", 0), ("M3", "A01", 1)]
    assert rows[1]["message"] == "BELT TENSION" and rows[1]["port"] == str(link)

    limited = CliRunner().invoke(cli, ["alarms", "--limit", "1"])
    assert limited.exit_code == 0 and "A02" in limited.output and "A01" not in limited.output


def test_alarms_command_when_empty_and_scans_for_the_kiosk(home: Path) -> None:
    result = CliRunner().invoke(cli, ["alarms"])
    assert result.exit_code == 0 and "no alarms" in result.output
    assert json.loads(CliRunner().invoke(cli, ["alarms", "--json"]).output) == []
    store = AlarmStore(OpStore(paths.ops_db()))
    with store.batch() as batch:
        batch.scan("scanner", "", "E-203")
    assert [r["text"] for r in store.take_scans()] == ["E-203"]
    store.opstore.close()


def test_serial_without_ports_is_a_usage_error(home: Path) -> None:
    result = CliRunner().invoke(cli, ["serial", "--no-answers", "--duration", "0"])
    assert result.exit_code == 1 and "no serial ports" in result.output
    bad = CliRunner().invoke(cli, ["serial", "--port", "loop://", "--preset", "(x", "--no-answers", "--duration", "0"])
    assert bad.exit_code == 1 and "regular expression" in bad.output
