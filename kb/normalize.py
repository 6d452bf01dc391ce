"""Code normalisation: what an operator types or a machine prints -> the lookup key.

`Ｅ－２０３`, `e 203`, `E_203` and `E-203` all become `E203`; `error:9` becomes `ERROR9`.
NFKC folds full-width forms, then everything that is not a letter or digit is dropped.
A table's code prefix (from its mapping, e.g. Grbl's `error:`) is part of the key, so
`error:9` and `ALARM:9` stay apart although both tables number from 1.
"""

from __future__ import annotations

import re
import unicodedata

_CODE_SHAPE = re.compile(r"^[A-Z]{0,8}[0-9]{1,6}[A-Z]{0,3}[0-9]{0,3}$")
MAX_CODE_CHARS = 24


def code_key(text: str) -> str:
    """Return the normalised lookup key of a code (may be empty)."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in folded if ch.isalnum())


def looks_like_code(text: str) -> bool:
    """True when the text has the shape of an error code rather than a symptom.

    Short, at most two words, contains a digit, and its key is letters-then-digits.
    """
    stripped = unicodedata.normalize("NFKC", text).strip()
    if not stripped or len(stripped) > MAX_CODE_CHARS or len(stripped.split()) > 2:
        return False
    key = code_key(stripped)
    return bool(key) and key.isascii() and bool(_CODE_SHAPE.match(key))


def normalize_text(text: str) -> str:
    """NFKC and collapsed whitespace, for free text (symptoms, search queries)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())
