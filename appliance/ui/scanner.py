"""What the operator typed or scanned: strip scanner framing, recognise operator badges.

Barcode scanners act as keyboards: a burst of characters plus Enter. Many are configured to
send a printable prefix and suffix around the code (for example `]C1` ... `#`) so that a scan
can be told apart from typing; those are stripped here. Control characters are not used as
framing because the terminal turns them into key presses, not text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One submitted line: the query text, whether it was a scan, and an operator badge if it was one."""

    text: str
    scanned: bool = False
    operator: str | None = None


def read_entry(raw: str, *, prefix: str = "", suffix: str = "", operator_prefix: str = "OP:") -> Entry:
    """Strip the scanner prefix/suffix and recognise `OP:1234`-style operator badges."""
    text = raw.strip()
    scanned = False
    if prefix and text.startswith(prefix):
        text, scanned = text[len(prefix) :], True
    if suffix and text.endswith(suffix):
        text, scanned = text[: -len(suffix)], True
    text = text.strip()
    if operator_prefix and text.upper().startswith(operator_prefix.upper()):
        return Entry(text="", scanned=scanned, operator=text[len(operator_prefix) :].strip())
    return Entry(text=text, scanned=scanned)
