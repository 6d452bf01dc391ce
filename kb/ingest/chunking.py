"""Structure-aware chunking: a chunk never spans two sections or two pages.

Chunk ids are derived from content (source, section, text), so rebuilding an unchanged
source gives the same ids and nothing is re-embedded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from kb.types import Chunk

MAX_CHARS = 900
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (and on one page, for paged formats)."""

    path: tuple[str, ...]
    page: int | None
    text: str


def detect_lang(text: str, default: str = "en") -> str:
    """zh-TW when a noticeable share of the letters are CJK, else en (or the default)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return default
    cjk = sum(1 for ch in letters if _CJK.match(ch))
    return "zh-TW" if cjk / len(letters) > 0.15 else "en"


def chunk_id(source: str, section: str, text: str) -> str:
    digest = hashlib.sha256(f"{source}\x1f{section}\x1f{text}".encode()).hexdigest()
    return digest[:20]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _split_long(paragraph: str) -> list[str]:
    if len(paragraph) <= MAX_CHARS:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for line in re.split(r"(?<=[.!?。！？\n])", paragraph):
        if len(current) + len(line) > MAX_CHARS and current:
            pieces.append(current.strip())
            current = ""
        while len(line) > MAX_CHARS:
            pieces.append(line[:MAX_CHARS])
            line = line[MAX_CHARS:]
        current += line
    if current.strip():
        pieces.append(current.strip())
    return pieces


def chunk_sections(sections: list[Section], source: str, default_lang: str) -> list[Chunk]:
    """Pack each section's paragraphs into chunks of at most MAX_CHARS characters."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for section in sections:
        heading = " > ".join(section.path)
        buffer: list[str] = []
        size = 0
        pieces = [piece for p in _paragraphs(section.text) for piece in _split_long(p)]

        def flush(section: Section = section, heading: str = heading) -> None:
            nonlocal buffer, size
            if not buffer:
                return
            text = "\n\n".join(buffer)
            ident = chunk_id(source, heading, text)
            if ident not in seen:
                seen.add(ident)
                chunks.append(
                    Chunk(
                        id=ident,
                        source=source,
                        section=heading,
                        text=text,
                        page=section.page,
                        lang=detect_lang(heading + " " + text, default_lang),
                        ordinal=len(chunks),
                    )
                )
            buffer, size = [], 0

        for piece in pieces:
            if size + len(piece) > MAX_CHARS:
                flush()
            buffer.append(piece)
            size += len(piece) + 2
        flush()
    return chunks
