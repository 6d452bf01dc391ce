"""What the status bar and the technician screen show besides the engine's own status: serial lines.

The engine's status (KB, vector index, model, database counts) is the client protocol's
`EngineStatus` (`appliance.engine.client`), re-exported here for the widgets; the serial
lines are this PC's own devices, so the kiosk looks at them itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from appliance.config import Settings
from appliance.engine.client import EngineStatus

__all__ = ["EngineStatus", "PortStatus", "serial_ports"]


@dataclass(frozen=True)
class PortStatus:
    device: str
    machine: str
    role: str
    present: bool


def serial_ports(settings: Settings) -> list[PortStatus]:
    """Configured serial lines and whether their device node exists right now."""
    return [PortStatus(p.device, p.machine, p.role, os.path.exists(p.device)) for p in settings.serial.ports]
