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
        # No machine set: E-001 differs by model, so the kiosk asks; F7 (a real terminal's key) picks one.
        assert "機台: 未設定" in screen

        def keys(*names: str) -> None:
            subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "kiosk", *names], check=True)

        keys("E-001", "Enter")
        screen = _wait_for(socket, "請確認是哪一種機台", timeout=60)
        assert "F6 CV-200: E-001" in screen and "F7 IM-850: E-001" in screen and "IM-01, IM-02, IM-03" in screen
        keys("F7")
        _wait_for(socket, "確認安全門內、模具區與頂出側沒有人員或異物", timeout=60)  # the IM-850's row
        # An asset-tag scan sets the machine: the header says so and the answer follows it.
        keys("M:CV-02", "Enter")
        screen = _wait_for(socket, "排除危險狀況，確認輸送帶上與周圍沒有人", timeout=60)  # the CV-200's row
        assert "機台: CV-02 · CV-200 · L1" in screen and "安全門內" not in screen
        keys("A01", "Enter")
        screen = _wait_for(socket, "按停止鍵並確認輸送帶上無人作業", timeout=60)
        # Kiosk mode: Ctrl+C and Ctrl+Q leave the kiosk running.
        subprocess.run(["tmux", "-L", socket, "send-keys", "-t", "kiosk", "C-c", "C-q"], check=True)
        time.sleep(1.0)
        assert "驅動馬達過載" in _capture(socket)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False)
