"""Best-effort parsing of a JSON object that is still streaming (or was cut short)."""

from __future__ import annotations

import json
from typing import Any

_CLOSE = {"{": "}", "[": "]"}


def complete_json(text: str) -> Any | None:
    """Parse `text`, closing open strings, arrays and objects; None when nothing usable."""
    stack: list[str] = []
    in_string = False
    escaped = False
    cuts: list[tuple[int, str]] = []  # (position of a comma outside strings, closers at that point)
    for pos, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == ",":
            cuts.append((pos, "".join(reversed(stack))))
    tail = text
    if in_string:
        tail += "\\" if escaped else ""
        tail = tail[:-1] if escaped else tail
        tail += '"'
    attempts = [tail + "".join(reversed(stack))]
    attempts.extend(text[:pos] + closers for pos, closers in reversed(cuts[-3:]))
    for attempt in attempts:
        try:
            return json.loads(attempt, strict=False)
        except ValueError:
            continue
    return None


def completed_prefix(text: str) -> str:
    """`text` cut after the last string, array or object that was closed.

    What a streaming (or cut short) answer holds for certain: a string still being
    written is left out entirely, so no half sentence or half URL is ever parsed.
    """
    in_string = False
    escaped = False
    cut = 0
    for pos, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                cut = pos + 1
            continue
        if ch == '"':
            in_string = True
        elif ch in "}]":
            cut = pos + 1
    return text[:cut]
