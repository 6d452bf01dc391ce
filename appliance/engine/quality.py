"""The quality gate: only text an operator can use reaches the screen.

A small model under a JSON grammar can produce strings that are valid and useless: `1}`,
`{2}`, digits, a URL cut in half, the same step twice, or characters of a script the
operator's language does not use. Each generated string passes `usable(text, lang)`;
what fails is dropped and counted, never shown.

Rules (a string is dropped when any holds):
- empty, or fewer than three letters (two for Chinese): punctuation and digits alone say nothing;
- mostly not words: letters (Han characters count as letters) less than a third of the visible
  characters (`C: 459876, A: 10/2019, B: 2020-03-22`);
- JSON debris: braces, or a quote followed by a colon or comma (`1}`, `", "cites`);
- an echo of the prompt's layout instead of an explanation: a passage header (`[1] (manual.md > …`)
  or a source file name;
- a script the answer's language does not use: English text with Han, kana, Hangul or Cyrillic;
  Chinese text without any Han character, or with kana, Hangul or Cyrillic;
- a repeat of a string already kept in the same list.
"""

from __future__ import annotations

import re
import unicodedata

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_FOREIGN = re.compile(r"[\u0400-\u04ff\u3040-\u30ff\u1100-\u11ff\uac00-\ud7af]")  # Cyrillic, kana, Hangul
_DEBRIS = re.compile(
    r"[{}]|\"\s*[:,]|'\s*:\s*'"
    r"|\[\d+\]\s*\("  # the prompt's passage header "[1] (source > section)"
    r"|\b[\w-]+\.(?:md|markdown|pdf|txt|html?|docx|csv|xlsx|ya?ml|json)\b"  # a source file name
    # the prompt's own scaffolding (models/prompt.py user_message), copied back
    r"|not found in the code table|answer with the json|operator query:|standard procedure:|past repairs:"
    r"|passages:|answer language:|error code:",
    re.IGNORECASE,
)
_ENUMERATOR = re.compile(r"^\s*(?:\d{1,2}\s*[.)、:]|[-•*·])\s+")


def strip_enumerator(text: str) -> str:
    """A step the model numbered itself ("1. Stop the line"): the screen numbers steps already."""
    return _ENUMERATOR.sub("", text, count=1)


def letters(text: str) -> int:
    return sum(1 for ch in text if unicodedata.category(ch).startswith("L"))


def usable(text: str, lang: str) -> bool:
    """True when a generated string is worth showing an operator in `lang`."""
    stripped = text.strip()
    if not stripped or _DEBRIS.search(stripped) or _FOREIGN.search(stripped):
        return False
    han = len(_HAN.findall(stripped))
    visible = sum(1 for ch in stripped if not ch.isspace())
    if letters(stripped) < visible / 3:
        return False
    if lang == "zh-TW":
        return han >= 2
    return han == 0 and letters(stripped) >= 3


def key(text: str) -> str:
    """What makes two strings the same step (case, spacing and punctuation ignored)."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def keep_usable(items: list[str], lang: str) -> tuple[list[str], int]:
    """The usable strings of a list, repeats removed; and how many were dropped."""
    kept: list[str] = []
    seen: set[str] = set()
    for item in items:
        if usable(item, lang) and key(item) not in seen:
            kept.append(item)
            seen.add(key(item))
    return kept, len(items) - len(kept)
