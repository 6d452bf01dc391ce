"""shifu-intake.service: verified by systemd, hardened, and reaching only the configured endpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from appliance.cli.main import cli
from tests.conftest import require_tool

UNITS = Path(__file__).resolve().parent.parent / "systemd" / "units"


def test_ip_allow_names_exactly_the_configured_endpoints(home: Path) -> None:
    (home / "shifu.toml").write_text("""
[[opcua.servers]]
endpoint = "opc.tcp://10.0.0.5:4840"

[[opcua.servers]]
endpoint = "opc.tcp://10.0.0.6:4840/cnc"

[[mqtt.brokers]]
host = "127.0.0.1"

[[mqtt.brokers]]
host = "10.0.0.5"
port = 8883
""")
    result = CliRunner().invoke(cli, ["intake", "--ip-allow"])
    assert result.exit_code == 0, result.output
    allow = [line for line in result.output.splitlines() if line.startswith("IPAddressAllow=")]
    assert allow == ["IPAddressAllow=10.0.0.5 10.0.0.6 127.0.0.1"]
    assert "[Service]" in result.output


def test_unit_verifies_and_its_exposure(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    root = tmp_path / "root"
    (root / "etc/systemd/system/shifu-intake.service.d").mkdir(parents=True)
    shutil.copy(UNITS / "shifu-intake.service", root / "etc/systemd/system/")
    (root / "etc/systemd/system/shifu-intake.service.d/50-endpoints.conf").write_text(
        "[Service]\nIPAddressAllow=10.0.0.5 10.0.0.9\n")
    (root / "opt/shifu/bin").mkdir(parents=True)
    (root / "opt/shifu/bin/shifu").write_text("#!/bin/sh\n")
    os.chmod(root / "opt/shifu/bin/shifu", 0o755)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    verify = subprocess.run([analyze, "verify", f"--root={root}", "shifu-intake.service"], capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run([analyze, "security", "--offline=yes", f"--root={root}", "shifu-intake.service"],
                              capture_output=True, text=True, timeout=120)
    overall = next(line for line in security.stdout.splitlines() if "Overall exposure level" in line)
    print(overall)
    # IP sockets cost 0.8 over shifu-serial.service's 0.6 (no PrivateNetwork, AF_INET/AF_INET6, an allow list).
    assert float(overall.split(":")[1].split()[0]) <= 1.5, overall
    flagged = [line for line in security.stdout.splitlines() if line.startswith("✗")]
    assert not any("CapabilityBoundingSet" in line or "NoNewPrivileges" in line or "ProtectSystem" in line
                   for line in flagged), flagged
