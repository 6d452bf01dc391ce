"""What the operator typed or scanned: strip scanner framing, recognise badges and asset tags.

Barcode scanners act as keyboards: a burst of characters plus Enter. Many are configured to
send a printable prefix and suffix around the code (for example `]C1` ... `#`) so that a scan
can be told apart from typing; those are stripped here. Control characters are not used as
framing because the terminal turns them into key presses, not text.

Two kinds of line are not questions: an operator badge (`OP:1234`) signs an operator in, and
a machine's asset tag (`M:CV-01`) tells the kiosk which machine it is asking about.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One submitted line: the query text, whether it was a scan, and a badge or asset tag if it was one."""

    text: str
    scanned: bool = False
    operator: str | None = None
    machine: str | None = None
    """The machine id of an asset tag (`M:CV-01` gives `CV-01`; a bare `M:` gives "", no machine)."""


def read_entry(
    raw: str, *, prefix: str = "", suffix: str = "", operator_prefix: str = "OP:", machine_prefix: str = "M:"
) -> Entry:
    """Strip the scanner prefix/suffix and recognise `OP:1234` badges and `M:CV-01` asset tags."""
    text = raw.strip()
    scanned = False
    if prefix and text.startswith(prefix):
        text, scanned = text[len(prefix) :], True
    if suffix and text.endswith(suffix):
        text, scanned = text[: -len(suffix)], True
    text = text.strip()
    if operator_prefix and text.upper().startswith(operator_prefix.upper()):
        return Entry(text="", scanned=scanned, operator=text[len(operator_prefix) :].strip())
    if machine_prefix and text.upper().startswith(machine_prefix.upper()):
        return Entry(text="", scanned=scanned, machine=text[len(machine_prefix) :].strip())
    return Entry(text=text, scanned=scanned)
