"""Bytes from a serial line -> bounded, decoded text lines.

A line ends at LF or CR (Grbl sends CR LF, some machines only CR); empty lines are
skipped. A line longer than `max_bytes` is cut: its first `max_bytes` are handed on
marked `cut` (the caller counts it as garbage) and the rest is dropped up to the next
end of line, so memory stays bounded whatever a broken device sends.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

_TERMINATORS = bytes.maketrans(b"\r", b"\n")


@dataclass(frozen=True)
class Line:
    """One line as received."""

    text: str
    raw: bytes
    cut: bool = False
    invalid_bytes: int = 0


class LineFramer:
    """Incremental splitter; feed it whatever `read()` returned."""

    def __init__(self, max_bytes: int, encoding: str = "utf-8") -> None:
        codecs.lookup(encoding)  # fail at start, not on the first line
        self.max_bytes = max_bytes
        self.encoding = encoding
        self._utf8 = codecs.lookup(encoding).name == "utf-8"
        self._buf = bytearray()
        self._discarding = False
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> list[Line]:
        lines: list[Line] = []
        parts = data.translate(_TERMINATORS).split(b"\n")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if self._discarding:
                self.dropped_bytes += len(part)
            else:
                self._buf += part
                if len(self._buf) > self.max_bytes:
                    lines.append(self._decode(bytes(self._buf[: self.max_bytes]), cut=True))
                    self.dropped_bytes += len(self._buf) - self.max_bytes
                    self._buf.clear()
                    self._discarding = True
            if last:
                break
            # An end of line: finish the current line.
            if self._discarding:
                self._discarding = False
            elif self._buf:
                lines.append(self._decode(bytes(self._buf)))
                self._buf.clear()
        return lines

    def reset(self) -> bytes:
        """Forget a partial line (the device went away); return what was pending."""
        pending = bytes(self._buf)
        self._buf.clear()
        self._discarding = False
        return pending

    def _decode(self, raw: bytes, *, cut: bool = False) -> Line:
        try:
            return Line(raw.decode(self.encoding), raw, cut)
        except UnicodeDecodeError:
            text = raw.decode(self.encoding, errors="replace")
            # Genuine U+FFFD characters in the input are not invalid bytes.
            genuine = raw.count("\ufffd".encode()) if self._utf8 else 0
            return Line(text, raw, cut, max(1, text.count("\ufffd") - genuine))
