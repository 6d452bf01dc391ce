"""Quote mode: the model answers by choosing sentences the plant wrote, never by writing steps.

A 135M model cannot write a usable step, but it can choose one. In quote mode the material the
model is shown — the code row's standard steps and the passages — is split into sentences
(Chinese and English sentence boundaries, list items, table rows), each numbered once; the
prompt lists them by number (`models.prompt`), and the grammar built here allows each step only
as one of those sentences, byte for byte, with the passage number it came from:

    {"steps": [{"s": 5, "text": "<sentence 5, verbatim>", "cites": [2]}, ...], "summary": "<short>"}

Steps come first (they stream first); at most `MAX_STEPS` steps; the summary is the only free
text, at most `SUMMARY_CHARS` characters without braces, brackets, quotes or control characters,
and the engine's quality gate judges it like any generated text (it is forced empty when the
model does not write the operator's language).

Grammars are cached by the sentence set (`grammar`), so the same passages shown again cost
nothing; a cold build is a string join over at most `MAX_QUOTES` sentences.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_STEPS = 4
MAX_QUOTES = 40
PER_PASSAGE = 8
SENTENCE_CHARS = 220
SUMMARY_CHARS = 100

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# A sentence ends after 。！？； (no space needed), or after . ! ? followed by a space and not
# inside a common abbreviation ("e.g. ", "i.e. ", "approx. ").
_ZH_END = re.compile(r"(?<=[。！？；])")
_EN_END = re.compile(r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bapprox\.)(?<!\bNo\.)(?<=[.!?])\s+(?=[\"'(A-Z0-9\u3400-\u9fff])")
_LIST = re.compile(r"^\s*(?:>\s*|(?:\d{1,2}[.)、]|[-*•·+])\s+)")
_MARKUP = re.compile(r"\*\*|__|`")


@dataclass(frozen=True)
class Quote:
    """One sentence the model may quote: its number, the verbatim text, the passage it is from (0: the
    code row's standard procedure)."""

    n: int
    text: str
    passage: int = 0

    @property
    def cites(self) -> list[int]:
        return [self.passage] if self.passage else []

    def item(self) -> dict[str, Any]:
        """The step object the grammar allows for this sentence (also the training target's step)."""
        return {"s": self.n, "text": self.text, "cites": self.cites}


def sentence_lang(text: str) -> str:
    """zh-TW when the sentence holds Han characters, else en (what the gate judges it as)."""
    return "zh-TW" if _HAN.search(text) else "en"


def _lines(text: str) -> list[str]:
    """Text lines with Markdown list markers, heading marks and emphasis removed; table rows as cells."""
    out: list[str] = []
    lines = [raw.strip() for raw in text.splitlines()]
    for i, line in enumerate(lines):
        if not line or set(line) <= set("|-: ") or line.startswith("#"):
            continue  # blank, a table's header rule, or a heading (a title, not a step)
        following = next((n for n in lines[i + 1:] if n), "")
        if line.startswith("|") and "-" in following and set(following) <= set("|-: "):
            continue  # a table's header row ("| ID | Error Code Description |"): column names, not a step
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|") if c.strip()]
            line = ": ".join(cells)
        line = _MARKUP.sub("", _LIST.sub("", line))
        out.append(" ".join(line.split()))
    return out


def split_sentences(text: str, code: str = "") -> list[str]:
    """The sentences of a text: one per line of a list or table, split at Chinese and English ends.
    With `code`, the table rows naming another code are left out (`another_codes_row`)."""
    sentences: list[str] = []
    for line in _lines(text):
        if another_codes_row(line, code):
            continue
        for part in _ZH_END.split(line):
            sentences.extend(s.strip() for s in _EN_END.split(part) if s.strip())
    return sentences


def quotable(text: str) -> bool:
    """A sentence worth offering: words, not a heading, a number or a code alone."""
    if len(text) > SENTENCE_CHARS or any(ch in text for ch in "{}"):
        return False
    letters = sum(1 for ch in text if unicodedata.category(ch).startswith("L"))
    visible = sum(1 for ch in text if not ch.isspace())
    if letters < visible / 2:
        return False
    if _HAN.search(text):
        return len(_HAN.findall(text)) >= 4
    return letters >= 12 and len(text.split()) >= 3


def _key(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def candidates(steps: Sequence[str], passages: Sequence[tuple[int, str]],
               passage_chars: int | None = None, headings: Sequence[str] = (), code: str = "") -> tuple[Quote, ...]:
    """The numbered sentences of the standard steps, then of each passage (n, text), repeats left out.

    With `passage_chars`, only the sentences within a passage's first `passage_chars` characters
    (what the free layout shows of it): the prompt stays as long as free mode's, and so does the
    time each decoded token takes. A sentence that is one of `headings` (a passage's title or
    section names, the code and its title: a code-table row's passage starts with "error:9 G-code
    lock") is a title, not a step, and is never offered. With `code`, a passage's table row that
    names another code ("1: G-code words consist of a letter and a value." in Grbl's error table,
    asked about error:9) is another code's text and is not offered either.
    """
    quotes: list[Quote] = []
    seen: set[str] = {k for k in map(_key, headings) if k}

    def add(text: str, passage: int) -> bool:
        key = _key(text)
        if key in seen or not quotable(text) or len(quotes) >= MAX_QUOTES:
            return False
        seen.add(key)
        quotes.append(Quote(len(quotes) + 1, text, passage))
        return True

    for step in steps:
        for sentence in split_sentences(step):
            add(sentence, 0)
    for number, text in passages:
        taken = used = 0
        for sentence in split_sentences(text, code):
            used += len(sentence) + 1
            if taken >= PER_PASSAGE or (passage_chars is not None and used > passage_chars + 1):
                break
            if not _label(sentence):
                taken += add(sentence, number)
    return tuple(quotes)


_LABEL = re.compile(r"^[^\s:]{1,24}: (.+)$")


def _label(sentence: str) -> bool:
    """A passage's "field: value" line with a short value and no sentence end ("name: Homing locate
    feed rate", a table's cells): a label, not something an operator can do."""
    match = _LABEL.match(sentence)
    if match is None or _HAN.search(sentence):
        return False
    value = match.group(1).strip()
    return len(value.split()) <= 5 and not value.endswith((".", "!", "?"))


_ROW_KEY = re.compile(r"^([^\s:]{1,16}): ")


def another_codes_row(sentence: str, code: str) -> bool:
    """True for a table row ("cell: cell", as `_lines` writes it) whose first cell is a code (it holds a digit) other than
    `code`: its numbers differ ("1" or "A01" against error:9 or A03; "9", "E203" match error:9, E-203)."""
    match = _ROW_KEY.match(sentence)
    if not code or match is None or not re.search(r"\d", match.group(1)):
        return False
    return [int(d) for d in re.findall(r"\d+", match.group(1))] != [int(d) for d in re.findall(r"\d+", code)]


def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_OPEN = '{"s": '


def _step_json(quote: Quote) -> str:
    text = json.dumps(quote.item(), ensure_ascii=False)
    assert text.startswith(_OPEN)
    return text


@lru_cache(maxsize=128)
def grammar(quotes: tuple[Quote, ...], summary: bool = True) -> str:
    """The GBNF grammar of a quote answer over these sentences (cached by the sentence set)."""
    if not quotes:
        raise ValueError("a quote grammar needs at least one sentence")
    lines = [
        'root ::= "{\\"steps\\": [" step (", " step){0,' + str(MAX_STEPS - 1)
        + '} "], \\"summary\\": \\"" summary "\\"}"',
        # The shared opening is written once: llama.cpp advances one parse stack per open alternative,
        # so 40 alternatives that all start alike would cost 40 stacks for every token of it.
        'step ::= "{\\"s\\": " (' + " | ".join(f"q{q.n}" for q in quotes) + ")",
    ]
    lines.extend(f"q{q.n} ::= {_literal(_step_json(q)[len(_OPEN):])}" for q in quotes)
    lines.append(f'summary ::= sc{{0,{SUMMARY_CHARS}}}' if summary else 'summary ::= ""')
    lines.append(r'sc ::= [^"\\{}\[\]\x00-\x1f]')
    return "\n".join(lines) + "\n"


def schema(quotes: tuple[Quote, ...], summary: bool = True) -> dict[str, Any]:
    """The same answer as a JSON schema, for server backends that take a schema instead of a grammar."""
    return {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS,
                      "items": {"enum": [q.item() for q in quotes]}},
            "summary": {"type": "string", "maxLength": SUMMARY_CHARS if summary else 0},
        },
        "required": ["steps", "summary"],
    }


def token_bound(quotes: tuple[Quote, ...], summary: bool = True) -> int:
    """An upper bound on the tokens of any answer the grammar allows (a token is at least one byte)."""
    longest = sorted((len(_step_json(q).encode("utf-8")) for q in quotes), reverse=True)[:MAX_STEPS]
    return sum(longest) + 2 * MAX_STEPS + (3 * SUMMARY_CHARS if summary else 0) + 32


def target(quotes: Sequence[Quote], chosen: Sequence[int], summary: str = "") -> dict[str, Any]:
    """A quote answer choosing these sentence numbers (training targets; key order as the grammar's)."""
    by_n = {q.n: q for q in quotes}
    steps = [by_n[n].item() for n in chosen if n in by_n][:MAX_STEPS]
    text = "".join(ch for ch in summary if ch not in '"\\{}[]' and ord(ch) >= 0x20)[:SUMMARY_CHARS]
    return {"steps": steps, "summary": text}
