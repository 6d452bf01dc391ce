"""Markdown manuals: sections by ATX headings, ignoring `#` lines inside code fences."""

from __future__ import annotations

import re

from kb.ingest.chunking import Section

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def clean_heading(text: str) -> str:
    """Heading text as a reader sees it: emphasis and code marks removed."""
    text = re.sub(r"[*_`]+", "", text)
    return " ".join(text.split())


def markdown_sections(text: str) -> list[Section]:
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            sections.append(Section(path=tuple(t for _, t in stack), page=None, text=content))
        body.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            body.append(line)
            continue
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, clean_heading(match.group(2))))
            continue
        body.append(line)
    flush()
    return sections
