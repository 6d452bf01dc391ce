"""Done-when of issue 17: an OPC UA alarm whose ErrorCode is a sample KB code appears on the running kiosk, and
opening it shows that code's standard procedure.

Everything is real and separate, as on the appliance: an asyncua server on 127.0.0.1 firing a
Machine Tools AlertType, `shifu intake` (its own process) storing the alarm, and `shifu kiosk`
in tmux (its own process) polling the operational database through its client. The model is off
(the standard procedure needs none). The wait is up to 30 s; the latency itself is a bench figure
(bench/intake_bench.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import require_tool
from tests.intake_support import Controller, free_port

require_tool("tmux")
logging.getLogger("asyncua").setLevel(logging.ERROR)

SHIFU = Path(sys.executable).parent / "shifu"
PROCEDURE = "按停止鍵並確認輸送帶上無人作業"  # the sample KB's first step for A01


def _screen(socket: str) -> str:
    return subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", "kiosk"], capture_output=True,
                          text=True, check=False).stdout


def _wait(socket: str, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(socket)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not on screen after {timeout} s:\n{screen}")


def test_an_opcua_alarm_reaches_the_running_kiosk_with_its_procedure(kb_home: Path) -> None:
    controller = Controller(free_port())
    controller.start()
    (kb_home / "shifu.toml").write_text(f"""
[serial]
status_interval_s = 0.2

[[opcua.servers]]
endpoint = "{controller.endpoint}"
machine = "MC-01"
reconnect_min_s = 0.2
""")
    env = {**os.environ, "SHIFU_HOME": str(kb_home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "SHIFU_MODEL__ENABLED": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ANONYMIZED_TELEMETRY": "False"}
    log = (kb_home / "intake.log").open("w")
    intake = subprocess.Popen([str(SHIFU), "intake", "--no-answers"], env=env, stdout=log, stderr=subprocess.STDOUT)
    socket = f"shifu-intake-test-{os.getpid()}"
    kiosk_env = " ".join(f"{k}={env[k]}" for k in ("SHIFU_HOME", "LANG", "LC_ALL", "SHIFU_MODEL__ENABLED",
                                                     "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ANONYMIZED_TELEMETRY"))
    subprocess.run(["tmux", "-L", socket, "-u", "new-session", "-d", "-s", "kiosk", "-x", "110", "-y", "32",
                    f"env {kiosk_env} {SHIFU} kiosk --kiosk"], check=True)
    try:
        status = kb_home / "intake_status.json"
        deadline = time.monotonic() + 90
        while not (status.exists() and json.loads(status.read_text())["inputs"][0]["state"] == "connected"):
            assert intake.poll() is None, (kb_home / "intake.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "shifu intake did not connect to the OPC UA server:\n" + (
                status.read_text() if status.exists() else "(no status file)") + (kb_home / "intake.log").read_text()[-3000:]
            time.sleep(0.1)
        _wait(socket, "v1", timeout=90)  # the kiosk is up (KB version in the status bar)
        assert "MC-01" not in _screen(socket)
        controller.alert("A01", source="Spindle-1", message="DRIVE OVERLOAD")
        _wait(socket, "MC-01", timeout=30)  # the alarm is listed on the running kiosk
        # Down to the alarm list, Enter opens it. An Enter right behind the arrow's escape sequence can be
        # read before the list has focus, so the pair is sent again until the answer is shown.
        deadline = time.monotonic() + 30
        screen = ""
        while PROCEDURE not in screen:
            assert time.monotonic() < deadline, f"{PROCEDURE!r} not on screen after 30 s:\n{screen}"
            subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "kiosk", "Down"], check=True)
            time.sleep(0.5)
            subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "kiosk", "Enter"], check=True)
            try:
                screen = _wait(socket, PROCEDURE, timeout=3)
            except AssertionError:
                screen = _screen(socket)
        assert "A01" in screen and "驅動馬達過載" in screen
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False)
        intake.terminate()
        intake.wait(20)
        log.close()
        controller.close()
