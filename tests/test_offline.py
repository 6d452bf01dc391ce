"""No network at run time: a real `shifu ask` answers inside a network namespace with no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

SHIFU = Path(sys.executable).parent / "shifu"

BLOCK_SOCKETS = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted at run time")
socket.socket.connect = refuse
socket.create_connection = refuse
from appliance.cli.main import main
sys.argv = ["shifu"] + sys.argv[1:]
main()
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFU_")}
    env.update({"SHIFU_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    return env


def test_answer_with_sockets_refused(kb_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_SOCKETS, "ask", "A03", "--machine", "CV-01", "--lang", "en", "--json"],
        capture_output=True, text=True, env=_env(kb_home), timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model_available"] is True and data["generated"]["steps"]
    assert "network access attempted" not in result.stderr


def test_answer_in_a_network_namespace(kb_home: Path) -> None:
    require_tool("unshare")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    result = subprocess.run(
        ["unshare", "-n", str(SHIFU), "ask", "E-203", "--machine", "IM-01", "--lang", "zh-TW", "--json"],
        capture_output=True, text=True, env=_env(kb_home), timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["code"]["code"] == "E-203" and data["model_available"] is True
