"""The technician PIN: a salted scrypt hash in the state directory, and the lockout rule.

The wall clock of the appliance cannot be trusted (no network time), so the lockout runs
on a monotonic clock. A restart therefore clears a lockout; restarting needs the power
switch or technician access, which is acceptable for a kiosk on the line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance import paths

SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PIN = 4
MAX_PIN = 64


def pin_file() -> Path:
    """Where the PIN hash lives (`$STATE/technician_pin.json`)."""
    return paths.state_dir() / "technician_pin.json"


def _derive(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def check_pin_format(pin: str) -> str | None:
    """A message saying what is wrong with a new PIN, or None when it is acceptable."""
    if not MIN_PIN <= len(pin) <= MAX_PIN:
        return f"the PIN must be {MIN_PIN} to {MAX_PIN} characters long"
    if not pin.isprintable() or pin != pin.strip():
        return "the PIN must be printable characters without leading or trailing spaces"
    return None


def set_pin(pin: str, path: Path | None = None) -> Path:
    """Store the salted hash of `pin` (owner-only file, replaced atomically); return the path."""
    problem = check_pin_format(pin)
    if problem:
        raise ValueError(problem)
    target = path or pin_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(16)
    record = {"algorithm": "scrypt", **SCRYPT, "salt": salt.hex(), "hash": _derive(pin, salt, **SCRYPT).hex()}
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def verify_pin(pin: str, path: Path | None = None) -> bool | None:
    """True when `pin` matches the stored hash, False when not, None when no PIN is set."""
    target = path or pin_file()
    try:
        record = json.loads(target.read_text())
        salt = bytes.fromhex(record["salt"])
        expected = bytes.fromhex(record["hash"])
        actual = _derive(pin, salt, int(record["n"]), int(record["r"]), int(record["p"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):
        return False  # a damaged PIN file locks technicians out rather than letting anyone in
    return hmac.compare_digest(actual, expected)


@dataclass
class PinGuard:
    """Counts wrong PINs; after `attempts` of them, refuses every PIN for `lockout_s` seconds."""

    attempts: int
    lockout_s: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    locked_until: float = field(default=0.0)

    def locked_for(self) -> int:
        """Seconds left in the lockout (0 when not locked)."""
        left = self.locked_until - self.clock()
        return max(0, int(left + 0.999))

    def check(self, pin: str, verify: Callable[[str], bool | None]) -> tuple[bool | None, int]:
        """(verify's result or False while locked, tries left before the lockout)."""
        if self.locked_for():
            return False, 0
        result = verify(pin)
        if result:
            self.failures = 0
        elif result is False:
            self.failures += 1
            if self.failures >= self.attempts:
                self.failures = 0
                self.locked_until = self.clock() + self.lockout_s
                return False, 0
        return result, self.attempts - self.failures
