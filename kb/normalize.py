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


# A code as machines, scanners and people write it: an optional letter prefix, a separator,
# digits, perhaps a letter suffix ("A01", "E-203", "error:9", "ALARM:1", "AL-1001", "13101").
_CODE_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{0,8}\s?[-_:]?\s?[0-9]{1,6}[A-Za-z]?(?![A-Za-z0-9])")
_LEADING_WORD = re.compile(r"^[A-Za-z]+\s?[-_:]?\s?")
# URLs and QR payloads: with a scheme (any host), or without one when the host has a dot and a
# path follows ("vendor.io/13101"). The host never holds the code; the path (then the query) may.
_URL = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]*|(?<![\w.])(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?::[0-9]+)?(?=/))[^\s]*"
)


def extract_codes(text: str, known: frozenset[str] | set[str]) -> list[str]:
    """Known codes in an entry, as written and once each, in the order they appear.

    Finds codes in sentences ("What does A02 mean?", "錯誤碼 E203", "Error 13101"), after `#`,
    in URLs and QR payloads with or without a scheme (`https://host/path/E-203?x=1`,
    `vendor.io/13101`) and before a machine's own message (`ALARM:1 [Hard limit]`). Only keys
    in `known` count, so numbers in a symptom ("20 degrees") are not taken for codes. A word
    before the number ("Error 13101") is tried as part of the code first (Grbl's `error 9`),
    then without it.
    """
    folded = unicodedata.normalize("NFKC", text)
    pieces: list[str] = []
    rest = folded
    for url in _URL.finditer(folded):
        body = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*|^[^/]*", "", url.group(0), count=1)
        path, _, query = body.partition("?")
        pieces.extend(path.split("#")[0].split("/"))
        pieces.extend(value for _, _, value in (pair.partition("=") for pair in query.split("&")))
        rest = rest.replace(url.group(0), " ", 1)
    pieces.insert(0, rest)
    found: dict[str, str] = {}
    for piece in pieces:
        for match in _CODE_IN_TEXT.finditer(piece):
            written = match.group(0).strip()
            for candidate in (written, _LEADING_WORD.sub("", written)):
                key = code_key(candidate)
                if key and key in known:
                    found.setdefault(key, candidate)
                    break
    return list(found.values())
