"""Input acceptance: what the engine refuses, with a clear message (exit code 2)."""

from __future__ import annotations

import unicodedata

from kb.errors import InputError


def clean_query(text: str, max_chars: int) -> str:
    """The query trimmed; InputError for empty, too long or control characters."""
    if text is None or not text.strip():
        raise InputError("empty query: scan or type an error code, or describe the problem")
    stripped = text.strip()
    if len(stripped) > max_chars:
        raise InputError(f"query too long ({len(stripped)} characters, at most {max_chars}); shorten it")
    for ch in stripped:
        if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"} and ch not in "\t":
            raise InputError(
                f"query contains a control character (U+{ord(ch):04X}); type the code again or check the scanner"
            )
    return " ".join(stripped.split())
