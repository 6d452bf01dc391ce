"""systemd's notify protocol (READY=1, WATCHDOG=1) without a dependency.

A no-op when the process was not started by a unit with NotifyAccess (no NOTIFY_SOCKET).
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send one state line to systemd; True when it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Half the unit's WatchdogSec, in seconds, or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2_000_000
