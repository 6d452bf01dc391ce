"""Smoke test: the real `shifu kiosk` in tmux, a code typed with send-keys, the screen read back.

`make setup` installs tmux; without it the test skips (fails under CI=true). The model is switched off
(SHIFU_MODEL__ENABLED=false) so the test needs no generation; KB, retrieval and the
Textual app are the real ones, in a UTF-8 locale as on the appliance.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import require_tool

require_tool("tmux")

SHIFU = Path(sys.executable).parent / "shifu"


def _capture(socket: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, "capture-pane", "-p", "-t", "kiosk"], capture_output=True, text=True, check=False
    ).stdout


def _wait_for(socket: str, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(socket)
        if text in screen:
            return screen
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{screen}")


def test_kiosk_in_tmux_answers_a_typed_code(kb_home: Path) -> None:
    socket = f"shifu-test-{os.getpid()}"
    env = {
        "SHIFU_HOME": str(kb_home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SHIFU_MODEL__ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
    }
    command = " ".join(f"{k}={v}" for k, v in env.items()) + f" {SHIFU} kiosk --kiosk"
    subprocess.run(
        ["tmux", "-L", socket, "-u", "new-session", "-d", "-s", "kiosk", "-x", "100", "-y", "30", "env " + command],
        check=True,
    )
    try:
        _wait_for(socket, "v1", timeout=90)  # KB opened (status bar)
        subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "kiosk", "A01", "Enter"], check=True)
        screen = _wait_for(socket, "按停止鍵並確認輸送帶上無人作業", timeout=60)
        assert "A01" in screen and "驅動馬達過載" in screen
        # Kiosk mode: Ctrl+C and Ctrl+Q leave the kiosk running.
        subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "kiosk", "C-c", "C-q"], check=True)
        time.sleep(1.0)
        assert "驅動馬達過載" in _capture(socket)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False)
